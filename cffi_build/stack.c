/* netio._stack: Ethernet/802.1Q, ARP, IPv4, ICMP echo, UDP and IGMPv2 over a whole burst.
 *
 * stk_process() gives every received frame exactly one verdict: delivered (a UDP
 * datagram for a bound port), replied (ARP request or ICMP echo answered into the
 * reply buffer) or one drop reason, and counts it. stk_build_udp() and
 * stk_build_igmp() write complete frames for sending. Addresses and ports cross
 * this interface in host byte order; the header structs hold wire byte order.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "csum_add assumes a little-endian host"
#endif

#define STK_MAX_GROUPS 32
#define ETH_P_IPV4 0x0800
#define ETH_P_ARP_ 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFMASK 0x1fff
#define ALL_HOSTS 0xe0000001        /* 224.0.0.1, where IGMP general queries go */
#define IGMP_QUERY 0x11

/* ---- wire headers, field for field ------------------------------------------------ */

struct eth_hdr {
    uint8_t dst[6];
    uint8_t src[6];
    uint16_t type;
} __attribute__((packed));

struct vlan_hdr {                   /* 802.1Q tag after the source MAC */
    uint16_t tci;                   /* PCP:3 DEI:1 VID:12 */
    uint16_t type;                  /* the encapsulated EtherType */
} __attribute__((packed));

struct arp_ipv4 {                   /* RFC 826 for Ethernet/IPv4 */
    uint16_t htype;
    uint16_t ptype;
    uint8_t hlen;
    uint8_t plen;
    uint16_t oper;
    uint8_t sha[6];
    uint32_t spa;
    uint8_t tha[6];
    uint32_t tpa;
} __attribute__((packed));

struct ipv4_hdr {                   /* RFC 791, options follow when IHL > 5 */
    uint8_t ver_ihl;
    uint8_t tos;
    uint16_t total_len;
    uint16_t id;
    uint16_t frag;                  /* flags:3 fragment offset:13 */
    uint8_t ttl;
    uint8_t proto;
    uint16_t csum;
    uint32_t src;
    uint32_t dst;
} __attribute__((packed));

struct icmp_echo {                  /* RFC 792 echo / echo reply */
    uint8_t type;
    uint8_t code;
    uint16_t csum;
    uint16_t id;
    uint16_t seq;
} __attribute__((packed));

struct udp_hdr {                    /* RFC 768 */
    uint16_t sport;
    uint16_t dport;
    uint16_t len;
    uint16_t csum;
} __attribute__((packed));

struct igmpv2 {                     /* RFC 2236 */
    uint8_t type;
    uint8_t max_resp;
    uint16_t csum;
    uint32_t group;
} __attribute__((packed));

/* ---- the interface shared with stack_build.py's cdef ----------------------------- */

struct stk_config {
    uint8_t mac[6];
    uint16_t vlan;                  /* VID every frame carries; 0 = untagged (or priority-tagged) */
    uint32_t ip;                    /* our IPv4 address */
    uint32_t groups[STK_MAX_GROUPS];/* joined multicast groups */
    uint32_t n_groups;
    uint16_t ip_id;                 /* identification of the next datagram we originate */
    uint8_t ttl;                    /* TTL of unicast datagrams we originate */
    uint8_t mcast_ttl;              /* TTL of multicast datagrams we originate */
    uint8_t monitor;                /* watch only: deliver UDP whatever its addresses or VLAN, answer nothing */
};

struct stk_datagram {               /* one delivered UDP datagram */
    int64_t offset;                 /* payload start in the burst's buffer */
    uint32_t length;                /* payload bytes */
    uint32_t frame;                 /* index of its frame in the burst */
    uint32_t src_ip;
    uint32_t dst_ip;
    uint16_t src_port;
    uint16_t dst_port;
    uint8_t src_mac[6];
    uint16_t vlan;                  /* VID the frame carried, 0 if untagged */
    uint32_t reserved;
};

