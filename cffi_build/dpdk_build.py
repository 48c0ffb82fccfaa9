"""cffi build of netio._dpdk: DPDK 22.11 EAL, mempool and ethdev, whole bursts per call.

Compiler and linker flags come from `pkg-config libdpdk` (Debian's libdpdk-dev);
its -march is replaced by the house's x86-64-v2.
"""
import shlex
import subprocess
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent


def _pkg_config(*what: str) -> list[str]:
    out = subprocess.run(["pkg-config", *what, "libdpdk"], check=True, capture_output=True, text=True).stdout
    return shlex.split(out)


ffibuilder = cffi.FFI()
ffibuilder.cdef("""
    struct rte_mempool;
    struct rte_mbuf;
    struct nd_queue;

    struct nd_dev_info {
        char driver[64];
        char device[64];
        uint16_t max_rx_queues, max_tx_queues;
        uint16_t rx_desc_max, tx_desc_max;
        uint64_t rx_offload_capa, tx_offload_capa, flow_type_rss_offloads;
        int socket_id;
    };
    struct nd_link { uint32_t speed_mbps; int up, full_duplex, autoneg; };
    struct nd_stats { uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf; };
    struct nd_counters {
        uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
        uint64_t tx_refused, rx_multi_segment, tx_no_mbuf;
    };

    const char *nd_log(void);
    void nd_log_clear(void);
    int nd_eal_init(int argc, char **argv);
    int nd_eal_cleanup(void);

    int nd_probe(const char *devargs);
    int nd_remove(const char *devname);
    int nd_port_by_name(const char *name, uint16_t *port);
    int nd_dev_info(uint16_t port, struct nd_dev_info *out);
    struct rte_mempool *nd_pool_create(const char *name, uint32_t n, int socket_id, int *err);
    uint32_t nd_pool_span(struct rte_mempool *mp, uintptr_t *lo, uint64_t *len);
    void nd_pool_free(struct rte_mempool *mp);
    unsigned nd_pool_in_use(struct rte_mempool *mp);
    int nd_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t rx_desc, uint16_t tx_desc,
                      struct rte_mempool *mp, uint64_t rx_offloads, uint64_t rss_hf, int *stage);
    void nd_port_close(uint16_t port);
    int nd_promiscuous(uint16_t port, int on);
    int nd_link(uint16_t port, struct nd_link *out);
    int nd_stats(uint16_t port, struct nd_stats *out);
    int nd_xstats(uint16_t port, char *names, uint64_t *values, int n);
    int nd_timesync_enable(uint16_t port);
    int nd_read_clock(uint16_t port, uint64_t *ns);
    int nd_tx_timestamp(uint16_t port, int64_t *ns);
    int nd_rx_timestamp_field(int *offset, uint64_t *flag);

    struct nd_queue *nd_queue_new(uint16_t port, uint16_t queue, struct rte_mempool *mp, uintptr_t base,
                                  uint64_t span, int ts_offset, uint64_t ts_flag);
    void nd_queue_free(struct nd_queue *q);
    void nd_counters(const struct nd_queue *q, struct nd_counters *out);
    uint16_t nd_rx_burst(struct nd_queue *q, uint16_t max, struct rte_mbuf **held, int64_t *offsets,
                         uint32_t *lengths, int64_t *stamps);
    void nd_release(struct rte_mbuf **held, uint16_t n);
    struct nd_slot {
        struct rte_mbuf **held;
        int64_t *offsets;
        uint32_t *lengths;
        int64_t *stamps;
        uint16_t size, n;
    };
    uint16_t nd_rx_slot(struct nd_queue *q, struct nd_slot *s, uint16_t max);
    void nd_release_slot(struct nd_slot *s);
    int64_t nd_tx_copy(struct nd_queue *q, const uint8_t *buf, uint64_t buf_len, const int64_t *offsets,
                       const uint32_t *lengths, uint32_t n);
    int64_t nd_tx_held(struct nd_queue *q, struct rte_mbuf **held, const int64_t *offsets,
                       const uint32_t *lengths, uint32_t n);

    struct nd_burst_api;
    const struct nd_burst_api *nd_api(void);

    #define RTE_ETH_RX_OFFLOAD_TIMESTAMP ...
    #define RTE_ETH_RSS_IP ...
    #define RTE_ETH_RSS_UDP ...
    #define RTE_ETH_RSS_TCP ...
""")
ffibuilder.set_source(
    "netio._dpdk",
    '#include "dpdk.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=[f for f in _pkg_config("--cflags") if not f.startswith("-march")]
    + ["-O3", "-march=x86-64-v2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-DALLOW_EXPERIMENTAL_API"],
    extra_link_args=_pkg_config("--libs"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
