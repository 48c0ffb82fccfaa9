/* DPDK 22.11 burst I/O: EAL start-up, one mempool and one ethdev per device, whole bursts per call.
 *
 * rte_eth_rx_burst/tx_burst are inline in the headers, so every per-packet step is
 * here: a receive call fills offset/length/stamp arrays (offsets into the mempool's
 * memory, which Python sees as one numpy array) and keeps the mbuf pointers until
 * nd_release() frees them; a send call copies frames into fresh mbufs, or sends
 * mbufs a burst received (echo) without copying.
 *
 * EAL logs go to a buffer instead of the console; Python reads the last lines for
 * its error sentences (nd_log).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>

#include "dpdk_api.h"

/* ---- the log: the last few KiB of what EAL and the drivers said ---------------------- */
static char log_buf[8192];
static size_t log_len;

static ssize_t log_write(void *cookie, const char *data, size_t n)
{
    (void)cookie;
    if (n >= sizeof(log_buf)) {
        data += n - (sizeof(log_buf) - 1);
        n = sizeof(log_buf) - 1;
    }
    if (log_len + n >= sizeof(log_buf)) {   /* keep the newest: drop the oldest half */
        size_t keep = sizeof(log_buf) / 2 > n ? sizeof(log_buf) / 2 - n : 0;
        memmove(log_buf, log_buf + log_len - keep, keep);
        log_len = keep;
    }
    memcpy(log_buf + log_len, data, n);
    log_len += n;
    log_buf[log_len] = 0;
    return (ssize_t)n;
}

const char *nd_log(void)
{
    return log_buf;
}

void nd_log_clear(void)
{
    log_len = 0;
    log_buf[0] = 0;
}

/* Returns 0, or a positive errno (rte_errno) when EAL refused to start. */
int nd_eal_init(int argc, char **argv)
{
    static cookie_io_functions_t fns = {.write = log_write};
    FILE *stream = fopencookie(NULL, "w", fns);
    if (stream) {
        setvbuf(stream, NULL, _IONBF, 0);
        rte_openlog_stream(stream);
    }
    nd_log_clear();
    int rc = rte_eal_init(argc, argv);
    if (rc < 0)
        return rte_errno ? rte_errno : EINVAL;
    return 0;
}

int nd_eal_cleanup(void)
{
    return -rte_eal_cleanup();
}

/* ---- devices --------------------------------------------------------------------------- */
int nd_probe(const char *devargs)
{
    return -rte_dev_probe(devargs);
}

int nd_port_by_name(const char *name, uint16_t *port)
{
    return -rte_eth_dev_get_port_by_name(name, port);
}

struct nd_dev_info {
    char driver[64];
    char device[64];
    uint16_t max_rx_queues, max_tx_queues;
    uint16_t rx_desc_max, tx_desc_max;
    uint64_t rx_offload_capa, tx_offload_capa, flow_type_rss_offloads;
    int socket_id;
};

int nd_dev_info(uint16_t port, struct nd_dev_info *out)
{
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc)
        return -rc;
    snprintf(out->driver, sizeof(out->driver), "%s", info.driver_name ? info.driver_name : "");
    snprintf(out->device, sizeof(out->device), "%s", info.device ? rte_dev_name(info.device) : "");
    out->max_rx_queues = info.max_rx_queues;
    out->max_tx_queues = info.max_tx_queues;
    out->rx_desc_max = info.rx_desc_lim.nb_max;
    out->tx_desc_max = info.tx_desc_lim.nb_max;
    out->rx_offload_capa = info.rx_offload_capa;
    out->tx_offload_capa = info.tx_offload_capa;
    out->flow_type_rss_offloads = info.flow_type_rss_offloads;
    out->socket_id = rte_eth_dev_socket_id(port);
    return 0;
}

struct rte_mempool *nd_pool_create(const char *name, uint32_t n, int socket_id, int *err)
{
    uint32_t cache = n >= 4 * 256 ? 256 : 0;
    struct rte_mempool *mp = rte_pktmbuf_pool_create(name, n, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                     socket_id < 0 ? SOCKET_ID_ANY : socket_id);
    *err = mp ? 0 : rte_errno;
    return mp;
}

struct span {
    uintptr_t lo, hi;
};

static void widen(struct rte_mempool *mp, void *opaque, struct rte_mempool_memhdr *hdr, unsigned idx)
{
    (void)mp;
    (void)idx;
    struct span *s = opaque;
    uintptr_t lo = (uintptr_t)hdr->addr, hi = lo + hdr->len;
    if (!s->lo || lo < s->lo)
        s->lo = lo;
    if (hi > s->hi)
        s->hi = hi;
}

