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
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <x86intrin.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "xdp_api.h"
#include "xdp_meta.h"

/* <linux/bpf.h> of Linux 6.3; Debian 12's linux-libc-dev (6.1) predates it. */
#define NX_BPF_F_XDP_DEV_BOUND_ONLY (1U << 6)

/* AF_XDP TX metadata, <linux/if_xdp.h> of Linux 6.8 (XDP_UMEM_TX_METADATA_LEN: 6.11, and
 * launch_time: 6.15); Debian 12's linux-libc-dev (6.1) and libxdp 1.3.1 predate it. */
#define NX_XDP_UMEM_TX_METADATA_LEN (1 << 2)
#define NX_XDP_TX_METADATA (1 << 1)
#define NX_XDP_TXMD_FLAGS_TIMESTAMP (1 << 0)

struct nx_umem_reg {            /* struct xdp_umem_reg */
    uint64_t addr, len;
    uint32_t chunk_size, headroom, flags, tx_metadata_len;
};

struct nx_tx_metadata {         /* struct xsk_tx_metadata */
    uint64_t flags;
    union {
        struct {
            uint16_t csum_start, csum_offset;
            uint64_t launch_time;
        } request;
        struct {
            uint64_t tx_timestamp;
        } completion;
    };
};

/* The TX metadata room before each sent frame: the kernel wants a multiple of 8 below 256. */
#define NX_TX_META_LEN 24
_Static_assert(sizeof(struct nx_tx_metadata) == NX_TX_META_LEN, "struct xsk_tx_metadata is 24 bytes");

/* A sent frame's completion stamp: seq counts sent frames from 0 in the order submitted. */
struct nx_tx_stamp {
    uint64_t seq;
    int64_t ns;                 /* in the clock named by source */
    uint32_t source;            /* NX_TS_*: NX_TS_XDP here means the kernel's CLOCK_TAI at completion */
    uint32_t pad;
};

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
    int meta;                   /* netio's program writes struct netio_xdp_meta before each frame */
    uint32_t tx_meta_len;       /* bytes of struct nx_tx_metadata before each sent frame; 0: none */
    void *maps[4];              /* fill, completion, RX, TX rings when mapped here (tx_meta_len) */
    size_t map_len[4];
    struct nx_tx_stamp *tx_log; /* completion stamps not read yet (a ring of tx_log_size) */
    uint32_t tx_log_size, tx_log_start, tx_log_count;
    uint64_t tx_completed, tx_log_lost;
    int zero_copy;              /* TX stamps from the metadata are the NIC's, not the kernel's */
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

static void release_rings(struct nx_xsk *x)
{
    if (x->umem) {                      /* libxdp's socket and UMEM */
        xsk_socket__delete(x->xsk);
        xsk_umem__delete(x->umem);
        return;
    }
    for (int i = 0; i < 4; i++)         /* our own (open_own_rings) */
        if (x->maps[i])
            munmap(x->maps[i], x->map_len[i]);
    if (x->fd >= 0)
        close(x->fd);
}

static void free_xsk(struct nx_xsk *x)
{
    free(x->tx_log);
    free(x->free_tx);
    free(x);
}

/* Map one ring of the socket and point r (a struct xsk_ring_prod or _cons: same layout)
 * at it, so libxdp's inline ring functions work on it. */
#define NX_MAP_RING(x, i, r, off, pgoff, n, entry_size, producer_side) do {                         \
        (x)->map_len[i] = (off).desc + (size_t)(n) * (entry_size);                                  \
        void *m_ = mmap(NULL, (x)->map_len[i], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,  \
                        (x)->fd, (pgoff));                                                          \
        if (m_ == MAP_FAILED)                                                                       \
            return errno;                                                                           \
        (x)->maps[i] = m_;                                                                          \
        (r)->mask = (n) - 1;                                                                        \
        (r)->size = (n);                                                                            \
        (r)->producer = (uint32_t *)((uint8_t *)m_ + (off).producer);                               \
        (r)->consumer = (uint32_t *)((uint8_t *)m_ + (off).consumer);                               \
        (r)->flags = (uint32_t *)((uint8_t *)m_ + (off).flags);                                     \
        (r)->ring = (uint8_t *)m_ + (off).desc;                                                     \
        (r)->cached_prod = *(r)->producer;                                                          \
        (r)->cached_cons = *(r)->consumer + ((producer_side) ? (n) : 0);                           \
    } while (0)

/* The socket, UMEM and rings set up here rather than by libxdp, whose 1.3.1 cannot register
 * a UMEM with tx_metadata_len; then bound and put in the caller's XSKMAP. 0 or an errno,
 * with *stage as nx_open's. */
