/* Receive and send loops in C over netio's DPDK burst table (cffi_build/dpdk_api.h).
 *
 * The benchmark opens a netio DpdkPort and hands DpdkPort.c_api() to these loops, the
 * way a netio application's fused C loop drives a port: netio's own burst code with no
 * Python per burst. Per frame they do what dpdk-testpmd's rxonly/txonly do, or more:
 * receive (plus netio's offsets, lengths, stamps and counters) and free; or take fresh
 * mbufs and write a whole frame into each (testpmd writes its 42 header bytes) and send.
 *
 * *_pps loops run for a time and return frames per second; *_count loops run a number
 * of bursts and, under callgrind, count the instructions of exactly that loop (zeroed
 * at its start, dumped at its end). Built as a shared library.
 */
#include <stdint.h>
#include <time.h>

#include <valgrind/callgrind.h>

#include "dpdk_api.h"

#define MAX_BURST 512
#define CLOCK_EVERY 8   /* bursts between clock readings: testpmd's loop reads no clock */

struct rx_arrays {
    struct rte_mbuf *held[MAX_BURST];
    int64_t offsets[MAX_BURST], stamps[MAX_BURST];
    uint32_t lengths[MAX_BURST];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint16_t rx_release(struct nd_queue *q, const struct nd_burst_api *api, uint16_t burst,
                                  struct rx_arrays *a)
{
    uint16_t n = api->rx_burst(q, burst, a->held, a->offsets, a->lengths, a->stamps);
    api->release(a->held, n);
    return n;
}

/* rx_burst + release for warmup_ns, then frames received per second over window_ns. */
double fused_rx_pps(struct nd_queue *q, const struct nd_burst_api *api, uint16_t burst, int64_t warmup_ns,
                    int64_t window_ns)
{
    struct rx_arrays a;
    if (api->version != ND_API_VERSION || burst > MAX_BURST)
        return -1;
    int64_t start = now_ns() + warmup_ns, end = start + window_ns, t, counted = 0;
    while ((t = now_ns()) < start)
        rx_release(q, api, burst, &a);
    while ((t = now_ns()) < end)
        for (int i = 0; i < CLOCK_EVERY; i++)
            counted += rx_release(q, api, burst, &a);
    return (double)counted * 1e9 / (double)(t - start);
}

/* tx_copy of the same n frames for warmup_ns, then frames sent per second over window_ns. */
double fused_tx_pps(struct nd_queue *q, const struct nd_burst_api *api, const uint8_t *buf, uint64_t buf_len,
                    const int64_t *offsets, const uint32_t *lengths, uint32_t n, int64_t warmup_ns,
                    int64_t window_ns)
{
    if (api->version != ND_API_VERSION)
        return -1;
    int64_t start = now_ns() + warmup_ns, end = start + window_ns, t, sent = 0;
    while ((t = now_ns()) < start)
        api->tx_copy(q, buf, buf_len, offsets, lengths, n);
    while ((t = now_ns()) < end)
        for (int i = 0; i < CLOCK_EVERY; i++)
            sent += api->tx_copy(q, buf, buf_len, offsets, lengths, n);
    return (double)sent * 1e9 / (double)(t - start);
}

/* `bursts` rounds of rx_burst + release; returns the frames received. */
int64_t fused_rx_count(struct nd_queue *q, const struct nd_burst_api *api, uint16_t burst, int64_t bursts)
{
    struct rx_arrays a;
    if (api->version != ND_API_VERSION || burst > MAX_BURST)
        return -1;
    rx_release(q, api, burst, &a);   /* the first call sets the queue up: not a steady-state cost */
    int64_t counted = 0;
    CALLGRIND_ZERO_STATS;
    for (int64_t i = 0; i < bursts; i++)
        counted += rx_release(q, api, burst, &a);
    CALLGRIND_DUMP_STATS_AT("fused_rx_count");
    return counted;
}

/* `bursts` rounds of tx_copy of the same n frames; returns the frames sent. */
int64_t fused_tx_count(struct nd_queue *q, const struct nd_burst_api *api, const uint8_t *buf, uint64_t buf_len,
                       const int64_t *offsets, const uint32_t *lengths, uint32_t n, int64_t bursts)
{
    if (api->version != ND_API_VERSION)
        return -1;
    api->tx_copy(q, buf, buf_len, offsets, lengths, n);
    int64_t sent = 0;
    CALLGRIND_ZERO_STATS;
    for (int64_t i = 0; i < bursts; i++)
        sent += api->tx_copy(q, buf, buf_len, offsets, lengths, n);
    CALLGRIND_DUMP_STATS_AT("fused_tx_count");
    return sent;
}
