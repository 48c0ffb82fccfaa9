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

struct nx_burst_api {
    uint32_t version;   /* NX_API_VERSION */
    uint32_t (*rx_burst)(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                         int64_t *stamps);
    void (*release)(struct nx_xsk *x, const int64_t *offsets, uint32_t n);
    int64_t (*tx_burst)(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                        const uint32_t *lengths, uint32_t n);
};

#endif