enum stk_verdict {
    STK_DELIVERED, STK_REPLIED,
    STK_TRUNCATED, STK_BAD_VLAN, STK_NOT_IPV4, STK_BAD_IP_HEADER, STK_BAD_LENGTH,
    STK_BAD_IP_CHECKSUM, STK_NOT_FOR_US, STK_FRAGMENT, STK_UNKNOWN_PROTOCOL,
    STK_BAD_UDP_CHECKSUM, STK_BAD_ICMP_CHECKSUM, STK_UNBOUND_PORT, STK_ARP_IGNORED,
    STK_ICMP_IGNORED, STK_IGMP_IGNORED, STK_BAD_IGMP_CHECKSUM, STK_NO_REPLY_ROOM,
    STK_N_VERDICTS
};

static const char *const verdict_names[STK_N_VERDICTS] = {
    "delivered", "replied",
    "truncated", "bad_vlan", "not_ipv4", "bad_ip_header", "bad_length",
    "bad_ip_checksum", "not_for_us", "fragment", "unknown_protocol",
    "bad_udp_checksum", "bad_icmp_checksum", "unbound_port", "arp_ignored",
    "icmp_ignored", "igmp_ignored", "bad_igmp_checksum", "no_reply_room",
};

const char *stk_verdict_name(unsigned v)
{
    return v < STK_N_VERDICTS ? verdict_names[v] : "?";
}

/* ---- Internet checksum (RFC 1071) -------------------------------------------------- */

/* Adds w to a one's-complement sum (end-around carry). */
static inline uint64_t csum_word(uint64_t sum, uint64_t w)
{
    sum += w;
    return sum + (sum < w);
}

/* Sums native-order 64-bit words with end-around carry, the one's-complement sum being the
 * same whatever the word size; returns it folded below 2^33, so callers can add header
 * fields to it. Folding that gives the 16-bit one's-complement sum. */
static inline uint64_t csum_add(const uint8_t *p, size_t n, uint64_t sum)
{
    for (; n >= 32; p += 32, n -= 32)   /* one add-with-carry chain a word (what gcc won't write) */
        __asm__("addq (%[p]), %[s]\n\tadcq 8(%[p]), %[s]\n\tadcq 16(%[p]), %[s]\n\t"
                "adcq 24(%[p]), %[s]\n\tadcq $0, %[s]"
                : [s] "+r"(sum) : [p] "r"(p), "m"(*(const uint8_t(*)[32])p) : "cc");
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        sum = csum_word(sum, w);
    }
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum = csum_word(sum, w);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum = csum_word(sum, w);
        p += 2;
        n -= 2;
    }
    if (n)
        sum = csum_word(sum, *p);   /* the odd byte is the high-order byte of a zero-padded word */
    return (sum & 0xffffffff) + (sum >> 32);   /* zero only when every word was */
}

static inline uint16_t csum_fold(uint64_t sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* The UDP pseudo-header (src, dst, zero, protocol, UDP length) as a partial sum. */
static inline uint64_t udp_pseudo(uint32_t src_be, uint32_t dst_be, uint16_t len_be)
{
    return (uint64_t)src_be + dst_be + htons(IPPROTO_UDP) + len_be;
}

/* ---- addressing ------------------------------------------------------------------- */

static inline int is_multicast_ip(uint32_t ip) { return (ip >> 28) == 0xe; }

static inline void multicast_mac(uint32_t ip, uint8_t mac[6])
{
    mac[0] = 0x01; mac[1] = 0x00; mac[2] = 0x5e;
    mac[3] = (ip >> 16) & 0x7f; mac[4] = (ip >> 8) & 0xff; mac[5] = ip & 0xff;
}

static int joined(const struct stk_config *c, uint32_t ip)
{
    for (uint32_t g = 0; g < c->n_groups; g++)
        if (c->groups[g] == ip)
            return 1;
    return 0;
}

static int mac_accepted(const struct stk_config *c, const uint8_t *dst)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (!memcmp(dst, c->mac, 6) || !memcmp(dst, bcast, 6))
        return 1;
    if (dst[0] != 0x01 || dst[1] != 0x00 || dst[2] != 0x5e)
        return 0;
    uint8_t m[6];
    multicast_mac(ALL_HOSTS, m);
    if (c->n_groups && !memcmp(dst, m, 6))
        return 1;                   /* IGMP queries, while we have memberships to report */
    for (uint32_t g = 0; g < c->n_groups; g++) {
        multicast_mac(c->groups[g], m);
        if (!memcmp(dst, m, 6))
            return 1;
    }
    return 0;
}

