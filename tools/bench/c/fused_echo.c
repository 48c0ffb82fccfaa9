/* An echo server as a fused C loop over netio's own AF_XDP burst functions.
 *
 * The Python benchmark opens a netio XdpPort, hands its XdpPort.c_api() addresses to
 * fused_echo(), and this loop does rx_burst -> swap addresses in place -> tx_submit ->
 * release through netio's table (cffi_build/xdp_api.h): the path a latency-bound
 * netio application takes, with no Python per burst. Built as a shared library.
 *
 * Every frame gets its MACs swapped; an IPv4 UDP datagram also its IP addresses and
 * ports, so it goes back to the sending socket (both checksums stay valid: swapping
 * 16-bit words keeps their one's-complement sum), which lets a UDP client time this
 * echo and a venue on the same path (tools/bench/c/ouch_client.c).
 *
 * It stamps what the venue's telemetry calls TOTAL: TSC cycles from the poll that found
 * a burst (rx_burst's stamp) to its descriptors on the TX ring (tx_submit), before the
 * kick. Beside the venue's, that is the least walk this path allows, and its tail what
 * the machine alone adds to so short a walk.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "xdp_api.h"

#define BURST 64

static void swap(uint8_t *a, uint8_t *b, size_t n)
{
    uint8_t t[6];
    memcpy(t, a, n);
    memcpy(a, b, n);
    memcpy(b, t, n);
}

static void turn_around(uint8_t *f, uint32_t len)
{
    swap(f, f + 6, 6);
    if (len < 34 || f[12] != 0x08 || f[13] != 0x00 || f[23] != 17)   /* IPv4, UDP */
        return;
    uint32_t udp = 14 + 4 * (f[14] & 0x0f);
    swap(f + 26, f + 30, 4);
    if (len >= udp + 8)
        swap(f + udp, f + udp + 2, 2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Echo until idle_ns pass without a frame (after the first one) or max_ns in all;
 * returns how many frames were sent back. Each sent frame's poll-to-submit cycles go to
 * walks[] (the first `room`; *n_walks counts them). */
int64_t fused_echo(struct nx_xsk *port, const struct nx_burst_api *api, uint8_t *umem, uint64_t umem_len,
                   int64_t idle_ns, int64_t max_ns, uint64_t *walks, uint64_t room, uint64_t *n_walks)
{
    int64_t offsets[BURST], stamps[BURST], echoed = 0;
    uint32_t lengths[BURST];
    int64_t start = now_ns(), last = 0;
    *n_walks = 0;
    if (api->version != NX_API_VERSION)
        return -1;
    for (;;) {
        uint32_t n = api->rx_burst(port, BURST, offsets, lengths, stamps);
        if (n) {
            for (uint32_t i = 0; i < n; i++)
                turn_around(umem + offsets[i], lengths[i]);
            int64_t sent = api->tx_submit(port, umem, umem_len, offsets, lengths, n);
            uint64_t took = __rdtsc() - (uint64_t)stamps[0];
            if (sent >= 0)
                api->tx_kick(port);
            echoed += sent > 0 ? sent : 0;
            for (int64_t i = 0; i < sent && *n_walks < room; i++)
                walks[(*n_walks)++] = took;
            api->release(port, offsets, n);
            last = now_ns();
        } else {
            int64_t t = now_ns();
            if ((last && t - last > idle_ns) || t - start > max_ns)
                return echoed;
        }
    }
}
