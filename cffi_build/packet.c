/* netio._packet: the per-frame loops of the socket and pcap ports.
 *
 *   TPACKET RX rings    pkt_ring_rx() (V3) / pkt_ring2_rx() (V2) walk ready frames into
 *                       offset/length/timestamp arrays; *_release() hands them back.
 *   AF_PACKET TX        pkt_send(): one sendmmsg() over a burst of frames.
 *   UDP sockets         udp_recv() / udp_send(): recvmmsg()/sendmmsg() over a burst,
 *                       with SCM_TIMESTAMPING receive stamps and peer addresses.
 *   pcap / pcapng       pcap_index() indexes records of a mapped file;
 *                       pcap_write() lays out records for a burst.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <time.h>                   /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define NSEC 1000000000LL
#define MMSG_CHUNK 64               /* messages per sendmmsg/recvmmsg call */

/* ---- TPACKET_V3 and TPACKET_V2 receive rings --------------------------------------- */

struct pkt_ring {
    uint8_t *base;                  /* the mmap'd ring */
    uint32_t block_size;
    uint32_t block_nr;
    uint32_t frame_size;            /* V2: the fixed frame slot */
    uint32_t frame_nr;              /* V2: slots in the ring */
    uint64_t consumed;              /* units (V3 blocks, V2 frames) fully read since open */
    uint64_t released;              /* units handed back to the kernel */
    uint32_t pkt;                   /* V3: packets already read from the current block */
    uint32_t next;                  /* V3: offset in the current block of the next packet */
    uint64_t too_long;              /* frames cut by the ring's room: skipped */
};

/* The kernel strips 802.1Q tags into the ring header; put the tag back in front of the
 * EtherType, using the headroom between the sockaddr_ll and the frame, so frames arrive
 * as they were on the wire. Returns 1 when the frame now starts 4 bytes earlier. */
static int put_tag_back(uint8_t *frame, uint32_t mac_off, uint32_t hdrlen, uint32_t status,
                        uint16_t tpid, uint16_t tci)
{
    if (mac_off < hdrlen + 4)
        return 0;
    if (!(status & TP_STATUS_VLAN_TPID_VALID))
        tpid = 0x8100;
    memmove(frame - 4, frame, 12);
    frame[8] = tpid >> 8;
    frame[9] = tpid & 0xff;
    frame[10] = tci >> 8;
    frame[11] = tci & 0xff;
    return 1;
}

/* Takes one ring frame into the burst: the stripped tag put back, a frame cut short by
 * the slot counted and skipped. V2 and V3 headers differ in layout, so their fields come
 * as pointers. Returns 1 when the frame was taken. */
static uint32_t take_frame(struct pkt_ring *r, uint8_t *hdr, uint32_t hdrlen, uint32_t status,
                           uint16_t tpid, uint16_t tci, uint16_t *mac, uint32_t *snaplen, uint32_t *wire_len,
                           int64_t ns, int64_t *off, uint32_t *len, int64_t *ts)
{
    if ((status & TP_STATUS_VLAN_VALID) && put_tag_back(hdr + *mac, *mac, hdrlen, status, tpid, tci)) {
        *mac -= 4;
        *snaplen += 4;
        *wire_len += 4;
    }
    if (*snaplen < *wire_len) {
        r->too_long++;
        return 0;
    }
    *off = (int64_t)(hdr - r->base) + *mac;
    *len = *snaplen;
    *ts = ns;
    return 1;
}

static struct tpacket_block_desc *ring_block(struct pkt_ring *r, uint64_t i)
{
    return (struct tpacket_block_desc *)(r->base + (size_t)(i % r->block_nr) * r->block_size);
}

/* Reads up to max frames from ready V3 blocks: off[] is relative to the ring base, ts[]
 * in ns of CLOCK_REALTIME. Returns the frame count; r->consumed says which blocks
 * the caller may release once it is done with these frames. */
