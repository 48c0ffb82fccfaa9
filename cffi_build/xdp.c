/* AF_XDP burst I/O over libxdp's xsk API: one socket, one UMEM, whole bursts per call.
 *
 * The UMEM is memory Python owns (a numpy array over an anonymous mmap); the first
 * half of its frames feed the fill ring (receive), the second half are sent from
 * (transmit). Received frames are lent to the caller and come back through
 * nx_release(); transmit frames come back through the completion ring.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <x86intrin.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "xdp_api.h"

#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

struct nx_counters {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
    uint64_t ring_full, wakeups, fill_ring_empty;
};

struct nx_xsk {
    struct xsk_ring_prod fq, tx;
    struct xsk_ring_cons cq, rx;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    uint8_t *area;
    uint32_t frame_size, rx_frames, tx_frames, fill_size;
    uint64_t *free_tx;          /* stack of transmit frame addresses not in flight */
    uint32_t n_free_tx;
    int fd, busy_poll;
    struct nx_counters c;
};

/* libbpf/libxdp talk through print callbacks; keep the last warning for error sentences. */
static char last_log[512];

static int keep_log(const char *fmt, va_list ap)
{
    vsnprintf(last_log, sizeof(last_log), fmt, ap);
    size_t n = strlen(last_log);
    while (n && last_log[n - 1] == '\n')
        last_log[--n] = 0;
    return 0;
}

static int keep_libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    return level == LIBBPF_DEBUG ? 0 : keep_log(fmt, ap);
}

static int keep_libxdp_log(enum libxdp_print_level level, const char *fmt, va_list ap)
{
    return level == LIBXDP_DEBUG ? 0 : keep_log(fmt, ap);
}

const char *nx_last_log(void)
{
    return last_log;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* Open a socket on ifname/queue over area. Returns NULL with *stage (1 = UMEM,
 * 2 = socket) and *err (a positive errno) set when it fails. */
struct nx_xsk *nx_open(const char *ifname, uint32_t queue, void *area, uint32_t frame_size,
                       uint32_t frames, uint32_t ring_size, uint32_t xdp_flags,
                       uint32_t bind_flags, int *stage, int *err)
{
    libbpf_set_print(keep_libbpf_log);
    libxdp_set_print(keep_libxdp_log);
    last_log[0] = 0;

    struct nx_xsk *x = calloc(1, sizeof(*x));
    if (!x) {
        *stage = 1;
        *err = ENOMEM;
        return NULL;
    }
    x->area = area;
    x->frame_size = frame_size;
    x->rx_frames = frames / 2;
    x->tx_frames = frames - x->rx_frames;
    x->fill_size = pow2_at_least(x->rx_frames);
    x->free_tx = calloc(x->tx_frames, sizeof(uint64_t));
    if (!x->free_tx) {
        free(x);
        *stage = 1;
        *err = ENOMEM;
        return NULL;
    }

    struct xsk_umem_config ucfg = {
        .fill_size = x->fill_size,
        .comp_size = pow2_at_least(x->tx_frames),
        .frame_size = frame_size,
        .frame_headroom = 0,
        .flags = 0,
    };
    int rc = xsk_umem__create(&x->umem, area, (uint64_t)frames * frame_size, &x->fq, &x->cq, &ucfg);
    if (rc) {
        *stage = 1;
        *err = -rc;
        free(x->free_tx);
        free(x);
        return NULL;
    }
    struct xsk_socket_config scfg = {
        .rx_size = ring_size,
        .tx_size = ring_size,
        .libxdp_flags = 0,
        .xdp_flags = xdp_flags,
        .bind_flags = (uint16_t)(bind_flags | XDP_USE_NEED_WAKEUP),
    };
    rc = xsk_socket__create(&x->xsk, ifname, queue, x->umem, &x->rx, &x->tx, &scfg);
    if (rc) {
        *stage = 2;
        *err = -rc;
        xsk_umem__delete(x->umem);
        free(x->free_tx);
        free(x);
        return NULL;
    }
    x->fd = xsk_socket__fd(x->xsk);

    uint32_t idx = 0;
    uint32_t n = xsk_ring_prod__reserve(&x->fq, x->rx_frames, &idx);
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&x->fq, idx + i) = (uint64_t)i * frame_size;
    xsk_ring_prod__submit(&x->fq, n);
    for (uint32_t i = 0; i < x->tx_frames; i++)
        x->free_tx[i] = (uint64_t)(x->rx_frames + i) * frame_size;
    x->n_free_tx = x->tx_frames;
    return x;
}

void nx_close(struct nx_xsk *x)
{
    if (!x)
        return;
    xsk_socket__delete(x->xsk);
    xsk_umem__delete(x->umem);
    free(x->free_tx);
    free(x);
}

int nx_fd(struct nx_xsk *x)
{
    return x->fd;
}

/* Ask the kernel to busy-poll this socket; 0 or a positive errno from the first refusal. */
int nx_set_busy_poll(struct nx_xsk *x, int usecs, int budget)
{
    int one = 1;
    if (setsockopt(x->fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)))
        return errno;
    if (setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs)))
        return errno;
    if (setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget)))
        return errno;
    x->busy_poll = 1;
    return 0;
}

