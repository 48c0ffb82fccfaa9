"""cffi build of netio._xdp: AF_XDP sockets over libxdp/libbpf, whole bursts per call."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef("""
    struct nx_counters {
        uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
        uint64_t ring_full, wakeups, fill_ring_empty;
    };
    struct xdp_statistics {                 /* <linux/if_xdp.h> */
        uint64_t rx_dropped;
        uint64_t rx_invalid_descs;
        uint64_t tx_invalid_descs;
        uint64_t rx_ring_full;
        uint64_t rx_fill_ring_empty_descs;
        uint64_t tx_ring_empty_descs;
    };
    struct nx_xsk;

    struct nx_xsk *nx_open(const char *ifname, uint32_t queue, void *area, uint32_t frame_size,
                           uint32_t frames, uint32_t ring_size, uint32_t xdp_flags,
                           uint32_t bind_flags, int *stage, int *err);
    void nx_close(struct nx_xsk *x);
    int nx_fd(struct nx_xsk *x);
    int nx_set_busy_poll(struct nx_xsk *x, int usecs, int budget);
    uint32_t nx_rx_burst(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                         int64_t *stamps);
    void nx_release(struct nx_xsk *x, const int64_t *offsets, uint32_t n);
    int64_t nx_tx_burst(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len,
                        const int64_t *offsets, const uint32_t *lengths, uint32_t n);
    uint32_t nx_tx_in_flight(struct nx_xsk *x);
    void nx_counters(struct nx_xsk *x, struct nx_counters *out);
    int nx_kernel_stats(struct nx_xsk *x, struct xdp_statistics *out);
    const char *nx_last_log(void);
    struct nx_burst_api;
    const struct nx_burst_api *nx_api(void);

    #define XDP_FLAGS_SKB_MODE ...
    #define XDP_FLAGS_DRV_MODE ...
    #define XDP_COPY ...
    #define XDP_ZEROCOPY ...
""")
ffibuilder.set_source(
    "netio._xdp",
    '#include "xdp.c"',
    include_dirs=[str(HERE)],
    libraries=["xdp", "bpf"],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