/* The smallest address range holding every mbuf of mp; returns the number of memory chunks. */
uint32_t nd_pool_span(struct rte_mempool *mp, uintptr_t *lo, uint64_t *len)
{
    struct span s = {0, 0};
    uint32_t chunks = rte_mempool_mem_iter(mp, widen, &s);
    *lo = s.lo;
    *len = s.hi - s.lo;
    return chunks;
}

void nd_pool_free(struct rte_mempool *mp)
{
    rte_mempool_free(mp);
}

unsigned nd_pool_in_use(struct rte_mempool *mp)
{
    return rte_mempool_in_use_count(mp);
}

/* Configure nrxq receive and ntxq transmit queues (RSS over the receive queues when
 * there are several) and start the port. Returns 0, or a positive errno with *stage
 * saying which step refused: 1 configure, 2 rx queue, 3 tx queue, 4 start. */
int nd_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t rx_desc, uint16_t tx_desc,
                  struct rte_mempool *mp, uint64_t rx_offloads, uint64_t rss_hf, int *stage)
{
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rxmode.offloads = rx_offloads;
    if (nrxq > 1 && rss_hf) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    *stage = 1;
    int rc = rte_eth_dev_configure(port, nrxq, ntxq, &conf);
    if (rc)
        return -rc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    if (rc)
        return -rc;
    int socket_id = rte_eth_dev_socket_id(port);
    *stage = 2;
    for (uint16_t q = 0; q < nrxq; q++) {
        rc = rte_eth_rx_queue_setup(port, q, rx_desc, socket_id, NULL, mp);
        if (rc)
            return -rc;
    }
    *stage = 3;
    for (uint16_t q = 0; q < ntxq; q++) {
        rc = rte_eth_tx_queue_setup(port, q, tx_desc, socket_id, NULL);
        if (rc)
            return -rc;
    }
    *stage = 4;
    rc = rte_eth_dev_start(port);
    return rc ? -rc : 0;
}

void nd_port_close(uint16_t port)
{
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
}

int nd_remove(const char *devname)
{
    /* virtual devices live on the "vdev" bus, PCI functions on "pci" */
    int rc = rte_eal_hotplug_remove("vdev", devname);
    if (rc)
        rc = rte_eal_hotplug_remove("pci", devname);
    return -rc;
}

int nd_promiscuous(uint16_t port, int on)
{
    return -(on ? rte_eth_promiscuous_enable(port) : rte_eth_promiscuous_disable(port));
}

struct nd_link {
    uint32_t speed_mbps;
    int up, full_duplex, autoneg;
};

int nd_link(uint16_t port, struct nd_link *out)
{
    struct rte_eth_link link;
    int rc = rte_eth_link_get_nowait(port, &link);
    if (rc)
        return -rc;
    out->speed_mbps = link.link_speed;
    out->up = link.link_status;
    out->full_duplex = link.link_duplex;
    out->autoneg = link.link_autoneg;
    return 0;
}

struct nd_stats {
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};

int nd_stats(uint16_t port, struct nd_stats *out)
{
    struct rte_eth_stats s;
    int rc = rte_eth_stats_get(port, &s);
    if (rc)
        return -rc;
    *out = (struct nd_stats){s.ipackets, s.opackets, s.ibytes, s.obytes, s.imissed, s.ierrors,
                             s.oerrors, s.rx_nombuf};
    return 0;
}

/* Up to n extended statistics: names (64 bytes each) and values. Returns how many there are. */
int nd_xstats(uint16_t port, char *names, uint64_t *values, int n)
{
    int total = rte_eth_xstats_get_names(port, NULL, 0);
    if (total <= 0 || n <= 0)
        return total;
    struct rte_eth_xstat_name *nm = calloc((size_t)total, sizeof(*nm));
    struct rte_eth_xstat *xs = calloc((size_t)total, sizeof(*xs));
    int got = -ENOMEM;
    if (nm && xs && rte_eth_xstats_get_names(port, nm, total) == total) {
        got = rte_eth_xstats_get(port, xs, total);
        for (int i = 0; i < got && i < n; i++) {
            memcpy(names + (size_t)i * 64, nm[xs[i].id].name, 64);
            values[i] = xs[i].value;
        }
    }
    free(nm);
    free(xs);
    return got;
}

/* Read the NIC's clock (ns) for hardware timestamps; a positive errno where there is none. */
int nd_timesync_enable(uint16_t port)
{
    return -rte_eth_timesync_enable(port);
}

int nd_read_clock(uint16_t port, uint64_t *ns)
{
    return -rte_eth_read_clock(port, ns);
}

int nd_tx_timestamp(uint16_t port, int64_t *ns)
{
    struct timespec ts;
    int rc = rte_eth_timesync_read_tx_timestamp(port, &ts);
    if (rc)
        return -rc;
    *ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return 0;
}