/* ---- frame writing ---------------------------------------------------------------- */

/* Writes the Ethernet header (with an 802.1Q tag when tci_tagged) and returns its size. */
static size_t put_eth(uint8_t *out, const uint8_t *dst, const uint8_t *src,
                      int tagged, uint16_t tci, uint16_t type)
{
    struct eth_hdr *e = (struct eth_hdr *)out;
    memcpy(e->dst, dst, 6);
    memcpy(e->src, src, 6);
    if (!tagged) {
        e->type = htons(type);
        return sizeof *e;
    }
    e->type = htons(ETH_P_8021Q);
    struct vlan_hdr *v = (struct vlan_hdr *)(out + sizeof *e);
    v->tci = htons(tci);
    v->type = htons(type);
    return sizeof *e + sizeof *v;
}

/* Writes a 20-byte IPv4 header for a payload of plen bytes, checksum included. */
static void put_ipv4(uint8_t *out, struct stk_config *c, uint8_t tos, uint16_t frag, uint8_t ttl,
                     uint8_t proto, uint32_t src, uint32_t dst, size_t plen)
{
    struct ipv4_hdr *ip = (struct ipv4_hdr *)out;
    ip->ver_ihl = 0x45;
    ip->tos = tos;
    ip->total_len = htons((uint16_t)(sizeof *ip + plen));
    ip->id = htons(c->ip_id++);
    ip->frag = htons(frag);
    ip->ttl = ttl;
    ip->proto = proto;
    ip->csum = 0;
    ip->src = htonl(src);
    ip->dst = htonl(dst);
    ip->csum = csum_fold(csum_add(out, sizeof *ip, 0));
}

uint32_t stk_build_igmp(struct stk_config *cfg, uint32_t group, int leave, uint8_t *out);

/* ---- receive ---------------------------------------------------------------------- */

struct rx_ctx {
    struct stk_config *cfg;
    const uint8_t *bound;           /* [65536] nonzero for bound UDP ports */
    struct stk_datagram *dg;
    uint32_t n_dg;
    uint8_t *rbuf;
    uint64_t rcap, rused;
    int64_t *roff;
    uint32_t *rlen;
    uint32_t rmax, n_replies;
};

/* Room for `count` replies of up to size bytes each, or NULL when the reply buffer is full. */
static uint8_t *reply_room_n(struct rx_ctx *x, size_t size, uint32_t count)
{
    if (x->n_replies + count > x->rmax || x->rused + size * count > x->rcap)
        return NULL;
    return x->rbuf + x->rused;
}

static uint8_t *reply_room(struct rx_ctx *x, size_t size)
{
    return reply_room_n(x, size, 1);
}

static void reply_commit(struct rx_ctx *x, size_t size)
{
    x->roff[x->n_replies] = (int64_t)x->rused;
    x->rlen[x->n_replies] = (uint32_t)size;
    x->n_replies++;
    x->rused += size;
}

struct l2_info {
    const struct eth_hdr *eth;
    size_t len;                     /* bytes of Ethernet header incl. tag */
    int tagged;
    uint16_t tci;
};