uint32_t pkt_ring_rx(struct pkt_ring *r, uint32_t max, int64_t *off, uint32_t *len, int64_t *ts)
{
    const uint32_t hdrlen = TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) + sizeof(struct sockaddr_ll);
    uint32_t n = 0;
    while (n < max) {
        if (r->consumed - r->released >= r->block_nr)
            break;                  /* every block is read and still held by the caller */
        struct tpacket_block_desc *bd = ring_block(r, r->consumed);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        uint32_t num = bd->hdr.bh1.num_pkts;
        if (r->pkt == 0)
            r->next = bd->hdr.bh1.offset_to_first_pkt;
        uint8_t *blk = (uint8_t *)bd;
        while (r->pkt < num && n < max) {
            uint8_t *p = blk + r->next;
            struct tpacket3_hdr *h = (struct tpacket3_hdr *)p;
            r->next += h->tp_next_offset;
            r->pkt++;
            n += take_frame(r, p, hdrlen, h->tp_status, h->hv1.tp_vlan_tpid, h->hv1.tp_vlan_tci, &h->tp_mac,
                            &h->tp_snaplen, &h->tp_len, (int64_t)h->tp_sec * NSEC + h->tp_nsec,
                            off + n, len + n, ts + n);
        }
        if (r->pkt < num)
            break;                  /* burst full inside this block */
        r->consumed++;
        r->pkt = 0;
    }
    return n;
}

/* Hands V3 blocks [released, upto) back to the kernel. */
void pkt_ring_release(struct pkt_ring *r, uint64_t upto)
{
    for (; r->released < upto; r->released++)
        __atomic_store_n(&ring_block(r, r->released)->hdr.bh1.block_status, TP_STATUS_KERNEL,
                         __ATOMIC_RELEASE);
}

static struct tpacket2_hdr *ring_frame(struct pkt_ring *r, uint64_t i)
{
    uint32_t per_block = r->block_size / r->frame_size;
    uint64_t k = i % r->frame_nr;
    return (struct tpacket2_hdr *)(r->base + (size_t)(k / per_block) * r->block_size
                                   + (size_t)(k % per_block) * r->frame_size);
}

/* The V2 twin of pkt_ring_rx: frames become visible one by one, without V3's block
 * timeout, at the price of a fixed frame_size slot each; r->consumed counts frames. */
uint32_t pkt_ring2_rx(struct pkt_ring *r, uint32_t max, int64_t *off, uint32_t *len, int64_t *ts)
{
    const uint32_t hdrlen = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll);
    uint32_t n = 0;
    while (n < max && r->consumed - r->released < r->frame_nr) {
        struct tpacket2_hdr *h = ring_frame(r, r->consumed);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        r->consumed++;
        uint8_t *p = (uint8_t *)h;
        n += take_frame(r, p, hdrlen, h->tp_status, h->tp_vlan_tpid, h->tp_vlan_tci, &h->tp_mac, &h->tp_snaplen,
                        &h->tp_len, (int64_t)h->tp_sec * NSEC + h->tp_nsec, off + n, len + n, ts + n);
    }
    return n;
}

