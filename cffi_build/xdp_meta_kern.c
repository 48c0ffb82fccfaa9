/* netio's XDP program: redirect every frame to the AF_XDP socket bound to its queue (as
 * libxdp's default program does) with struct netio_xdp_meta in front of it, so the
 * socket reads when the frame arrived: the NIC's hardware stamp where the driver has
 * one, and the kernel's CLOCK_TAI at the moment XDP saw the frame.
 *
 * Two programs, one loaded: xdp_meta_nic asks the NIC through the
 * bpf_xdp_metadata_rx_timestamp kfunc, which the kernel resolves only for a program
 * loaded bound to the device (BPF_F_XDP_DEV_BOUND_ONLY) and attached in native mode;
 * xdp_meta_sw is the same without it, for generic (SKB) mode and drivers without the kfunc.
 *
 * Built by cffi_build/xdp_build.py with clang -O2 -target bpf.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>

#include "xdp_meta.h"

/* queue index -> AF_XDP socket; netio.xdp sets max_entries before loading */
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

extern int bpf_xdp_metadata_rx_timestamp(const struct xdp_md *ctx, __u64 *timestamp) __ksym;

static __always_inline int redirect(struct xdp_md *ctx, int ask_nic)
{
    __u64 now = bpf_ktime_get_tai_ns();
    if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct netio_xdp_meta)) == 0) {
        struct netio_xdp_meta *meta = (void *)(long)ctx->data_meta;
        if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
            __u64 nic = 0;
            meta->nic_rc = ask_nic ? bpf_xdp_metadata_rx_timestamp(ctx, &nic) : -EOPNOTSUPP;
            meta->nic_ns = nic;
            meta->xdp_ns = now;
            meta->magic = NETIO_XDP_META_MAGIC;
        }
    }
    return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp")
int xdp_meta_nic(struct xdp_md *ctx)
{
    return redirect(ctx, 1);
}

SEC("xdp")
int xdp_meta_sw(struct xdp_md *ctx)
{
    return redirect(ctx, 0);
}

char _license[] SEC("license") = "GPL";