static int open_own_rings(struct nx_xsk *x, const char *ifname, uint32_t queue, uint64_t size,
                          uint32_t ring_size, uint32_t bind_flags, int xskmap_fd, int *stage)
{
    *stage = 1;
    x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (x->fd < 0)
        return errno;
    struct nx_umem_reg mr = {
        .addr = (uintptr_t)x->area, .len = size, .chunk_size = x->frame_size, .headroom = 0,
        .flags = NX_XDP_UMEM_TX_METADATA_LEN, .tx_metadata_len = x->tx_meta_len,
    };
    uint32_t comp_size = pow2_at_least(x->tx_frames);
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) ||
        setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &x->fill_size, sizeof(uint32_t)) ||
        setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &comp_size, sizeof(uint32_t)))
        return errno;
    *stage = 2;
    struct xdp_mmap_offsets off;
    socklen_t len = sizeof(off);
    if (setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &ring_size, sizeof(ring_size)) ||
        setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &ring_size, sizeof(ring_size)) ||
        getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len))
        return errno;
    NX_MAP_RING(x, 0, &x->fq, off.fr, XDP_UMEM_PGOFF_FILL_RING, x->fill_size, sizeof(uint64_t), 1);
    NX_MAP_RING(x, 1, &x->cq, off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, comp_size, sizeof(uint64_t), 0);
    NX_MAP_RING(x, 2, &x->rx, off.rx, XDP_PGOFF_RX_RING, ring_size, sizeof(struct xdp_desc), 0);
    NX_MAP_RING(x, 3, &x->tx, off.tx, XDP_PGOFF_TX_RING, ring_size, sizeof(struct xdp_desc), 1);
    struct sockaddr_xdp sxdp = {
        .sxdp_family = AF_XDP, .sxdp_flags = (uint16_t)(bind_flags | XDP_USE_NEED_WAKEUP),
        .sxdp_ifindex = if_nametoindex(ifname), .sxdp_queue_id = queue,
    };
    if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)))
        return errno;
    *stage = 3;
    if (bpf_map_update_elem(xskmap_fd, &queue, &x->fd, 0))
        return errno;
    return 0;
}

/* Open a socket on ifname/queue over area. xskmap_fd < 0: libxdp loads and attaches its
 * own redirect program; else the caller's program (already attached) redirects through
 * that XSKMAP and writes struct netio_xdp_meta before each frame. tx_meta_len > 0 (needs
 * xskmap_fd) registers that much AF_XDP TX metadata before every sent frame and asks for
 * completion stamps. tx_log > 0 keeps a stamp per completed frame (nx_tx_stamps): from
 * the TX metadata, else the TSC when the completion was reaped. Returns NULL with *stage
 * (1 = UMEM, 2 = socket, 3 = XSKMAP) and *err (a positive errno) set when it fails. */
struct nx_xsk *nx_open(const char *ifname, uint32_t queue, void *area, uint32_t frame_size,
                       uint32_t frames, uint32_t ring_size, uint32_t xdp_flags,
                       uint32_t bind_flags, int xskmap_fd, uint32_t tx_meta_len, uint32_t tx_log,
                       int *stage, int *err)
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
    x->fd = -1;
    x->area = area;
    x->frame_size = frame_size;
    x->rx_frames = frames / 2;
    x->tx_frames = frames - x->rx_frames;
    x->fill_size = pow2_at_least(x->rx_frames);
    x->free_tx = calloc(x->tx_frames, sizeof(uint64_t));
    x->tx_meta_len = tx_meta_len;
    x->tx_log_size = tx_log;
    x->tx_log = tx_log ? calloc(tx_log, sizeof(struct nx_tx_stamp)) : NULL;
    if (!x->free_tx || (tx_log && !x->tx_log)) {
        free_xsk(x);
        *stage = 1;
        *err = ENOMEM;
        return NULL;
    }

    int rc;
    if (tx_meta_len) {
        rc = open_own_rings(x, ifname, queue, (uint64_t)frames * frame_size, ring_size, bind_flags, xskmap_fd,
                            stage);
        if (rc) {
            *err = rc;
            release_rings(x);
            free_xsk(x);
            return NULL;
        }
    } else {
        struct xsk_umem_config ucfg = {
            .fill_size = x->fill_size,
            .comp_size = pow2_at_least(x->tx_frames),
            .frame_size = frame_size,
            .frame_headroom = 0,
            .flags = 0,
        };
        rc = xsk_umem__create(&x->umem, area, (uint64_t)frames * frame_size, &x->fq, &x->cq, &ucfg);
        if (rc) {
            *stage = 1;
            *err = -rc;
            free_xsk(x);
            return NULL;
        }
        struct xsk_socket_config scfg = {
            .rx_size = ring_size,
            .tx_size = ring_size,
            .libxdp_flags = xskmap_fd < 0 ? 0 : XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
            .xdp_flags = xdp_flags,
            .bind_flags = (uint16_t)(bind_flags | XDP_USE_NEED_WAKEUP),
        };
        rc = xsk_socket__create(&x->xsk, ifname, queue, x->umem, &x->rx, &x->tx, &scfg);
        if (rc) {
            *stage = 2;
            *err = -rc;
            xsk_umem__delete(x->umem);
            free_xsk(x);
            return NULL;
        }
        x->fd = xsk_socket__fd(x->xsk);
        rc = xskmap_fd < 0 ? 0 : xsk_socket__update_xskmap(x->xsk, xskmap_fd);
        if (rc) {
            *stage = 3;
            *err = -rc;
            release_rings(x);
            free_xsk(x);
            return NULL;
        }
    }
    x->meta = xskmap_fd >= 0;
    x->zero_copy = (bind_flags & XDP_ZEROCOPY) != 0;

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
    release_rings(x);
    free_xsk(x);
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