static int rx_arp(struct rx_ctx *x, const struct l2_info *l2, const uint8_t *p, size_t n)
{
    if (n < sizeof(struct arp_ipv4))
        return STK_TRUNCATED;
    const struct arp_ipv4 *a = (const struct arp_ipv4 *)p;
    if (ntohs(a->htype) != 1 || ntohs(a->ptype) != ETH_P_IPV4 || a->hlen != 6 || a->plen != 4
        || ntohs(a->oper) != 1)
        return STK_ARP_IGNORED;
    if (ntohl(a->tpa) != x->cfg->ip)
        return STK_NOT_FOR_US;
    size_t size = l2->len + sizeof(struct arp_ipv4);
    uint8_t *out = reply_room(x, size);
    if (!out)
        return STK_NO_REPLY_ROOM;
    size_t h = put_eth(out, a->sha, x->cfg->mac, l2->tagged, l2->tci, ETH_P_ARP_);
    struct arp_ipv4 *r = (struct arp_ipv4 *)(out + h);
    r->htype = htons(1);
    r->ptype = htons(ETH_P_IPV4);
    r->hlen = 6;
    r->plen = 4;
    r->oper = htons(2);
    memcpy(r->sha, x->cfg->mac, 6);
    r->spa = htonl(x->cfg->ip);
    memcpy(r->tha, a->sha, 6);
    r->tpa = a->spa;
    reply_commit(x, size);
    return STK_REPLIED;
}

static int rx_icmp(struct rx_ctx *x, const struct l2_info *l2, const struct ipv4_hdr *ip,
                   const uint8_t *p, size_t n)
{
    if (n < sizeof(struct icmp_echo))
        return STK_TRUNCATED;
    const struct icmp_echo *e = (const struct icmp_echo *)p;
    if (csum_fold(csum_add(p, n, 0)) != 0)
        return STK_BAD_ICMP_CHECKSUM;
    if (e->type != 8 || e->code != 0 || ntohl(ip->dst) != x->cfg->ip)
        return STK_ICMP_IGNORED;    /* only echo requests to our unicast address are answered */
    size_t size = l2->len + sizeof(struct ipv4_hdr) + n;
    uint8_t *out = reply_room(x, size);
    if (!out)
        return STK_NO_REPLY_ROOM;
    size_t h = put_eth(out, l2->eth->src, x->cfg->mac, l2->tagged, l2->tci, ETH_P_IPV4);
    put_ipv4(out + h, x->cfg, ip->tos, 0, x->cfg->ttl, IPPROTO_ICMP, x->cfg->ip, ntohl(ip->src), n);
    uint8_t *icmp = out + h + sizeof(struct ipv4_hdr);
    memcpy(icmp, p, n);
    struct icmp_echo *r = (struct icmp_echo *)icmp;
    r->type = 0;
    r->csum = 0;
    r->csum = csum_fold(csum_add(icmp, n, 0));
    reply_commit(x, size);
    return STK_REPLIED;
}

static int rx_udp(struct rx_ctx *x, const struct l2_info *l2, const struct ipv4_hdr *ip,
                  const uint8_t *p, size_t n, const uint8_t *frame_base, uint32_t frame, int64_t frame_off)
{
    if (n < sizeof(struct udp_hdr))
        return STK_TRUNCATED;
    const struct udp_hdr *u = (const struct udp_hdr *)p;
    size_t ulen = ntohs(u->len);
    if (ulen < sizeof *u || ulen > n)
        return STK_BAD_LENGTH;
    if (u->csum && csum_fold(csum_add(p, ulen, udp_pseudo(ip->src, ip->dst, u->len))) != 0)
        return STK_BAD_UDP_CHECKSUM;
    uint16_t dport = ntohs(u->dport);
    if (!x->bound[dport])
        return STK_UNBOUND_PORT;
    struct stk_datagram *d = &x->dg[x->n_dg++];
    d->offset = frame_off + (p + sizeof *u - frame_base);
    d->length = (uint32_t)(ulen - sizeof *u);
    d->frame = frame;
    d->src_ip = ntohl(ip->src);
    d->dst_ip = ntohl(ip->dst);
    d->src_port = ntohs(u->sport);
    d->dst_port = dport;
    memcpy(d->src_mac, l2->eth->src, 6);
    d->vlan = l2->tci & 0x0fff;
    d->reserved = 0;
    return STK_DELIVERED;
}

/* IGMP membership queries (general, or for one of our groups) are answered at once with
 * IGMPv2 reports, so that snooping switches keep forwarding our groups to us. */