/* Hands V2 frames [released, upto) back to the kernel. */
void pkt_ring2_release(struct pkt_ring *r, uint64_t upto)
{
    for (; r->released < upto; r->released++)
        __atomic_store_n(&ring_frame(r, r->released)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
}

/* ---- AF_PACKET transmit ------------------------------------------------------------ */

/* Sends n frames with sendmmsg() on a bound packet socket. Returns how many the
 * kernel took; if fewer than n, *err is the errno that stopped it. */
uint32_t pkt_send(int fd, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n, int *err)
{
    struct mmsghdr msgs[MMSG_CHUNK];
    struct iovec iov[MMSG_CHUNK];
    uint32_t sent = 0;
    *err = 0;
    while (sent < n) {
        uint32_t k = n - sent < MMSG_CHUNK ? n - sent : MMSG_CHUNK;
        memset(msgs, 0, k * sizeof msgs[0]);
        for (uint32_t i = 0; i < k; i++) {
            iov[i].iov_base = (void *)(buf + off[sent + i]);
            iov[i].iov_len = len[sent + i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        if (r < 0) {
            *err = errno;
            break;
        }
        sent += (uint32_t)r;
        if ((uint32_t)r < k)
            break;
    }
    return sent;
}

/* ---- UDP sockets ------------------------------------------------------------------- */

#define CMSG_ROOM 128               /* fits SCM_TIMESTAMPING (3 timespecs) with headers */

/* Receives up to max datagrams into slots (head + i) % nslots of buf (slot bytes each).
 * Fills off/len (payloads), ts (kernel software stamp in ns, 0 if none), ip/port (the
 * sender, host order). Datagrams longer than a slot are counted in *truncated and
 * left out. Returns the slots used (>= the datagrams filled, see *filled); -errno on error. */
int32_t udp_recv(int fd, uint8_t *buf, uint32_t slot, uint32_t nslots, uint64_t head, uint32_t max,
                 int64_t *off, uint32_t *len, int64_t *ts, uint32_t *ip, uint16_t *port,
                 uint32_t *filled, uint64_t *truncated)
{
    struct mmsghdr msgs[MMSG_CHUNK];
    struct iovec iov[MMSG_CHUNK];
    struct sockaddr_in from[MMSG_CHUNK];
    uint8_t control[MMSG_CHUNK][CMSG_ROOM] __attribute__((aligned(8)));
    uint32_t used = 0, n = 0;
    while (used < max) {
        uint32_t k = max - used < MMSG_CHUNK ? max - used : MMSG_CHUNK;
        memset(msgs, 0, k * sizeof msgs[0]);
        for (uint32_t i = 0; i < k; i++) {
            iov[i].iov_base = buf + ((head + used + i) % nslots) * (uint64_t)slot;
            iov[i].iov_len = slot;
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1,
                                              .msg_control = control[i], .msg_controllen = CMSG_ROOM};
        }
        int r = recvmmsg(fd, msgs, k, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (used)
                break;              /* report what we have; the error comes back next call */
            return -errno;
        }
        for (int i = 0; i < r; i++) {
            struct msghdr *m = &msgs[i].msg_hdr;
            if (m->msg_flags & MSG_TRUNC) {
                (*truncated)++;
                continue;
            }
            off[n] = (uint8_t *)iov[i].iov_base - buf;
            len[n] = msgs[i].msg_len;
            ts[n] = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
                    struct scm_timestamping stamps;
                    memcpy(&stamps, CMSG_DATA(c), sizeof stamps);
                    ts[n] = (int64_t)stamps.ts[0].tv_sec * NSEC + stamps.ts[0].tv_nsec;
                }
            ip[n] = ntohl(from[i].sin_addr.s_addr);
            port[n] = ntohs(from[i].sin_port);
            n++;
        }
        used += (uint32_t)r;
        if ((uint32_t)r < k)
            break;
    }
    *filled = n;
    return (int32_t)used;
}

/* Sends n datagrams with sendmmsg(); to ip[i]:port[i] (host order), or to the connected
 * peer when ip is NULL. Returns how many were sent; *err is the errno if fewer. */
uint32_t udp_send(int fd, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                  const uint32_t *ip, const uint16_t *port, int *err)
{
    struct mmsghdr msgs[MMSG_CHUNK];
    struct iovec iov[MMSG_CHUNK];
    struct sockaddr_in to[MMSG_CHUNK];
    uint32_t sent = 0;
    *err = 0;
    while (sent < n) {
        uint32_t k = n - sent < MMSG_CHUNK ? n - sent : MMSG_CHUNK;
        memset(msgs, 0, k * sizeof msgs[0]);
        for (uint32_t i = 0; i < k; i++) {
            iov[i].iov_base = (void *)(buf + off[sent + i]);
            iov[i].iov_len = len[sent + i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (ip) {
                to[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port[sent + i]),
                                             .sin_addr.s_addr = htonl(ip[sent + i])};
                msgs[i].msg_hdr.msg_name = &to[i];
                msgs[i].msg_hdr.msg_namelen = sizeof to[i];
            }
        }
        int r = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        if (r < 0) {
            *err = errno;
            break;
        }
        sent += (uint32_t)r;
        if ((uint32_t)r < k)
            break;
    }
    return sent;
}

/* ---- pcap and pcapng files ------------------------------------------------------- */

#define PCAP_MAX_IFACES 64
#define PCAP_MAX_RECORD (256u << 20)        /* larger records mean a corrupt file */

enum pcap_status { PCAP_MORE, PCAP_END, PCAP_TRUNCATED, PCAP_CORRUPT };
enum pcap_problem {
    PP_NONE, PP_RECORD_TOO_LONG, PP_BLOCK_LENGTH, PP_TRAILER_MISMATCH, PP_BYTE_ORDER,
    PP_UNKNOWN_INTERFACE, PP_TOO_MANY_INTERFACES, PP_CAPLEN_PAST_BLOCK, PP_NO_SECTION,
    PP_N_PROBLEMS
};

static const char *const problem_text[PP_N_PROBLEMS] = {
    "no problem",
    "the record's captured length is over 256 MiB",
    "the block's total length is under 12 or not a multiple of 4",
    "the block's trailing total length differs from its leading one",
    "the section header's byte-order magic is neither 0x1A2B3C4D nor its swap",
    "an enhanced packet block names an interface no description block declared",
    "a section declares more than 64 interfaces",
    "the packet's captured length runs past the end of its block",
    "the file does not start with a section header block",
};

const char *pcap_problem_text(unsigned p)
{
    return p < PP_N_PROBLEMS ? problem_text[p] : "?";
}

struct pcap_cursor {
    int64_t pos;                    /* next record or block */
    int32_t format;                 /* 0 = pcap, 1 = pcapng */
    int32_t swapped;                /* the file's byte order is not ours */
    int32_t nsec;                   /* pcap: the record stamps are ns, not us */
    int32_t status;                 /* enum pcap_status */
    int32_t problem;                /* enum pcap_problem when CORRUPT */
    int64_t problem_pos;            /* offset of the record that is truncated or corrupt */
    uint32_t n_ifaces;              /* pcapng: interfaces declared in the current section */
    uint16_t linktype[PCAP_MAX_IFACES];
    uint8_t tsresol[PCAP_MAX_IFACES];
    int64_t tsoffset[PCAP_MAX_IFACES];  /* seconds */
};

static inline uint32_t rd32(const struct pcap_cursor *c, const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return c->swapped ? __builtin_bswap32(v) : v;
}

static inline uint16_t rd16(const struct pcap_cursor *c, const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return c->swapped ? __builtin_bswap16(v) : v;
}

/* A pcapng stamp in if_tsresol units as ns; unsigned arithmetic, as corrupt files may overflow. */
static uint64_t units_to_ns(uint64_t t, uint8_t tsresol)
{
    unsigned e = tsresol & 0x7f;
    if (tsresol & 0x80)             /* 2^-e seconds */
        return (uint64_t)(((unsigned __int128)t * NSEC) >> e);
    uint64_t scale = 1;
    for (unsigned i = e; i < 9; i++)
        scale *= 10;
    if (e <= 9)
        return t * scale;
    for (unsigned i = 9; i < e && i < 28; i++)
        scale *= 10;
    return t / scale;
}

static int stop(struct pcap_cursor *c, int status, int problem)
{
    c->status = status;
    c->problem = problem;
    c->problem_pos = c->pos;
    return 0;
}

/* Reads the options of an interface description block body (after its 8 fixed bytes). */
static void idb_options(struct pcap_cursor *c, const uint8_t *p, const uint8_t *end, uint32_t i)
{
    while (p + 4 <= end) {
        uint16_t code = rd16(c, p), olen = rd16(c, p + 2);
        const uint8_t *v = p + 4;
        if (code == 0 || v + olen > end)
            break;
        if (code == 9 && olen >= 1)
            c->tsresol[i] = v[0];
        if (code == 14 && olen >= 8) {  /* if_tsoffset: a 64-bit count of seconds */
            const uint8_t *lo = c->swapped ? v + 4 : v, *hi = c->swapped ? v : v + 4;
            c->tsoffset[i] = (int64_t)((uint64_t)rd32(c, lo) | (uint64_t)rd32(c, hi) << 32);
        }
        p = v + ((olen + 3u) & ~3u);
    }
}

/* One pcapng block at c->pos: a packet (returns 1, fills the outputs), another block
 * (returns 0 with c->pos advanced), or a stop (returns 0 with c->status set). */
static int pcapng_block(struct pcap_cursor *c, const uint8_t *file, int64_t size,
                        int64_t *off, uint32_t *caplen, uint32_t *origlen, int64_t *ts)
{
    const uint8_t *b = file + c->pos;
    if (size - c->pos < 12)
        return stop(c, PCAP_TRUNCATED, PP_NONE);
    uint32_t type;
    memcpy(&type, b, 4);            /* the SHB type is a palindrome: no byte order needed */
    if (type == 0x0A0D0D0A) {
        uint32_t bom;
        memcpy(&bom, b + 8, 4);
        if (bom == 0x1A2B3C4D)
            c->swapped = 0;
        else if (bom == 0x4D3C2B1A)
            c->swapped = 1;
        else
            return stop(c, PCAP_CORRUPT, PP_BYTE_ORDER);
        c->n_ifaces = 0;            /* interfaces are numbered per section */
    } else if (c->pos == 0) {
        return stop(c, PCAP_CORRUPT, PP_NO_SECTION);
    }
    type = rd32(c, b);
    uint32_t blen = rd32(c, b + 4);
    if (blen < (type == 0x0A0D0D0A ? 28u : 12u) || blen % 4)
        return stop(c, PCAP_CORRUPT, PP_BLOCK_LENGTH);
    if ((uint64_t)(size - c->pos) < blen)
        return stop(c, PCAP_TRUNCATED, PP_NONE);
    if (rd32(c, b + blen - 4) != blen)
        return stop(c, PCAP_CORRUPT, PP_TRAILER_MISMATCH);
    const uint8_t *end = b + blen - 4;
    int got = 0;
    switch (type) {
    case 1: {                       /* interface description */
        if (blen < 20)
            return stop(c, PCAP_CORRUPT, PP_BLOCK_LENGTH);
        if (c->n_ifaces == PCAP_MAX_IFACES)
            return stop(c, PCAP_CORRUPT, PP_TOO_MANY_INTERFACES);
        uint32_t i = c->n_ifaces++;
        c->linktype[i] = rd16(c, b + 8);
        c->tsresol[i] = 6;
        c->tsoffset[i] = 0;
        idb_options(c, b + 16, end, i);
        break;
    }
    case 6: {                       /* enhanced packet */
        if (blen < 32)
            return stop(c, PCAP_CORRUPT, PP_BLOCK_LENGTH);
        uint32_t ifc = rd32(c, b + 8);
        if (ifc >= c->n_ifaces)
            return stop(c, PCAP_CORRUPT, PP_UNKNOWN_INTERFACE);
        uint32_t cap = rd32(c, b + 20);
        if (cap > blen - 32)
            return stop(c, PCAP_CORRUPT, PP_CAPLEN_PAST_BLOCK);
        uint64_t t = (uint64_t)rd32(c, b + 12) << 32 | rd32(c, b + 16);
        *off = c->pos + 28;
        *caplen = cap;
        *origlen = rd32(c, b + 24);
        *ts = (int64_t)(units_to_ns(t, c->tsresol[ifc]) + (uint64_t)c->tsoffset[ifc] * NSEC);
        got = 1;
        break;
    }
    case 3: {                       /* simple packet: no stamp, captured up to the block */
        if (blen < 16)
            return stop(c, PCAP_CORRUPT, PP_BLOCK_LENGTH);
        uint32_t orig = rd32(c, b + 8);
        *off = c->pos + 12;
        *origlen = orig;
        *caplen = orig < blen - 16 ? orig : blen - 16;
        *ts = 0;
        got = 1;
        break;
    }
    default:                        /* section header, statistics, names, custom: skipped */
        break;
    }
    c->pos += blen;
    return got;
}

static int pcap_record(struct pcap_cursor *c, const uint8_t *file, int64_t size,
                       int64_t *off, uint32_t *caplen, uint32_t *origlen, int64_t *ts)
{
    const uint8_t *r = file + c->pos;
    if (size - c->pos < 16)
        return stop(c, PCAP_TRUNCATED, PP_NONE);
    uint32_t cap = rd32(c, r + 8);
    if (cap > PCAP_MAX_RECORD)
        return stop(c, PCAP_CORRUPT, PP_RECORD_TOO_LONG);
    if ((uint64_t)(size - c->pos - 16) < cap)
        return stop(c, PCAP_TRUNCATED, PP_NONE);
    uint32_t frac = rd32(c, r + 4);
    *ts = (int64_t)rd32(c, r) * NSEC + (c->nsec ? frac : (int64_t)frac * 1000);
    *off = c->pos + 16;
    *caplen = cap;
    *origlen = rd32(c, r + 12);
    c->pos += 16 + (int64_t)cap;
    return 1;
}

/* Indexes up to max packet records from c->pos of a file mapped at file (size bytes).
 * Returns the count; c->status says whether more follow (MORE), the file ended
 * cleanly (END) or stopped at c->problem_pos (TRUNCATED or CORRUPT). */
uint32_t pcap_index(struct pcap_cursor *c, const uint8_t *file, int64_t size, uint32_t max,
                    int64_t *off, uint32_t *caplen, uint32_t *origlen, int64_t *ts)
{
    uint32_t n = 0;
    c->status = PCAP_MORE;
    while (n < max) {
        if (c->pos >= size) {
            c->status = PCAP_END;
            break;
        }
        int got = c->format ? pcapng_block(c, file, size, &off[n], &caplen[n], &origlen[n], &ts[n])
                            : pcap_record(c, file, size, &off[n], &caplen[n], &origlen[n], &ts[n]);
        if (c->status != PCAP_MORE)
            break;
        n += (uint32_t)got;
    }
    return n;
}

/* Lays out n records (frames buf + off[i], len[i] bytes cut to snaplen, stamped ts[i] ns)
 * into out in the file's own byte order: pcap records with ns stamps (format 0) or
 * pcapng enhanced packet blocks on interface 0 with if_tsresol 9 (format 1). out
 * needs n * 36 + the sum of len bytes. Returns the bytes written. */
uint64_t pcap_write(int format, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                    const int64_t *ts, uint32_t snaplen, uint8_t *out)
{
    uint8_t *p = out;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cap = len[i] < snaplen ? len[i] : snaplen;
        uint64_t t = ts[i] < 0 ? 0 : (uint64_t)ts[i];
        uint32_t hdr[8];
        size_t h;
        if (format == 0) {
            hdr[0] = (uint32_t)(t / NSEC);
            hdr[1] = (uint32_t)(t % NSEC);
            hdr[2] = cap;
            hdr[3] = len[i];
            h = 16;
        } else {
            uint32_t padded = (cap + 3u) & ~3u;
            hdr[0] = 6;
            hdr[1] = 32 + padded;
            hdr[2] = 0;
            hdr[3] = (uint32_t)(t >> 32);
            hdr[4] = (uint32_t)t;
            hdr[5] = cap;
            hdr[6] = len[i];
            h = 28;
        }
        memcpy(p, hdr, h);
        memcpy(p + h, buf + off[i], cap);
        p += h + cap;
        if (format == 1) {
            uint32_t pad = ((cap + 3u) & ~3u) - cap;
            memset(p, 0, pad);
            p += pad;
            memcpy(p, &hdr[1], 4);
            p += 4;
        }
    }
    return (uint64_t)(p - out);
}
