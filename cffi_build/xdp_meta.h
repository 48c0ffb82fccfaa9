/* What netio's XDP program (xdp_meta_kern.c) writes in front of every frame it hands to an
 * AF_XDP socket, read back by xdp.c from the UMEM: the one layout both sides share.
 *
 * The program reserves it with bpf_xdp_adjust_meta, so it ends where the frame begins:
 * struct netio_xdp_meta lies at (frame address - sizeof(struct netio_xdp_meta)).
 */
#ifndef NETIO_XDP_META_H
#define NETIO_XDP_META_H
#include <linux/types.h>

#define NETIO_XDP_META_MAGIC 0x6e78746dU   /* "nxtm": written last by the program, cleared by the reader */

struct netio_xdp_meta {
    __u64 nic_ns;      /* the NIC's RX stamp (its PHC, ns) from bpf_xdp_metadata_rx_timestamp; 0: none */
    __u64 xdp_ns;      /* CLOCK_TAI when the XDP program ran (bpf_ktime_get_tai_ns), ns */
    __s32 nic_rc;      /* the kfunc's return: 0, or -errno (-EOPNOTSUPP: driver lacks it or not asked) */
    __u32 magic;       /* NETIO_XDP_META_MAGIC */
};

#endif