static int rx_igmp(struct rx_ctx *x, const struct ipv4_hdr *ip, const uint8_t *p, size_t n)
{
    if (n < sizeof(struct igmpv2))
        return STK_TRUNCATED;
    if (csum_fold(csum_add(p, n, 0)) != 0)
        return STK_BAD_IGMP_CHECKSUM;
    const struct igmpv2 *q = (const struct igmpv2 *)p;
    uint32_t group = ntohl(q->group);
    if (q->type != IGMP_QUERY || (group && (group != ntohl(ip->dst) || !joined(x->cfg, group))))
        return STK_IGMP_IGNORED;    /* others' reports and leaves, or a query that is not ours */
    uint32_t reports = group ? 1 : x->cfg->n_groups;
    if (!reply_room_n(x, 64, reports))
        return STK_NO_REPLY_ROOM;
    for (uint32_t g = 0; g < x->cfg->n_groups; g++)
        if (!group || x->cfg->groups[g] == group)
            reply_commit(x, stk_build_igmp(x->cfg, x->cfg->groups[g], 0, reply_room(x, 64)));
    return STK_REPLIED;
}

static int rx_frame(struct rx_ctx *x, const uint8_t *f, size_t len, uint32_t frame, int64_t frame_off)
{
    struct l2_info l2 = {(const struct eth_hdr *)f, sizeof(struct eth_hdr), 0, 0};
    if (len < l2.len)
        return STK_TRUNCATED;
    uint16_t type = ntohs(l2.eth->type);
    if (type == ETH_P_8021Q) {
        if (len < l2.len + sizeof(struct vlan_hdr))
            return STK_TRUNCATED;
        const struct vlan_hdr *v = (const struct vlan_hdr *)(f + l2.len);
        l2.tagged = 1;
        l2.tci = ntohs(v->tci);
        l2.len += sizeof *v;
        type = ntohs(v->type);
    }
    int monitor = x->cfg->monitor;
    if (type == ETH_P_8021Q || type == ETH_P_8021AD || (!monitor && (l2.tci & 0x0fff) != x->cfg->vlan))
        return STK_BAD_VLAN;        /* stacked tags, or not our VLAN */
    if (!monitor && !mac_accepted(x->cfg, l2.eth->dst))
        return STK_NOT_FOR_US;
    const uint8_t *p = f + l2.len;
    size_t n = len - l2.len;
    if (type == ETH_P_ARP_)
        return monitor ? STK_ARP_IGNORED : rx_arp(x, &l2, p, n);
    if (type != ETH_P_IPV4)
        return STK_NOT_IPV4;

    if (n < sizeof(struct ipv4_hdr))
        return STK_TRUNCATED;
    const struct ipv4_hdr *ip = (const struct ipv4_hdr *)p;
    size_t ihl = (size_t)(ip->ver_ihl & 0x0f) * 4;
    if ((ip->ver_ihl >> 4) != 4 || ihl < sizeof *ip)
        return STK_BAD_IP_HEADER;
    size_t total = ntohs(ip->total_len);
    if (ihl > n || total < ihl || total > n)
        return STK_BAD_LENGTH;      /* bytes past total are Ethernet padding */
    if (csum_fold(csum_add(p, ihl, 0)) != 0)
        return STK_BAD_IP_CHECKSUM;
    uint32_t dst = ntohl(ip->dst);
    if (!monitor && dst != x->cfg->ip && !(is_multicast_ip(dst) && joined(x->cfg, dst))
        && !(dst == ALL_HOSTS && ip->proto == IPPROTO_IGMP && x->cfg->n_groups))
        return STK_NOT_FOR_US;
    if (ntohs(ip->frag) & (IP_MF | IP_OFFMASK))
        return STK_FRAGMENT;
    const uint8_t *l4 = p + ihl;
    size_t l4len = total - ihl;
    switch (ip->proto) {
    case IPPROTO_UDP:
        return rx_udp(x, &l2, ip, l4, l4len, f, frame, frame_off);
    case IPPROTO_ICMP:
        return monitor ? STK_ICMP_IGNORED : rx_icmp(x, &l2, ip, l4, l4len);
    case IPPROTO_IGMP:
        return monitor ? STK_IGMP_IGNORED : rx_igmp(x, ip, l4, l4len);
    default:
        return STK_UNKNOWN_PROTOCOL;
    }
}

