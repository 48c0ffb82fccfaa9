"""cffi build of netio._xdp: AF_XDP sockets over libxdp/libbpf, whole bursts per call;
and netio's XDP metadata program (xdp_meta_kern.c, BPF) compiled to netio/_xdp_meta.bpf.o."""
import subprocess
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
BPF_OBJECT = HERE.parent / "netio" / "_xdp_meta.bpf.o"

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
    struct netio_xdp_meta {                 /* xdp_meta.h */
        uint64_t nic_ns;
        uint64_t xdp_ns;
        int32_t nic_rc;
        uint32_t magic;
    };
    struct nx_tx_stamp {                    /* xdp.c */
        uint64_t seq;
        int64_t ns;
        uint32_t source;
        uint32_t pad;
    };
    struct nx_xsk;
    struct bpf_object;

    struct nx_xsk *nx_open(const char *ifname, uint32_t queue, void *area, uint32_t frame_size,
                           uint32_t frames, uint32_t ring_size, uint32_t xdp_flags,
                           uint32_t bind_flags, int xskmap_fd, uint32_t tx_meta_len, uint32_t tx_log,
                           int *stage, int *err);
    uint32_t nx_tx_stamps(struct nx_xsk *x, struct nx_tx_stamp *out, uint32_t max, uint64_t *lost);
    void nx_close(struct nx_xsk *x);
    int nx_fd(struct nx_xsk *x);
    int nx_set_busy_poll(struct nx_xsk *x, int usecs, int budget);
    uint32_t nx_rx_burst(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                         int64_t *stamps);
    uint32_t nx_rx_burst_meta(struct nx_xsk *x, uint32_t max, int64_t *offsets, uint32_t *lengths,
                              int64_t *stamps, struct netio_xdp_meta *meta, uint32_t *source,
                          int64_t *poll_tsc);
    void nx_release(struct nx_xsk *x, const int64_t *offsets, uint32_t n);
    int64_t nx_tx_burst(struct nx_xsk *x, const uint8_t *buf, uint64_t buf_len,
                        const int64_t *offsets, const uint32_t *lengths, uint32_t n);
    uint32_t nx_tx_in_flight(struct nx_xsk *x);
    void nx_counters(struct nx_xsk *x, struct nx_counters *out);
    int nx_kernel_stats(struct nx_xsk *x, struct xdp_statistics *out);
    const char *nx_last_log(void);
    struct nx_burst_api;
    const struct nx_burst_api *nx_api(void);
    struct bpf_object *nx_meta_load(const char *path, int ifindex, int dev_bound, uint32_t queues,
                                    int *prog_fd, int *map_fd, int *err);
    void nx_meta_unload(struct bpf_object *obj);

    #define XDP_FLAGS_SKB_MODE ...
    #define XDP_FLAGS_DRV_MODE ...
    #define XDP_COPY ...
    #define XDP_ZEROCOPY ...
    #define NX_TS_TSC ...
    #define NX_TS_XDP ...
    #define NX_TS_NIC ...
    #define NETIO_XDP_META_MAGIC ...
    #define NX_TX_META_LEN ...
""")
ffibuilder.set_source(
    "netio._xdp",
    '#include "xdp.c"',
    include_dirs=[str(HERE)],
    libraries=["xdp", "bpf"],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)


def build_bpf() -> None:
    """Compile the XDP program; -g keeps the BTF that libbpf needs to resolve the kfunc."""
    subprocess.run(["clang", "-O2", "-g", "-Wall", "-target", "bpf", "-I", str(HERE),
                    "-I", "/usr/include/x86_64-linux-gnu", "-c", str(HERE / "xdp_meta_kern.c"),
                    "-o", str(BPF_OBJECT)], check=True)


if __name__ == "__main__":
    build_bpf()
    ffibuilder.compile(verbose=False)