/* nx_rx_burst, and each frame's struct netio_xdp_meta copied to meta[i] (magic 0 where the
 * program wrote none). stamps[] holds the best clock every frame of the burst has, named
 * in *source: the NIC's (NX_TS_NIC), else the kernel's CLOCK_TAI at XDP time (NX_TS_XDP),
 * else the TSC at poll time (NX_TS_TSC), which *poll_tsc holds in any case. The magic is
 * cleared in the UMEM once read, so a recycled frame never shows an old frame's stamps. */
uint32_t nx_rx_burst_meta(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                          int64_t *stamps, struct netio_xdp_meta *meta, uint32_t *source,
                          int64_t *poll_tsc)
{
    uint32_t n = nx_rx_burst(x, max, offsets, lengths, stamps);
    *source = NX_TS_TSC;
    *poll_tsc = n ? stamps[0] : 0;
    int all_nic = x->meta, all_xdp = x->meta;
    for (uint32_t i = 0; i < n; i++) {
        struct netio_xdp_meta *m = (struct netio_xdp_meta *)(x->area + offsets[i]) - 1;
        if (x->meta && m->magic == NETIO_XDP_META_MAGIC) {
            meta[i] = *m;
            m->magic = 0;
        } else {
            memset(&meta[i], 0, sizeof(meta[i]));
            all_xdp = all_nic = 0;
        }
        all_nic &= meta[i].nic_rc == 0 && meta[i].nic_ns != 0;
    }
    if (n && (all_nic || all_xdp)) {
        *source = all_nic ? NX_TS_NIC : NX_TS_XDP;
        for (uint32_t i = 0; i < n; i++)
            stamps[i] = (int64_t)(all_nic ? meta[i].nic_ns : meta[i].xdp_ns);
    }
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

/* Note frame seq's completion stamp, overwriting the oldest unread one when the log is full. */
static void log_tx_stamp(struct nx_xsk *x, int64_t ns, uint32_t source)
{
    if (x->tx_log_count == x->tx_log_size) {
        x->tx_log_start = (x->tx_log_start + 1) % x->tx_log_size;
        x->tx_log_count--;
        x->tx_log_lost++;
    }
    struct nx_tx_stamp *s = &x->tx_log[(x->tx_log_start + x->tx_log_count++) % x->tx_log_size];
    s->seq = x->tx_completed++;
    s->ns = ns;
    s->source = source;
}

static void reclaim(struct nx_xsk *x)
{
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&x->cq, x->tx_frames, &idx);
    uint64_t mask = ~(uint64_t)(x->frame_size - 1);
    int64_t now = x->tx_log && n && !x->tx_meta_len ? (int64_t)__rdtsc() : 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = *xsk_ring_cons__comp_addr(&x->cq, idx + i) & mask;   /* the frame, not its data */
        x->free_tx[x->n_free_tx++] = addr;
        if (!x->tx_log)
            continue;
        if (x->tx_meta_len)   /* the kernel (copy mode) or the NIC wrote it before completing the frame */
            log_tx_stamp(x, (int64_t)((struct nx_tx_metadata *)(x->area + addr))->completion.tx_timestamp,
                         x->zero_copy ? NX_TS_NIC : NX_TS_XDP);
        else
            log_tx_stamp(x, now, NX_TS_TSC);
    }
    xsk_ring_cons__release(&x->cq, n);
}

/* Up to max completion stamps of sent frames, oldest first (reaping completions first);
 * *lost: how many were overwritten unread since the last call. */