/* Classifies n frames (buf + off[i], len[i] bytes): verdict[i] for each, delivered
 * datagrams into dg (room for n), replies packed into rbuf (rcap bytes) at roff/rlen
 * (room for rmax; a general IGMP query is answered with one report per group).
 * Adds every verdict to counts[STK_N_VERDICTS]. Returns the datagram count. */
uint32_t stk_process(struct stk_config *cfg, const uint8_t *bound,
                     const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                     uint8_t *verdict, struct stk_datagram *dg,
                     uint8_t *rbuf, uint64_t rcap, int64_t *roff, uint32_t *rlen, uint32_t rmax,
                     uint32_t *n_replies, uint64_t *counts)
{
    struct rx_ctx x = {cfg, bound, dg, 0, rbuf, rcap, 0, roff, rlen, rmax, 0};
    for (uint32_t i = 0; i < n; i++) {
        int v = rx_frame(&x, buf + off[i], len[i], i, off[i]);
        verdict[i] = (uint8_t)v;
        counts[v]++;
    }
    *n_replies = x.n_replies;
    return x.n_dg;
}

/* ---- transmit --------------------------------------------------------------------- */

#define UDP_MAX_PAYLOAD (65535 - sizeof(struct ipv4_hdr) - sizeof(struct udp_hdr))

/* Writes n Ethernet/IPv4/UDP frames carrying the payloads (pbuf + poff[i], plen[i]) to
 * dst_ip:dst_port from our address and src_port, packed into obuf (ocap bytes) at
 * ooff/olen. Each of dst_mac (6 bytes a frame), dst_ip, dst_port and src_port holds
 * one value per frame (its step is 1) or one for all (step 0). A multicast
 * destination gets its group MAC instead of dst_mac. Stops at the first payload that
 * is too big or does not fit; returns the frames written. */
