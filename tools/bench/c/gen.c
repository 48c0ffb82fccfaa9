/* The benchmark's one traffic generator: raw Ethernet frames out of an AF_PACKET socket.
 *
 *   gen flood IFNAME DST_MAC SRC_MAC SECONDS SIZE   send bursts of 64 as fast as the kernel
 *                                                   takes them; prints "sent SECONDS_NS"
 *   gen rtt IFNAME DST_MAC SRC_MAC COUNT SIZE       ping-pong COUNT frames off an echo server;
 *                                                   prints one round-trip time in ns a line
 *
 * Frames carry EtherType 0x88B5 (local experimental) and a sequence number, so the
 * namespace's own stack ignores them and the client can match each echo to its probe.
 * Linked against nothing but libc: the same client measures every receiver.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define ETHERTYPE 0x88B5
#define BATCH 64

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void parse_mac(const char *text, uint8_t *mac)
{
    unsigned v[6];
    if (sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
        fprintf(stderr, "gen: bad MAC %s\n", text);
        exit(2);
    }
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
}

static int open_socket(const char *ifname, uint16_t protocol)
{
    int fd = socket(AF_PACKET, SOCK_RAW, htons(protocol));
    if (fd < 0) {
        perror("gen: socket");
        exit(1);
    }
    struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_protocol = htons(protocol),
                               .sll_ifindex = (int)if_nametoindex(ifname)};
    if (!addr.sll_ifindex || bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
        perror("gen: bind");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    return fd;
}

static void fill_frame(uint8_t *frame, int size, const uint8_t *dst, const uint8_t *src)
{
    memset(frame, 0, (size_t)size);
    memcpy(frame, dst, 6);
    memcpy(frame + 6, src, 6);
    frame[12] = ETHERTYPE >> 8;
    frame[13] = ETHERTYPE & 0xff;
}

static int flood(int fd, uint8_t *frame, int size, double seconds)
{
    struct iovec iov = {.iov_base = frame, .iov_len = (size_t)size};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0;
    int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9), t = start;
    while (t < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0)
            sent += (uint64_t)n;
        t = now_ns();
    }
    printf("%llu %lld\n", (unsigned long long)sent, (long long)(t - start));
    return 0;
}

static int rtt(int fd, uint8_t *frame, int size, long count)
{
    uint8_t reply[2048];
    long warmup = count / 10 + 100, lost = 0;
    for (long seq = 0; seq < count + warmup; seq++) {
        memcpy(frame + 14, &seq, sizeof(seq));
        int64_t t0 = now_ns(), deadline = t0 + 100000000;   /* a probe is lost after 100 ms */
        if (send(fd, frame, (size_t)size, 0) != size) {
            perror("gen: send");
            return 1;
        }
        for (;;) {
            ssize_t n = recv(fd, reply, sizeof(reply), MSG_DONTWAIT);
            if (n >= 22 && memcmp(reply + 14, &seq, sizeof(seq)) == 0) {
                if (seq >= warmup)
                    printf("%lld\n", (long long)(now_ns() - t0));
                break;
            }
            if (now_ns() > deadline) {
                lost++;
                break;
            }
        }
    }
    fprintf(stderr, "gen: %ld probes lost\n", lost);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: gen flood|rtt IFNAME DST_MAC SRC_MAC SECONDS|COUNT SIZE\n");
        return 2;
    }
    uint8_t dst[6], src[6], frame[2048];
    parse_mac(argv[3], dst);
    parse_mac(argv[4], src);
    int size = atoi(argv[6]);
    if (size < 60 || size > (int)sizeof(frame)) {
        fprintf(stderr, "gen: SIZE must be 60..%zu\n", sizeof(frame));
        return 2;
    }
    fill_frame(frame, size, dst, src);
    if (strcmp(argv[1], "flood") == 0)
        return flood(open_socket(argv[2], 0), frame, size, atof(argv[5]));
    if (strcmp(argv[1], "rtt") == 0)
        return rtt(open_socket(argv[2], ETHERTYPE), frame, size, atol(argv[5]));
    fprintf(stderr, "gen: unknown mode %s\n", argv[1]);
    return 2;
}
