"""cffi build of netio._stack: the L2-L4 stack (Ethernet/VLAN, ARP, IPv4, ICMP, UDP, IGMP) over bursts."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef("""
    #define STK_MAX_GROUPS ...
    #define STK_N_VERDICTS ...

    struct stk_config {
        uint8_t mac[6];
        uint16_t vlan;
        uint32_t ip;
        uint32_t groups[...];
        uint32_t n_groups;
        uint16_t ip_id;
        uint8_t ttl;
        uint8_t mcast_ttl;
        uint8_t monitor;
    };

    struct stk_datagram {
        int64_t offset;
        uint32_t length;
        uint32_t frame;
        uint32_t src_ip;
        uint32_t dst_ip;
        uint16_t src_port;
        uint16_t dst_port;
        uint8_t src_mac[6];
        uint16_t vlan;
        uint32_t reserved;
    };

    const char *stk_verdict_name(unsigned v);

    uint32_t stk_process(struct stk_config *cfg, const uint8_t *bound,
                         const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                         uint8_t *verdict, struct stk_datagram *dg,
                         uint8_t *rbuf, uint64_t rcap, int64_t *roff, uint32_t *rlen, uint32_t rmax,
                         uint32_t *n_replies, uint64_t *counts);

    uint32_t stk_build_udp(struct stk_config *cfg,
                           const uint8_t *pbuf, const int64_t *poff, const uint32_t *plen, uint32_t n,
                           const uint8_t *dst_mac, uint32_t mac_step, const uint32_t *dst_ip, uint32_t ip_step,
                           const uint16_t *dst_port, uint32_t dport_step,
                           const uint16_t *src_port, uint32_t sport_step,
                           uint8_t *obuf, uint64_t ocap, int64_t *ooff, uint32_t *olen);

    uint32_t stk_build_igmp(struct stk_config *cfg, uint32_t group, int leave, uint8_t *out);
""")
ffibuilder.set_source(
    "netio._stack",
    '#include "stack.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