/* Register the mbuf timestamp field the PMD fills when RTE_ETH_RX_OFFLOAD_TIMESTAMP is on. */
int nd_rx_timestamp_field(int *offset, uint64_t *flag)
{
    return -rte_mbuf_dyn_rx_timestamp_register(offset, flag);
}

/* ---- the burst path -------------------------------------------------------------------- */
struct nd_counters {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
    uint64_t tx_refused;         /* frames the TX queue did not take (ring full) */
    uint64_t rx_multi_segment;   /* frames larger than one mbuf, dropped */
    uint64_t tx_no_mbuf;         /* frames not taken because the pool had no mbuf for them */
};

struct nd_queue {
    uint16_t port, queue;
    struct rte_mempool *mp;
    uintptr_t base;              /* address of byte 0 of the numpy view over the pool */
    uint64_t span;
    int ts_offset;               /* >= 0: read the NIC stamp from this dynfield */
    uint64_t ts_flag;
    struct nd_counters c;
};

struct nd_queue *nd_queue_new(uint16_t port, uint16_t queue, struct rte_mempool *mp, uintptr_t base,
                              uint64_t span, int ts_offset, uint64_t ts_flag)
{
    struct nd_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    *q = (struct nd_queue){.port = port, .queue = queue, .mp = mp, .base = base, .span = span,
                           .ts_offset = ts_offset, .ts_flag = ts_flag};
    return q;
}

void nd_queue_free(struct nd_queue *q)
{
    free(q);
}

void nd_counters(const struct nd_queue *q, struct nd_counters *out)
{
    *out = q->c;
}

/* Receive up to max frames; held[] keeps their mbufs until nd_release. Polls the
 * queue again while it keeps giving frames and there is room, since many PMDs give at
 * most 32 per call. Frames that span several mbufs are freed and counted (they cannot
 * be one view). Stamps are the NIC's where the PMD gives them (0 for a frame it did
 * not stamp), else one TSC reading for the whole burst. */
uint16_t nd_rx_burst(struct nd_queue *q, uint16_t max, struct rte_mbuf **held, int64_t *offsets,
                     uint32_t *lengths, int64_t *stamps)
{
    uint16_t got = 0, k;
    do {
        k = rte_eth_rx_burst(q->port, q->queue, held + got, max - got);
        got += k;
    } while (k && got < max);
    if (!got)
        return 0;
    const uintptr_t base = q->base;
    uint16_t n = 0;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < got; i++) {
        struct rte_mbuf *m = held[i];
        if (unlikely(m->nb_segs != 1)) {
            q->c.rx_multi_segment++;
            rte_pktmbuf_free(m);
            continue;
        }
        held[n] = m;
        offsets[n] = (int64_t)((uintptr_t)m->buf_addr + m->data_off - base);
        lengths[n] = m->data_len;
        bytes += m->data_len;
        n++;
    }
    if (q->ts_offset >= 0) {
        for (uint16_t i = 0; i < n; i++)
            stamps[i] = (held[i]->ol_flags & q->ts_flag)
                ? (int64_t)*RTE_MBUF_DYNFIELD(held[i], q->ts_offset, rte_mbuf_timestamp_t *) : 0;
    } else {
        const int64_t tsc = (int64_t)rte_rdtsc();
        for (uint16_t i = 0; i < n; i++)
            stamps[i] = tsc;
    }
    q->c.rx_packets += n;
    q->c.rx_bytes += bytes;
    return n;
}

/* rte_pktmbuf_free_bulk for what a receive gives: direct one-segment mbufs of one pool
 * that nothing else references (refcnt 1) go back to the pool in one put, without
 * reading their second cache line (a single segment's next is NULL by the mbuf
 * rules); any other (an echo the driver still holds, an attached or foreign mbuf)
 * is freed the general way. held[] is reordered. */
void nd_release(struct rte_mbuf **held, uint16_t n)
{
    if (!n)
        return;
    struct rte_mempool *mp = held[0]->pool;
    uint16_t plain = 0;
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = held[i];
        if (likely(m->pool == mp && m->nb_segs == 1 && rte_mbuf_refcnt_read(m) == 1 && RTE_MBUF_DIRECT(m)))
            held[plain++] = m;
        else
            rte_pktmbuf_free(m);
    }
    rte_mempool_put_bulk(mp, (void **)held, plain);
}

/* The arrays one received burst is lent out in (Python's slot), as one argument:
 * each pointer argument of a cffi call costs about as much as a short burst's C work. */
struct nd_slot {
    struct rte_mbuf **held;
    int64_t *offsets;
    uint32_t *lengths;
    int64_t *stamps;
    uint16_t size, n;
};

