/* The C reference for the netio AF_XDP benchmark: libxdp used directly, no Python.
 *
 *   xdp_ref rx IFNAME native|generic SECONDS     count frames for SECONDS after the first
 *                                                arrives (+0.3 s warm-up); prints "frames ns"
 *   xdp_ref echo IFNAME native|generic SECONDS   swap the MACs of every frame and send it back
 *
 * Same set-up as netio.xdp.XdpPort's defaults: copy mode, 4096 frames of 4096 bytes
 * (half receive, half transmit), rings of 2048, need_wakeup, busy-poll socket options,
 * bursts of 64, transmit by copying into a free UMEM frame. Prints "ready" once bound.
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <xdp/xsk.h>

#define FRAMES 4096
#define FRAME_SIZE 4096
#define RING 2048
#define BURST 64

static struct xsk_ring_prod fq, tx;
static struct xsk_ring_cons cq, rx;
static uint8_t *area;
static uint64_t free_tx[FRAMES / 2];
static uint32_t n_free;
static int fd;
static volatile sig_atomic_t stop;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint32_t poll_rx(uint64_t *addrs, uint32_t *lens)
{
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&rx, BURST, &idx);
    if (!n) {
        recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);   /* busy poll is on: always kick */
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx + i);
        addrs[i] = d->addr;
        lens[i] = d->len;
    }
    xsk_ring_cons__release(&rx, n);
    return n;
}

static void refill(const uint64_t *addrs, uint32_t n)
{
    uint32_t idx;
    uint32_t got = xsk_ring_prod__reserve(&fq, n, &idx);
    for (uint32_t i = 0; i < got; i++)
        *xsk_ring_prod__fill_addr(&fq, idx + i) = addrs[i] & ~(uint64_t)(FRAME_SIZE - 1);
    xsk_ring_prod__submit(&fq, got);
}

static void reclaim(void)
{
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&cq, FRAMES / 2, &idx);
    for (uint32_t i = 0; i < n; i++)
        free_tx[n_free++] = *xsk_ring_cons__comp_addr(&cq, idx + i);
    xsk_ring_cons__release(&cq, n);
}

static void echo_burst(const uint64_t *addrs, const uint32_t *lens, uint32_t n)
{
    reclaim();
    uint32_t idx, want = n < n_free ? n : n_free;
    uint32_t got = want ? xsk_ring_prod__reserve(&tx, want, &idx) : 0;
    for (uint32_t i = 0; i < got; i++) {
        uint64_t addr = free_tx[--n_free];
        uint8_t *out = area + addr, *in = area + addrs[i];
        memcpy(out, in + 6, 6);
        memcpy(out + 6, in, 6);
        memcpy(out + 12, in + 12, lens[i] - 12);
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx + i);
        d->addr = addr;
        d->len = lens[i];
        d->options = 0;
    }
    xsk_ring_prod__submit(&tx, got);
    if (xsk_ring_prod__needs_wakeup(&tx))
        for (int tries = 0; tries < 64; tries++)
            if (sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 || errno != EAGAIN)
                break;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: xdp_ref rx|echo IFNAME native|generic SECONDS\n");
        return 2;
    }
    int echo = strcmp(argv[1], "echo") == 0;
    double seconds = atof(argv[4]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    area = mmap(NULL, (size_t)FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct xsk_umem *umem;
    struct xsk_umem_config ucfg = {.fill_size = FRAMES / 2, .comp_size = FRAMES / 2,
                                   .frame_size = FRAME_SIZE, .frame_headroom = 0, .flags = 0};
    int rc = xsk_umem__create(&umem, area, (uint64_t)FRAMES * FRAME_SIZE, &fq, &cq, &ucfg);
    if (rc) {
        fprintf(stderr, "xdp_ref: umem: %s\n", strerror(-rc));
        return 1;
    }
    struct xsk_socket *xsk;
    struct xsk_socket_config scfg = {
        .rx_size = RING, .tx_size = RING, .libxdp_flags = 0,
        .xdp_flags = strcmp(argv[3], "native") == 0 ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE,
        .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
    };
    for (int tries = 0; (rc = xsk_socket__create(&xsk, argv[2], 0, umem, &rx, &tx, &scfg)) == -EBUSY && tries < 200; tries++) {
        struct timespec wait = {0, 5000000};   /* a closed socket's queue binding is freed a little late */
        nanosleep(&wait, NULL);
    }
    if (rc) {
        fprintf(stderr, "xdp_ref: socket: %s\n", strerror(-rc));
        return 1;
    }
    fd = xsk_socket__fd(xsk);
    int one = 1, usecs = 20, budget = BURST;
    setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs));
    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget));

    uint64_t addrs[BURST];
    uint32_t lens[BURST], idx;
    uint32_t n = xsk_ring_prod__reserve(&fq, FRAMES / 2, &idx);
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&fq, idx + i) = (uint64_t)i * FRAME_SIZE;
    xsk_ring_prod__submit(&fq, n);
    for (uint32_t i = 0; i < FRAMES / 2; i++)
        free_tx[n_free++] = (uint64_t)(FRAMES / 2 + i) * FRAME_SIZE;
    printf("ready\n");
    fflush(stdout);

    int64_t start = 0, end = now_ns() + (int64_t)(seconds * 1e9) + 30000000000LL, count_from = 0;
    uint64_t counted = 0;
    while (!stop) {
        uint32_t got = poll_rx(addrs, lens);
        int64_t t = got || echo ? now_ns() : 0;
        if (got && !start) {   /* the measuring window opens 0.3 s after the first frame */
            start = t;
            count_from = start + 300000000;
            end = count_from + (int64_t)(seconds * 1e9);
        }
        if (echo)
            echo_burst(addrs, lens, got);
        else if (got && t >= count_from)
            counted += got;
        refill(addrs, got);
        if (t > end || (!got && now_ns() > end))
            break;
    }
    if (!echo)
        printf("%llu %lld\n", (unsigned long long)counted, (long long)(now_ns() - count_from));
    xsk_socket__delete(xsk);
    xsk_umem__delete(umem);
    return 0;
}
