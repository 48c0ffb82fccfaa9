/* The venue benchmark's load client: OUCH 4.2 Enter Orders over UDP, open loop, RTT by token.
 *
 *   ouch_client LOCAL_IP TARGET_IP PORT RATE SECONDS WARMUP_S
 *
 * Sends one Enter Order per datagram (a SoupBinTCP 'U' packet) to TARGET_IP:PORT at RATE
 * per second for WARMUP_S + SECONDS, each at its intended send time (a late send is still
 * timed from when it should have left, so a stall shows up as latency instead of hiding
 * it). The intended times are a Poisson process (exponential gaps of mean 1 / RATE from a
 * fixed seed), as orders from elsewhere arrive: evenly spaced ones would lock onto the
 * host's periodic interruptions (a 4 ms timer tick is a whole number of 1 ms gaps), and
 * the phase a run happened to start at would decide how many of them its orders met.
 * Orders alternate buy and sell at one price, so half of them rest and half trade
 * against them and the book stays small. The round trip of
 * order k ends at the first reply that carries its token: an Accepted ('A') or Rejected
 * ('J') from a venue, or the Enter Order itself ('O') from an echo server, which is how
 * the same binary measures both on the same path. Busy-polls its socket; no threads.
 *
 * Prints one JSON object: orders sent and answered after the warm-up, lost (no answer
 * a second after the last send), duplicates, rejected, the RTT percentiles in ns of the
 * answered ones (rtt_ns_*), the same from the moment each order actually left
 * (sent_rtt_ns_*: the path alone, without the client's own lateness, which a shared
 * CPU makes large), and answered_per_s (answers over the busy window: the target's rate
 * when RATE is more than it can take).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <math.h>
#include <unistd.h>

#define ENTER_LEN 49                /* OUCH 4.2 Enter Order, type byte included */
#define TOKEN_LEN 14
#define DRAIN_NS 1000000000         /* answers still counted this long after the last send */
#define SEND_BATCH 32                /* orders due at once leave in one sendmmsg() */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

/* One datagram: SoupBinTCP length, 'U', the Enter Order with token "C" + 13 digits of k. */
static size_t enter_order(uint8_t *d, uint64_t k)
{
    uint8_t *m = d + 3, side = k & 1 ? 'S' : 'B';
    d[0] = 0;
    d[1] = ENTER_LEN + 1;
    d[2] = 'U';
    memset(m, ' ', ENTER_LEN);
    m[0] = 'O';
    m[1] = 'C';
    for (int i = TOKEN_LEN; i > 1; i--, k /= 10)
        m[i] = (uint8_t)('0' + k % 10);
    m[15] = side;
    put32(m + 16, 100);             /* shares */
    memcpy(m + 20, "AAPL    ", 8);
    put32(m + 28, 1900000);         /* $190.0000 */
    put32(m + 32, 99999);           /* time in force: day */
    memcpy(m + 36, "LOAD", 4);
    m[40] = 'Y';                    /* display */
    m[41] = 'A';                    /* capacity */
    m[42] = 'N';                    /* intermarket sweep */
    put32(m + 43, 0);               /* minimum quantity */
    m[47] = 'N';                    /* cross type */
    m[48] = 'R';                    /* customer type */
    return 3 + ENTER_LEN;
}

/* The order number in a token this client made, or -1. */
static int64_t token_number(const uint8_t *t)
{
    if (t[0] != 'C')
        return -1;
    int64_t k = 0;
    for (int i = 1; i < TOKEN_LEN; i++) {
        if (t[i] < '0' || t[i] > '9')
            return -1;
        k = k * 10 + (t[i] - '0');
    }
    return k;
}