uint32_t stk_build_udp(struct stk_config *cfg,
                       const uint8_t *pbuf, const int64_t *poff, const uint32_t *plen, uint32_t n,
                       const uint8_t *dst_mac, uint32_t mac_step, const uint32_t *dst_ip, uint32_t ip_step,
                       const uint16_t *dst_port, uint32_t dport_step,
                       const uint16_t *src_port, uint32_t sport_step,
                       uint8_t *obuf, uint64_t ocap, int64_t *ooff, uint32_t *olen)
{
    /* One header template per call, patched per frame: the IPv4 checksum starts from the
     * sum of the fields every frame shares and adds the few that differ. */
    uint8_t tmpl[sizeof(struct eth_hdr) + sizeof(struct vlan_hdr) + sizeof(struct ipv4_hdr)] = {0};
    static const uint8_t no_mac[6];
    const size_t h = put_eth(tmpl, no_mac, cfg->mac, cfg->vlan != 0, cfg->vlan, ETH_P_IPV4);
    const size_t hdrs = h + sizeof(struct ipv4_hdr) + sizeof(struct udp_hdr);
    struct ipv4_hdr *t = (struct ipv4_hdr *)(tmpl + h);
    t->ver_ihl = 0x45;
    t->tos = 0;
    t->total_len = t->id = t->csum = 0;
    t->frag = htons(IP_DF);
    t->ttl = 0;                     /* per frame: unicast or multicast TTL */
    t->proto = IPPROTO_UDP;
    t->src = htonl(cfg->ip);
    t->dst = 0;
    const uint64_t ip_base = csum_add((const uint8_t *)t, sizeof *t, 0);
    /* the pseudo-header's source and protocol, the same for every frame */
    const uint64_t udp_base = (uint64_t)t->src + htons(IPPROTO_UDP);
    uint64_t used = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        size_t pl = plen[i];
        if (pl > UDP_MAX_PAYLOAD || used + hdrs + pl > ocap)
            break;
        uint8_t *out = obuf + used;
        uint32_t ip_dst = dst_ip[i * ip_step];
        int mcast = is_multicast_ip(ip_dst);
        memcpy(out, tmpl, sizeof tmpl);     /* untagged, its tail lands where UDP's header goes */
        if (mcast)
            multicast_mac(ip_dst, out);
        else
            memcpy(out, dst_mac + 6 * (size_t)i * mac_step, 6);
        struct ipv4_hdr *ip = (struct ipv4_hdr *)(out + h);
        uint16_t ulen = (uint16_t)(sizeof(struct udp_hdr) + pl);
        ip->total_len = htons((uint16_t)(sizeof *ip + ulen));
        ip->id = htons(cfg->ip_id++);
        ip->ttl = mcast ? cfg->mcast_ttl : cfg->ttl;
        ip->dst = htonl(ip_dst);
        /* the TTL is the high-order byte of its word: the low one of a native load */
        ip->csum = csum_fold(ip_base + ip->total_len + ip->id + ip->ttl + ip->dst);
        struct udp_hdr *u = (struct udp_hdr *)(out + h + sizeof *ip);
        u->sport = htons(src_port[i * sport_step]);
        u->dport = htons(dst_port[i * dport_step]);
        u->len = htons(ulen);
        u->csum = 0;
        memcpy((uint8_t *)u + sizeof *u, pbuf + poff[i], pl);
        /* pseudo-header (source, destination, protocol, length) + UDP header + payload */
        uint64_t sum = udp_base + ip->dst + (uint64_t)u->len + u->sport + u->dport + u->len;
        uint16_t c = csum_fold(csum_add((uint8_t *)u + sizeof *u, pl, sum));
        u->csum = c ? c : 0xffff;   /* zero would mean "no checksum" */
        ooff[i] = (int64_t)used;
        olen[i] = (uint32_t)(hdrs + pl);
        used += olen[i];
    }
    return i;
}

/* Writes an IGMPv2 membership report (leave = 0) or leave group message for group
 * into out (room for 64 bytes); returns the frame length. */
uint32_t stk_build_igmp(struct stk_config *cfg, uint32_t group, int leave, uint8_t *out)
{
    static const uint8_t router_alert[4] = {0x94, 0x04, 0x00, 0x00};   /* RFC 2113 */
    const uint32_t all_routers = 0xe0000002;                          /* 224.0.0.2 */
    uint32_t dst = leave ? all_routers : group;
    uint8_t mac[6];
    multicast_mac(dst, mac);
    size_t h = put_eth(out, mac, cfg->mac, cfg->vlan != 0, cfg->vlan, ETH_P_IPV4);
    struct ipv4_hdr *ip = (struct ipv4_hdr *)(out + h);
    const size_t ihl = sizeof *ip + sizeof router_alert;
    ip->ver_ihl = 0x40 | (uint8_t)(ihl / 4);
    ip->tos = 0xc0;                 /* internetwork control, as hosts send IGMP */
    ip->total_len = htons((uint16_t)(ihl + sizeof(struct igmpv2)));
    ip->id = htons(cfg->ip_id++);
    ip->frag = htons(IP_DF);
    ip->ttl = 1;
    ip->proto = IPPROTO_IGMP;
    ip->csum = 0;
    ip->src = htonl(cfg->ip);
    ip->dst = htonl(dst);
    memcpy(out + h + sizeof *ip, router_alert, sizeof router_alert);
    ip->csum = csum_fold(csum_add((uint8_t *)ip, ihl, 0));
    struct igmpv2 *g = (struct igmpv2 *)(out + h + ihl);
    g->type = leave ? 0x17 : 0x16;
    g->max_resp = 0;
    g->csum = 0;
    g->group = htonl(group);
    g->csum = csum_fold(csum_add((uint8_t *)g, sizeof *g, 0));
    return (uint32_t)(h + ihl + sizeof *g);
}