/* Up to max received frames: their UMEM offsets and lengths, all stamped with one
 * TSC reading taken when the burst was found. The frames stay the caller's until
 * nx_release(). */
uint32_t nx_rx_burst(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                     int64_t *stamps)
{
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&x->rx, max, &idx);
    if (!n) {
        if (xsk_prod_nb_free(&x->fq, x->fill_size) == x->fill_size)
            x->c.fill_ring_empty++;
        if (x->busy_poll || xsk_ring_prod__needs_wakeup(&x->fq)) {
            x->c.wakeups++;
            recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        }
        return 0;
    }
    int64_t now = (int64_t)__rdtsc();
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx + i);
        offsets[i] = (int64_t)d->addr;
        lengths[i] = d->len;
        stamps[i] = now;
        bytes += d->len;
    }
    xsk_ring_cons__release(&x->rx, n);
    x->c.rx_packets += n;
    x->c.rx_bytes += bytes;
    return n;
}

/* Give received frames back to the kernel through the fill ring; offsets outside the
 * receive half of the UMEM (a caller's mistake) are skipped, never handed to the kernel. */
void nx_release(struct nx_xsk *x, const int64_t *offsets, uint32_t n)
{
    uint32_t idx = 0;
    /* Every receive frame fits in the fill ring at once, so this reserve cannot fall short. */
    uint32_t got = xsk_ring_prod__reserve(&x->fq, n, &idx);
    uint64_t mask = ~(uint64_t)(x->frame_size - 1);
    uint64_t limit = (uint64_t)x->rx_frames * x->frame_size;
    uint32_t k = 0;
    for (uint32_t i = 0; i < got; i++)
        if ((uint64_t)offsets[i] < limit)
            *xsk_ring_prod__fill_addr(&x->fq, idx + k++) = (uint64_t)offsets[i] & mask;
    x->fq.cached_prod -= got - k;   /* un-reserve the skipped entries (libxdp has no prod cancel) */
    xsk_ring_prod__submit(&x->fq, k);
}

static void reclaim(struct nx_xsk *x)
{
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&x->cq, x->tx_frames, &idx);
    for (uint32_t i = 0; i < n; i++)
        x->free_tx[x->n_free_tx++] = *xsk_ring_cons__comp_addr(&x->cq, idx + i);
    xsk_ring_cons__release(&x->cq, n);
}

static void kick_tx(struct nx_xsk *x)
{
    /* In copy mode the kernel sends at most 32 frames per sendto() and says EAGAIN
     * when more are waiting; keep kicking until the ring is drained or it refuses. */
    for (int tries = 0; tries < 64; tries++) {
        x->c.wakeups++;
        if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 || errno != EAGAIN)
            return;
        reclaim(x);
    }
}

/* Copy n frames (buf + offsets[i], lengths[i] bytes) into free transmit frames and
 * queue them; returns how many were taken, in order. When a frame lies outside buf
 * or does not fit a UMEM frame nothing is sent and the result is -(its index + 1). */
int64_t nx_tx_burst(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                    const uint32_t *lengths, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (offsets[i] < 0 || lengths[i] > x->frame_size || (uint64_t)offsets[i] + lengths[i] > buf_len)
            return -(int64_t)i - 1;
    reclaim(x);
    uint32_t want = n < x->n_free_tx ? n : x->n_free_tx;
    uint32_t idx = 0;
    uint32_t got = want ? xsk_ring_prod__reserve(&x->tx, want, &idx) : 0;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < got; i++) {
        uint64_t addr = x->free_tx[--x->n_free_tx];
        memcpy(x->area + addr, buf + offsets[i], lengths[i]);
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx + i);
        d->addr = addr;
        d->len = lengths[i];
        d->options = 0;
        bytes += lengths[i];
    }
    if (got) {
        xsk_ring_prod__submit(&x->tx, got);
        x->c.tx_packets += got;
        x->c.tx_bytes += bytes;
    }
    x->c.ring_full += n - got;
    if (xsk_ring_prod__needs_wakeup(&x->tx))
        kick_tx(x);
    return got;
}

/* Frames queued for sending that the kernel has not completed yet. */
uint32_t nx_tx_in_flight(struct nx_xsk *x)
{
    reclaim(x);
    return x->tx_frames - x->n_free_tx;
}

void nx_counters(struct nx_xsk *x, struct nx_counters *out)
{
    *out = x->c;
}

/* The kernel's own drop counters for this socket; 0 or a positive errno. */
int nx_kernel_stats(struct nx_xsk *x, struct xdp_statistics *out)
{
    socklen_t len = sizeof(*out);
    memset(out, 0, sizeof(*out));
    return getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, out, &len) ? errno : 0;
}

static const struct nx_burst_api api = {
    .version = NX_API_VERSION,
    .rx_burst = nx_rx_burst,
    .release = nx_release,
    .tx_burst = nx_tx_burst,
};

const struct nx_burst_api *nx_api(void)
{
    return &api;
}