uint32_t nx_tx_stamps(struct nx_xsk *x, struct nx_tx_stamp *out, uint32_t max, uint64_t *lost)
{
    reclaim(x);
    uint32_t n = x->tx_log_count < max ? x->tx_log_count : max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = x->tx_log[(x->tx_log_start + i) % x->tx_log_size];
    if (x->tx_log_size) {
        x->tx_log_start = (x->tx_log_start + n) % x->tx_log_size;
        x->tx_log_count -= n;
    }
    *lost = x->tx_log_lost;
    x->tx_log_lost = 0;
    return n;
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
 * publish their descriptors on the TX ring, without waking the kernel; returns how many
 * were taken, in order. When a frame lies outside buf or does not fit a UMEM frame
 * nothing is queued and the result is -(its index + 1). */
int64_t nx_tx_submit(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                     const uint32_t *lengths, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (offsets[i] < 0 || lengths[i] > x->frame_size - x->tx_meta_len ||
            (uint64_t)offsets[i] + lengths[i] > buf_len)
            return -(int64_t)i - 1;
    reclaim(x);
    uint32_t want = n < x->n_free_tx ? n : x->n_free_tx;
    uint32_t idx = 0;
    uint32_t got = want ? xsk_ring_prod__reserve(&x->tx, want, &idx) : 0;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < got; i++) {
        uint64_t addr = x->free_tx[--x->n_free_tx];
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx + i);
        d->options = 0;
        if (x->tx_meta_len) {   /* struct nx_tx_metadata first, the frame after it */
            struct nx_tx_metadata *meta = (struct nx_tx_metadata *)(x->area + addr);
            memset(meta, 0, sizeof(*meta));
            meta->flags = NX_XDP_TXMD_FLAGS_TIMESTAMP;
            addr += x->tx_meta_len;
            d->options = NX_XDP_TX_METADATA;
        }
        memcpy(x->area + addr, buf + offsets[i], lengths[i]);
        d->addr = addr;
        d->len = lengths[i];
        bytes += lengths[i];
    }
    if (got) {
        xsk_ring_prod__submit(&x->tx, got);
        x->c.tx_packets += got;
        x->c.tx_bytes += bytes;
    }
    x->c.ring_full += n - got;
    return got;
}

/* Wake the kernel to send what was submitted, when the ring asks for it. */
void nx_tx_kick(struct nx_xsk *x)
{
    if (xsk_ring_prod__needs_wakeup(&x->tx))
        kick_tx(x);
}

/* nx_tx_submit, then nx_tx_kick: queue n frames and have them sent. */
int64_t nx_tx_burst(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                    const uint32_t *lengths, uint32_t n)
{
    int64_t got = nx_tx_submit(x, buf, buf_len, offsets, lengths, n);
    if (got >= 0)
        nx_tx_kick(x);
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
    .tx_submit = nx_tx_submit,
    .tx_kick = nx_tx_kick,
    .rx_burst_meta = nx_rx_burst_meta,
};

const struct nx_burst_api *nx_api(void)
{
    return &api;
}

/* Load netio's metadata program (the BPF object at path) for ifindex: xdp_meta_nic bound to
 * the device when dev_bound (so the kernel resolves the RX-timestamp kfunc against its
 * driver), else xdp_meta_sw. The XSKMAP gets one slot per queue. Returns the object (for
 * nx_meta_unload) with *prog_fd and *map_fd, or NULL with *err (a positive errno); the
 * kernel's or libbpf's reason is in nx_last_log(). */
struct bpf_object *nx_meta_load(const char *path, int ifindex, int dev_bound, uint32_t queues,
                                int *prog_fd, int *map_fd, int *err)
{
    libbpf_set_print(keep_libbpf_log);
    last_log[0] = 0;
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    long rc = libbpf_get_error(obj);
    if (rc) {
        *err = (int)-rc;
        return NULL;
    }
    struct bpf_program *nic = bpf_object__find_program_by_name(obj, "xdp_meta_nic");
    struct bpf_program *sw = bpf_object__find_program_by_name(obj, "xdp_meta_sw");
    struct bpf_map *map = bpf_object__find_map_by_name(obj, "xsks_map");
    if (!nic || !sw || !map) {
        snprintf(last_log, sizeof(last_log), "%s is not netio's XDP metadata program", path);
        bpf_object__close(obj);
        *err = ENOENT;
        return NULL;
    }
    struct bpf_program *use = dev_bound ? nic : sw;
    bpf_program__set_autoload(dev_bound ? sw : nic, false);
    if (dev_bound) {
        bpf_program__set_flags(use, bpf_program__flags(use) | NX_BPF_F_XDP_DEV_BOUND_ONLY);
        bpf_program__set_ifindex(use, (uint32_t)ifindex);
    }
    bpf_map__set_max_entries(map, queues);
    rc = bpf_object__load(obj);
    if (rc) {
        *err = (int)(rc < 0 ? -rc : rc);
        bpf_object__close(obj);
        return NULL;
    }
    *prog_fd = bpf_program__fd(use);
    *map_fd = bpf_map__fd(map);
    return obj;
}

void nx_meta_unload(struct bpf_object *obj)
{
    bpf_object__close(obj);
}
