/* Receive and send loops in C over netio's DPDK burst table (cffi_build/dpdk_api.h).
 *
 * The benchmark opens a netio DpdkPort and hands DpdkPort.c_api() to these loops:
 * the rate netio's own burst code reaches with no Python per burst, to set beside
 * the Python loop and testpmd. Built as a shared library.
 */
#include <stdint.h>
#include <time.h>

#include "dpdk_api.h"

#define MAX_BURST 512
#define CLOCK_EVERY 8   /* bursts between clock readings: testpmd's loop reads no clock */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* rx_burst + release for warmup_ns, then frames received per second over window_ns. */
double fused_rx_pps(struct nd_queue *q, const struct nd_burst_api *api, uint16_t burst, int64_t warmup_ns,
                    int64_t window_ns)
{
    struct rte_mbuf *held[MAX_BURST];
    int64_t offsets[MAX_BURST], stamps[MAX_BURST];
    uint32_t lengths[MAX_BURST];
    if (api->version != ND_API_VERSION || burst > MAX_BURST)
        return -1;
    int64_t start = now_ns() + warmup_ns, end = start + window_ns, t, counted = 0;
    while ((t = now_ns()) < start)
        api->release(held, api->rx_burst(q, burst, held, offsets, lengths, stamps));
    while ((t = now_ns()) < end) {
        for (int i = 0; i < CLOCK_EVERY; i++) {
            uint16_t n = api->rx_burst(q, burst, held, offsets, lengths, stamps);
            counted += n;
            api->release(held, n);
        }
    }
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