/* n intended send times from `start`, a Poisson process of `rate` per second. */
static void poisson_times(int64_t *t, uint64_t n, int64_t start, double rate)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;     /* xorshift64: the same schedule every run */
    double at = (double)start;
    for (uint64_t k = 0; k < n; k++) {
        t[k] = (int64_t)at;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        at -= log(((double)(x >> 11) + 0.5) / 9007199254740992.0) * 1e9 / rate;   /* u in (0, 1) */
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t percentile(const int64_t *sorted, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

struct run {
    int64_t *intended, *rtt;        /* per order: intended send time; round trip, -1 = none yet */
    int64_t *lateness;              /* per order: actual send time - intended */
    uint64_t n, duplicates, rejected, answered, foreign;
    int64_t first_answer, last_answer;
};

/* Every SoupBinTCP packet of one datagram: time the orders whose first answer this is. */
static void on_datagram(struct run *r, const uint8_t *d, ssize_t len, int64_t t)
{
    for (ssize_t at = 0; at + 3 <= len;) {
        size_t size = (size_t)d[at] << 8 | d[at + 1];
        const uint8_t *m = d + at + 3;
        if (size < 1 || at + 2 + (ssize_t)size > len)
            return;
        size_t mlen = size - 1;
        int64_t k = -1;
        if (d[at + 2] == 'U' && mlen >= 1 + TOKEN_LEN && m[0] == 'O')
            k = token_number(m + 1);
        else if (d[at + 2] == 'S' && mlen >= 9 + TOKEN_LEN && (m[0] == 'A' || m[0] == 'J'))
            k = token_number(m + 9);
        if (k >= 0 && (uint64_t)k < r->n) {
            if (r->rtt[k] >= 0) {
                r->duplicates++;
            } else {
                r->rtt[k] = t - r->intended[k];
                r->rejected += m[0] == 'J';
                r->answered++;
                if (!r->first_answer)
                    r->first_answer = t;
                r->last_answer = t;
            }
        } else if (k >= 0) {
            r->foreign++;
        }
        at += 2 + (ssize_t)size;
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: ouch_client LOCAL_IP TARGET_IP PORT RATE SECONDS WARMUP_S\n");
        return 2;
    }
    double rate = atof(argv[4]), seconds = atof(argv[5]), warmup = atof(argv[6]);
    if (rate <= 0 || seconds <= 0 || warmup < 0) {
        fprintf(stderr, "ouch_client: RATE and SECONDS must be positive, WARMUP_S not negative\n");
        return 2;
    }
    struct sockaddr_in local = {.sin_family = AF_INET}, target = {.sin_family = AF_INET,
                                                                 .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[1], &local.sin_addr) != 1 || inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
        fprintf(stderr, "ouch_client: bad address\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) ||
        connect(fd, (struct sockaddr *)&target, sizeof target)) {
        perror("ouch_client: socket");
        return 1;
    }
    struct run r = {0};
    uint64_t skip = (uint64_t)(warmup * rate);
    r.n = skip + (uint64_t)(seconds * rate);
    r.intended = malloc(r.n * sizeof *r.intended);
    r.rtt = malloc(r.n * sizeof *r.rtt);
    r.lateness = malloc(r.n * sizeof *r.lateness);
    if (!r.intended || !r.rtt || !r.lateness) {
        fprintf(stderr, "ouch_client: no memory\n");
        return 1;
    }
    memset(r.rtt, 0xff, r.n * sizeof *r.rtt);
    uint8_t out[SEND_BATCH][64], in[65536];
    struct iovec iov[SEND_BATCH];
    struct mmsghdr msgs[SEND_BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int b = 0; b < SEND_BATCH; b++) {
        iov[b].iov_base = out[b];
        msgs[b].msg_hdr.msg_iov = &iov[b];
        msgs[b].msg_hdr.msg_iovlen = 1;
    }
    int64_t start = now_ns(), t = start, send_errors = 0;
    poisson_times(r.intended, r.n, start, rate);
    uint64_t sent = 0;
    for (;;) {
        /* orders whose time has come leave now, timed from when they should have (at most
         * SEND_BATCH before the answers are read again, so those are timed too) */
        int due = 0;
        while (due < SEND_BATCH && sent + due < r.n && t >= r.intended[sent + due]) {
            iov[due].iov_len = enter_order(out[due], sent + due);
            due++;
        }
        if (due) {
            int64_t left = now_ns();
            for (int b = 0; b < due; b++)
                r.lateness[sent + b] = left - r.intended[sent + b];
            int done = sendmmsg(fd, msgs, (unsigned)due, 0);
            send_errors += due - (done > 0 ? done : 0);   /* never answered: counted as lost */
            sent += (uint64_t)due;
        }
        ssize_t got;
        while ((got = recv(fd, in, sizeof in, MSG_DONTWAIT)) > 0)
            on_datagram(&r, in, got, now_ns());
        t = now_ns();
        if (sent == r.n && (r.answered == r.n || t - r.intended[r.n - 1] > DRAIN_NS))
            break;
    }
    uint64_t measured = r.n - skip, answered = 0;
    int64_t *rtt = malloc((measured + 1) * sizeof *rtt), *from_send = malloc((measured + 1) * sizeof *from_send);
    for (uint64_t k = skip; k < r.n; k++)
        if (r.rtt[k] >= 0) {
            from_send[answered] = r.rtt[k] - r.lateness[k];
            rtt[answered++] = r.rtt[k];
        }
    qsort(rtt, answered, sizeof *rtt, cmp_i64);
    qsort(from_send, answered, sizeof *from_send, cmp_i64);
    double busy = (double)(r.last_answer - r.first_answer) / 1e9;
    printf("{\"sent\": %llu, \"answered\": %llu, \"lost\": %llu, \"duplicates\": %llu, \"rejected\": %llu, "
           "\"foreign\": %llu, \"send_errors\": %lld, \"rtt_ns_p50\": %lld, \"rtt_ns_p99\": %lld, "
           "\"rtt_ns_p999\": %lld, \"rtt_ns_max\": %lld, \"sent_rtt_ns_p50\": %lld, \"sent_rtt_ns_p99\": %lld, "
           "\"sent_rtt_ns_p999\": %lld, \"answered_per_s\": %.0f}\n",
           (unsigned long long)measured, (unsigned long long)answered, (unsigned long long)(measured - answered),
           (unsigned long long)r.duplicates, (unsigned long long)r.rejected, (unsigned long long)r.foreign,
           (long long)send_errors, (long long)percentile(rtt, answered, 50), (long long)percentile(rtt, answered, 99),
           (long long)percentile(rtt, answered, 99.9), (long long)(answered ? rtt[answered - 1] : 0),
           (long long)percentile(from_send, answered, 50), (long long)percentile(from_send, answered, 99),
           (long long)percentile(from_send, answered, 99.9), busy > 0 ? (double)(r.answered - 1) / busy : 0.0);
    close(fd);
    return 0;
}
