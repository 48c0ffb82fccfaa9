/* netio's DPDK burst functions as a table, for fused C loops in other native modules.
 *
 * DpdkPort.c_api() gives the address of the port's struct nd_queue and of this table;
 * a C loop (rx -> parse -> ... -> tx) casts them and calls through the table, so it
 * runs netio's own burst code with no Python per burst. The port must stay open while
 * the loop runs. Semantics are those of DpdkPort.rx_burst / release / tx_burst:
 * offsets are into the port's buffer (DpdkPort.buffer), held[] keeps a received
 * burst's mbufs until release (which may reorder held[]: scratch after it), tx_held
 * sends a received burst's mbufs without a copy. rx_burst polls the queue until max
 * frames or an empty poll, so max may exceed what the PMD gives per call.
 */
#ifndef NETIO_DPDK_API_H
#define NETIO_DPDK_API_H
#include <stdint.h>

#define ND_API_VERSION 1

struct nd_queue;
struct rte_mbuf;

struct nd_burst_api {
    uint32_t version;   /* ND_API_VERSION */
    uint16_t (*rx_burst)(struct nd_queue *q, uint16_t max, struct rte_mbuf **held, int64_t *offsets,
                         uint32_t *lengths, int64_t *stamps);
    void (*release)(struct rte_mbuf **held, uint16_t n);
    int64_t (*tx_copy)(struct nd_queue *q, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                       const uint32_t *lengths, uint32_t n);
    int64_t (*tx_held)(struct nd_queue *q, struct rte_mbuf **held, const int64_t *offsets,
                       const uint32_t *lengths, uint32_t n);
};

#endif