uint16_t nd_rx_slot(struct nd_queue *q, struct nd_slot *s, uint16_t max)
{
    s->n = nd_rx_burst(q, max < s->size ? max : s->size, s->held, s->offsets, s->lengths, s->stamps);
    return s->n;
}

void nd_release_slot(struct nd_slot *s)
{
    nd_release(s->held, s->n);
    s->n = 0;
}

/* Send n mbufs of lengths[] bytes; the mbufs the queue did not take are freed. The
 * lengths come from the caller because sent mbufs are the driver's (maybe freed already). */
static uint16_t tx_mbufs(struct nd_queue *q, struct rte_mbuf **mbufs, const uint32_t *lengths, uint16_t n)
{
    uint16_t sent = rte_eth_tx_burst(q->port, q->queue, mbufs, n);
    for (uint16_t i = 0; i < sent; i++)
        q->c.tx_bytes += lengths[i];
    q->c.tx_packets += sent;
    if (sent < n)
        rte_pktmbuf_free_bulk(mbufs + sent, n - sent);
    return sent;
}

#define TX_CHUNK 64

/* Copy n frames (buf + offsets[i], lengths[i] bytes) into fresh mbufs and send them.
 * Returns how many the queue took, or -(i + 1) when frame i lies outside buf or does
 * not fit one mbuf (then nothing is sent). */
int64_t nd_tx_copy(struct nd_queue *q, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                   const uint32_t *lengths, uint32_t n)
{
    uint32_t room = rte_pktmbuf_data_room_size(q->mp) - RTE_PKTMBUF_HEADROOM;
    for (uint32_t i = 0; i < n; i++)
        if (offsets[i] < 0 || lengths[i] > room || (uint64_t)offsets[i] + lengths[i] > buf_len)
            return -(int64_t)i - 1;
    struct rte_mbuf *mbufs[TX_CHUNK];
    uint32_t done = 0;
    while (done < n) {
        uint16_t k = n - done < TX_CHUNK ? (uint16_t)(n - done) : TX_CHUNK;
        /* What rte_pktmbuf_alloc_bulk does, but each mbuf is reset in the copy loop: its
         * separate reset pass over the burst sent a third fewer frames per second into
         * net_null (64-byte frames, bursts of 64) */
        if (rte_mempool_get_bulk(q->mp, (void **)mbufs, k)) {
            q->c.tx_no_mbuf += n - done;
            return done;
        }
        for (uint16_t j = 0; j < k; j++) {
            struct rte_mbuf *m = mbufs[j];
            uint32_t len = lengths[done + j];
            rte_pktmbuf_reset(m);
            rte_memcpy(rte_pktmbuf_mtod(m, void *), buf + offsets[done + j], len);
            m->data_len = (uint16_t)len;
            m->pkt_len = len;
        }
        uint16_t sent = tx_mbufs(q, mbufs, lengths + done, k);
        done += sent;
        if (sent < k)
            break;
    }
    q->c.tx_refused += n - done;
    return done;
}

/* Send frames of a burst this queue's pool received, without copying: each mbuf
 * gets one more reference (the burst still owns its own and frees it on release).
 * offsets/lengths may have been changed by the caller but must stay inside the
 * mbuf's buffer; returns -(i + 1) for the first that does not (nothing is sent). */
int64_t nd_tx_held(struct nd_queue *q, struct rte_mbuf **held, const int64_t *offsets,
                   const uint32_t *lengths, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct rte_mbuf *m = held[i];
        int64_t start = offsets[i] - (int64_t)((uintptr_t)m->buf_addr - q->base);
        if (start < 0 || start + lengths[i] > m->buf_len)
            return -(int64_t)i - 1;
    }
    uint32_t done = 0;
    struct rte_mbuf *mbufs[TX_CHUNK];
    while (done < n) {
        uint16_t k = n - done < TX_CHUNK ? (uint16_t)(n - done) : TX_CHUNK;
        for (uint16_t j = 0; j < k; j++) {
            struct rte_mbuf *m = held[done + j];
            m->data_off = (uint16_t)(offsets[done + j] - (int64_t)((uintptr_t)m->buf_addr - q->base));
            m->data_len = (uint16_t)lengths[done + j];
            m->pkt_len = lengths[done + j];
            rte_mbuf_refcnt_update(m, 1);
            mbufs[j] = m;
        }
        uint16_t sent = tx_mbufs(q, mbufs, lengths + done, k);
        done += sent;
        if (sent < k)
            break;
    }
    q->c.tx_refused += n - done;
    return done;
}

static const struct nd_burst_api api = {
    .version = ND_API_VERSION,
    .rx_burst = nd_rx_burst,
    .release = nd_release,
    .tx_copy = nd_tx_copy,
    .tx_held = nd_tx_held,
};

const struct nd_burst_api *nd_api(void)
{
    return &api;
}
