/* netio's AF_XDP burst functions as a table, for fused C loops in other native modules.
 *
 * XdpPort.c_api() gives the address of the port's struct nx_xsk and of this table;
 * a C loop (rx -> parse -> ... -> tx) casts them and calls through the table, so it
 * runs netio's own ring code with no Python per burst. The port must stay open while
 * the loop runs. Semantics are those of XdpPort.rx_burst / release / tx_burst.
 */
#ifndef NETIO_XDP_API_H
#define NETIO_XDP_API_H
#include <stdint.h>

#define NX_API_VERSION 1

struct nx_xsk;
struct netio_xdp_meta;

/* Which clock rx_burst_meta's stamps are in. */
#define NX_TS_TSC 0   /* TSC cycles when the burst was polled */
#define NX_TS_XDP 1   /* CLOCK_TAI ns taken by the kernel: RX when the XDP program ran, TX at completion */
#define NX_TS_NIC 2   /* the NIC's PTP hardware clock, ns */

struct nx_burst_api {
    uint32_t version;   /* NX_API_VERSION */
    uint32_t (*rx_burst)(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                         int64_t *stamps);
    void (*release)(struct nx_xsk *x, const int64_t *offsets, uint32_t n);
    int64_t (*tx_burst)(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                        const uint32_t *lengths, uint32_t n);
    /* tx_burst in two steps, for loops that stamp them apart: tx_submit copies the frames
     * and publishes their descriptors on the TX ring (returns as tx_burst); tx_kick wakes
     * the kernel when the ring asks for it (in copy mode that sendto() transmits). */
    int64_t (*tx_submit)(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                         const uint32_t *lengths, uint32_t n);
    void (*tx_kick)(struct nx_xsk *x);
    /* rx_burst plus each frame's struct netio_xdp_meta (xdp_meta.h) in meta[i], stamps[] in
     * the best clock the whole burst has, named in *source (NX_TS_*), and the poll-time TSC
     * in *poll_tsc. On a port opened without rx_metadata it gives NX_TS_TSC and zeroed meta.
     * rx_burst itself keeps giving TSC-at-poll stamps, metadata or not. */
    uint32_t (*rx_burst_meta)(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                              int64_t *stamps, struct netio_xdp_meta *meta, uint32_t *source,
                              int64_t *poll_tsc);
};

#endif
