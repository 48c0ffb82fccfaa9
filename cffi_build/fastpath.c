/* engine._fastpath: the venue's fused burst loop (see fastpath.h).
 *
 * The stages are the other modules' C functions (linked in: stack.c, ouch.c, venue.c,
 * risk.c, matching.c, moldudp64.c), called in engine/venue.py's order; what this file
 * adds is what venue.py does in numpy between them: clients and tokens, per-datagram
 * OUCH splitting, reply grouping per client, datagram cutting, the journal records
 * (engine/journal.py's format, sealed by journal.c) and the AF_XDP loop, on the caller's
 * thread (fp_poll) or its own (fp_start).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include "fastpath.h"
#include "matching.h"
#include "risk.h"
#include "ouch.h"
#include "venue.h"
#include "moldudp64.h"
#include "xdp_api.h"
#include "xdp_meta.h"
#include "tsc_clock.h"

_Static_assert(FP_STALLS - FP_REQUESTS == MOLD_Q_N, "a count of re-requests for every MOLD_Q_* verdict");

/* stack.c's interface (its structs live in stack.c; this one mirrors struct stk_datagram) */
struct stk_config;
struct stk_datagram {
    int64_t offset;
    uint32_t length, frame, src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint8_t src_mac[6];
    uint16_t vlan;
    uint32_t reserved;
};
uint32_t stk_process(struct stk_config *cfg, const uint8_t *bound, const uint8_t *buf, const int64_t *off,
                     const uint32_t *len, uint32_t n, uint8_t *verdict, struct stk_datagram *dg,
                     uint8_t *rbuf, uint64_t rcap, int64_t *roff, uint32_t *rlen, uint32_t rmax,
                     uint32_t *n_replies, uint64_t *counts);
void jnl_seal(uint8_t *recs, size_t n, size_t rec_size, size_t crc_offset);   /* journal.c */
uint32_t stk_build_udp(struct stk_config *cfg, const uint8_t *pbuf, const int64_t *poff, const uint32_t *plen,
                       uint32_t n, const uint8_t *dst_mac, uint32_t mac_step, const uint32_t *dst_ip,
                       uint32_t ip_step, const uint16_t *dst_port, uint32_t dport_step,
                       const uint16_t *src_port, uint32_t sport_step, uint8_t *obuf, uint64_t ocap,
                       int64_t *ooff, uint32_t *olen);

#define REPLY_ROOM 2048             /* netio/stack.py: reply bytes per received frame */
#define STK_MAX_GROUPS 32
#define FRAME_HEADERS 46            /* Ethernet + 802.1Q + IPv4 + UDP */
#define INSERTION_SORT_MAX 64       /* replies a burst groups by client without a pass over all ids */
enum { EV_ACCEPTED = 1, EV_REJECTED = 2, EV_TRADE = 3 };   /* engine.commands.EventKind */

/* engine/journal.py records: seq u64, ts i64, payload, CRC-32C u32 of what precedes it,
 * packed. Payloads: struct command (COMMAND_DTYPE), and engine.venue.SESSION_DTYPE (packed:
 * kind u1, client u4, token u8, ip u4, port u2, mac u8 (big-endian value), token S14). */
#define JNL_HEAD 16
#define SESSION_SIZE 41
enum { LEARNED_CLIENT = 'C', LEARNED_TOKEN = 'T' };

/* OUCH 4.2 inbound message lengths (engine.ouch.INBOUND), type byte included */
static const uint16_t IN_LEN[256] = {['O'] = 49, ['U'] = 47, ['X'] = 19, ['M'] = 20, ['N'] = 15};

struct token_slot {                 /* (client, 14-byte OUCH token) -> core token; 0 = empty */
    uint64_t id;
    uint32_t client;
    uint8_t token[14];
    uint8_t pad[2];
};

struct client_slot { uint64_t key; uint32_t id, pad; };   /* key = ip << 16 | port, + 1 */

struct grow { void *p; size_t cap; };

struct priv {
    struct token_slot *tokens;
    uint64_t token_mask, n_tokens;
    struct client_slot *clients;    /* 2 * max_clients slots */
    uint64_t client_mask;
    uint8_t *verdict;
    struct stk_datagram *dg;
    struct stk_datagram *asks;      /* the burst's requests to the re-request server, for fp_answer */
    uint32_t n_asks;
    struct grow token_bytes, token_symbol;
    struct grow scan_type, scan_off, scan_ctrl, payload_type, payload_off, msg_client, msg_type, msg_index, cmds, holds, events,
        enters, replaces, cancels, venue_verdict, reply, reply_sorted, pkt_client, pkt_len, pkt_start,
        dgram_off, dgram_len, dgram_ip, dgram_port, dgram_mac, itch, mold, mold_off, mold_len,
        mold_seq, mold_count, learned, jnl_buf, out_buf, out_off, out_len;
    uint32_t n_learned;             /* SESSION_SIZE payloads in learned, not yet journaled */
    int32_t *bid, *ask;
    uint32_t *client_count;         /* [max_clients + 1] counting sort of replies */
    /* ouch_scan's stats: only the rejects and the two counts after them are read (and
     * zeroed per datagram); its per-type counts [256] just run on */
    uint32_t scan_stats[OUCH_STAT_SIZE];
    uint32_t max_burst;
    uint64_t now_ns;                /* the last fp_burst's, for fp_answer's rate limit */
    uint64_t polled_tsc;            /* fp_poll's last turn, or the end of its last burst's walk */
    /* left for fp_settle: the last burst's events for risk to settle from, and its feed
     * stream for the re-request server's store (feed_len bytes in itch, messages from
     * sequence number feed_first on) */
    uint32_t unsettled_events;
    int unsettled;
    size_t feed_len;
    uint64_t feed_first;
};

/* Room for `bytes` in g; what is new is zeroed (token 0 reads as no token, as in numpy). */
static __attribute__((noinline)) int grow_to(struct grow *g, size_t bytes)
{
    size_t cap = g->cap ? g->cap : 256;    /* small first: one order's scratch shares a few pages */
    while (cap < bytes)
        cap *= 2;
    uint8_t *p = realloc(g->p, cap);
    if (!p)
        return -1;
    memset(p + g->cap, 0, cap - g->cap);
    g->p = p;
    g->cap = cap;
    return 0;
}

/* grow_to() when needed: the scratch has long been big enough on a running venue */
static inline int need(struct grow *g, size_t bytes)
{
    return __builtin_expect(bytes <= g->cap, 1) ? 0 : grow_to(g, bytes);
}

uint64_t fp_tsc(void) { return __rdtsc(); }

int fp_lock_memory(void)
{
    return mlockall(MCL_CURRENT | MCL_FUTURE) ? errno : 0;
}

int fp_unlock_memory(void)
{
    return munlockall() ? errno : 0;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25            /* Linux 6.1; older C libraries do not name it */
#endif

int fp_collapse(void *addr, uint64_t len)
{
    return madvise(addr, len, MADV_COLLAPSE) ? errno : 0;
}

#define MIN_EVENTS 4096             /* match_run's room for events, at the least */

/* The counting-sort histogram of the grouping is sized by max_clients, set after fp_new. */
static int ensure_clients(struct fp_venue *v, struct priv *p)
{
    if (p->clients)
        return 0;
    uint64_t size = 2;
    while (size < 2 * (uint64_t)v->max_clients)
        size *= 2;
    p->clients = calloc(size, sizeof *p->clients);
    p->client_count = calloc(v->max_clients + 1, sizeof *p->client_count);
    p->bid = calloc(v->n_symbols + 1, sizeof(int32_t));
    p->ask = calloc(v->n_symbols + 1, sizeof(int32_t));
    p->client_mask = size - 1;
    return p->clients && p->client_count && p->bid && p->ask ? 0 : -1;
}

struct fp_venue *fp_new(uint32_t max_burst)
{
    struct fp_venue *v = calloc(1, sizeof *v);
    struct priv *p = calloc(1, sizeof *p);
    if (!v || !p)
        goto fail;
    v->priv = p;
    v->jnl_fd = v->sessions_fd = -1;
    p->max_burst = max_burst;
    p->token_mask = (1u << 16) - 1;
    p->tokens = calloc(p->token_mask + 1, sizeof *p->tokens);
    p->verdict = malloc(max_burst);
    p->dg = malloc(max_burst * sizeof *p->dg);
    p->asks = malloc(max_burst * sizeof *p->asks);
    v->reply_buf = malloc((size_t)max_burst * REPLY_ROOM);
    v->reply_off = malloc((max_burst + STK_MAX_GROUPS) * sizeof(int64_t));
    v->reply_len = malloc((max_burst + STK_MAX_GROUPS) * sizeof(uint32_t));
    /* sized here, not by the first order: growing it there took that order 0.2 ms */
    if (grow_to(&p->events, MIN_EVENTS * sizeof(struct event)))
        goto fail;
    if (p->tokens && p->verdict && p->dg && p->asks && v->reply_buf && v->reply_off && v->reply_len)
        return v;
fail:
    fp_free(v);
    return NULL;
}

void fp_free(struct fp_venue *v)
{
    if (!v)
        return;
    struct priv *p = v->priv;
    if (p) {
        struct grow *g = &p->token_bytes, *end = &p->out_len + 1;
        for (; g < end; g++)
            free(g->p);
        free(p->tokens); free(p->clients); free(p->client_count); free(p->bid); free(p->ask);
        free(p->verdict); free(p->dg); free(p->asks);
        free(p);
    }
    free(v->reply_buf); free(v->reply_off); free(v->reply_len);
    free(v);
}

/* ---- clients and tokens (venue.py: _client_ids, _tokens) ---------------------------- */

/* A zeroed session record to fill (a client or token learned), journaled with the next
 * burst that has commands, as venue.py does; NULL: no memory. */
static uint8_t *learn(struct priv *p)
{
    if (need(&p->learned, (size_t)(p->n_learned + 1) * SESSION_SIZE))
        return NULL;
    uint8_t *r = (uint8_t *)p->learned.p + (size_t)p->n_learned++ * SESSION_SIZE;
    memset(r, 0, SESSION_SIZE);
    return r;
}

static uint32_t client_id(struct fp_venue *v, struct priv *p, const struct stk_datagram *d)
{
    uint64_t key = ((uint64_t)d->src_ip << 16 | d->src_port) + 1;
    uint64_t i = (key * 0x9e3779b97f4a7c15ull) >> 20 & p->client_mask;
    for (; p->clients[i].key; i = (i + 1) & p->client_mask)
        if (p->clients[i].key == key)
            return p->clients[i].id;
    if (v->next_client >= v->max_clients)
        return 0;                   /* its messages are dropped (too_many_clients) */
    uint8_t *r = v->jnl_fd >= 0 ? learn(p) : NULL;
    if (v->jnl_fd >= 0 && !r)
        return 0;                   /* no memory to journal it: dropped as if the table were full */
    uint32_t cid = v->next_client++;
    p->clients[i].key = key;
    p->clients[i].id = cid;
    v->client_ip[cid] = d->src_ip;
    v->client_port[cid] = d->src_port;
    memcpy(v->client_mac + 6 * (size_t)cid, d->src_mac, 6);
    if (r) {
        uint64_t mac = 0;
        for (int b = 0; b < 6; b++)
            mac = mac << 8 | d->src_mac[b];
        r[0] = LEARNED_CLIENT;
        memcpy(r + 1, &cid, 4);
        memcpy(r + 13, &d->src_ip, 4);
        memcpy(r + 17, &d->src_port, 2);
        memcpy(r + 19, &mac, 8);
    }
    return cid;
}

static uint64_t token_hash(uint32_t client, const uint8_t *token)
{
    uint64_t a, b;
    memcpy(&a, token, 8);
    memcpy(&b, token + 6, 8);       /* bytes 6..13: with a, all 14 */
    uint64_t h = a + b * 0x9e3779b97f4a7c15ull + client * 0xc2b2ae3d27d4eb4full;
    h = (h ^ h >> 33) * 0xff51afd7ed558ccdull;    /* MurmurHash3's finaliser: every bit counts */
    h = (h ^ h >> 33) * 0xc4ceb9fe1a85ec53ull;
    return h ^ h >> 33;
}

static struct token_slot *token_slot(struct priv *p, uint32_t client, const uint8_t *token)
{
    uint64_t i = token_hash(client, token) & p->token_mask;
    for (;; i = (i + 1) & p->token_mask) {
        struct token_slot *s = &p->tokens[i];
        if (!s->id || (s->client == client && !memcmp(s->token, token, 14)))
            return s;
    }
}

static int grow_tokens(struct priv *p)
{
    uint64_t size = 2 * (p->token_mask + 1);
    struct token_slot *old = p->tokens, *t = calloc(size, sizeof *t);
    if (!t)
        return -1;
    uint64_t old_size = p->token_mask + 1;
    p->tokens = t;
    p->token_mask = size - 1;
    for (uint64_t i = 0; i < old_size; i++)
        if (old[i].id)
            *token_slot(p, old[i].client, old[i].token) = old[i];
    free(old);
    return 0;
}

/* Core tokens for the (client, token) pairs of n messages (token at msgs + k * size + at);
 * new: unknown ones get fresh numbers (every pair consumes one, as dict.setdefault does). */
static int tokens(struct fp_venue *v, struct priv *p, const uint32_t *client, const uint8_t *msgs, size_t size,
                  size_t at, uint32_t n, int new, uint64_t *out, size_t out_step)
{
    if (new) {
        if ((p->n_tokens + n) * 2 > p->token_mask && grow_tokens(p))
            return -1;
        if (need(&p->token_bytes, (v->next_token + n) * 14) ||
            need(&p->token_symbol, (v->next_token + n) * sizeof(uint16_t)))
            return -1;
    }
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *tok = msgs + k * size + at;
        struct token_slot *s = token_slot(p, client[k], tok);
        uint64_t id = s->id;
        if (new) {
            uint64_t fresh = v->next_token++;
            memcpy((uint8_t *)p->token_bytes.p + fresh * 14, tok, 14);
            if (!id) {
                s->id = id = fresh;
                s->client = client[k];
                memcpy(s->token, tok, 14);
                p->n_tokens++;
                if (v->jnl_fd >= 0) {
                    uint8_t *r = learn(p);
                    if (!r)
                        return -1;
                    r[0] = LEARNED_TOKEN;
                    memcpy(r + 1, &client[k], 4);
                    memcpy(r + 5, &fresh, 8);
                    memcpy(r + 27, tok, 14);
                }
            }
        }
        *(uint64_t *)((uint8_t *)out + k * out_step) = id;
    }
    return 0;
}

/* ---- the walk ----------------------------------------------------------------------- */

/* Commands of the burst's datagrams: per datagram OUCH split (bad packets counted and
 * skipped), supported types from known clients kept, gathered per type. Returns count. */
static int64_t parse(struct fp_venue *v, struct priv *p, const uint8_t *buf, uint32_t n_dg, uint64_t now)
{
    uint32_t *stats = p->scan_stats, n = 0, n_enter = 0, n_replace = 0, n_cancel = 0;
    for (uint32_t d = 0; d < n_dg; d++) {
        const struct stk_datagram *g = &p->dg[d];
        size_t cap = g->length / 3 + 1;
        if (need(&p->payload_type, n + cap) || need(&p->payload_off, (n + cap) * 8) ||
            need(&p->msg_client, (n + cap) * 4) || need(&p->scan_type, cap) ||
            need(&p->scan_off, cap * 4) || need(&p->scan_ctrl, cap * 4))
            return -1;
        const uint8_t *type = p->scan_type.p;
        const uint32_t *moff = p->scan_off.p;
        memset(stats + OUCH_STAT_REJECTS, 0, (OUCH_STAT_SIZE - OUCH_STAT_REJECTS) * sizeof *stats);
        ouch_scan(buf + g->offset, g->length, 1, 'U', IN_LEN, p->scan_type.p, p->scan_off.p, p->scan_ctrl.p,
                  stats);
        for (int r = 0; r < 5; r++)
            v->counts[FP_DROP_OUCH_REJECT + r] += stats[OUCH_STAT_REJECTS + r];
        v->counts[FP_DROP_SOUP_CONTROL] += stats[OUCH_STAT_N_CTRL];
        uint32_t cid = stats[OUCH_STAT_N_ORDER] ? client_id(v, p, g) : 0;
        int64_t *abs_off = (int64_t *)p->payload_off.p;
        uint32_t kept = 0;
        for (uint32_t k = 0; k < stats[OUCH_STAT_N_ORDER]; k++) {
            uint8_t t = type[k];
            int64_t at = g->offset + moff[k];
            if (t != 'O' && t != 'U' && t != 'X') {
                v->counts[FP_DROP_UNSUPPORTED]++;
                continue;
            }
            if (!cid) {
                v->counts[FP_DROP_TOO_MANY_CLIENTS]++;
                continue;
            }
            ((uint8_t *)p->payload_type.p)[n + kept] = t;
            abs_off[n + kept] = at;
            ((uint32_t *)p->msg_client.p)[n + kept] = cid;
            n_enter += t == 'O';
            n_replace += t == 'U';
            n_cancel += t == 'X';
            kept++;
        }
        n += kept;
    }
    v->counts[FP_DATAGRAMS] += n_dg;
    v->counts[FP_MESSAGES] += n;
    if (!n)
        return 0;
    if (need(&p->cmds, n * sizeof(struct command)) || need(&p->msg_type, n) || need(&p->msg_index, n * 4) ||
        need(&p->enters, (n_enter + 1) * 49) || need(&p->replaces, (n_replace + 1) * 47) ||
        need(&p->cancels, (n_cancel + 1) * 19) || need(&p->venue_verdict, n))
        return -1;
    struct command *cmds = p->cmds.p;
    memset(cmds, 0, n * sizeof *cmds);
    uint8_t *const dst[3] = {p->enters.p, p->replaces.p, p->cancels.p};
    uint32_t next[3] = {0}, *index = p->msg_index.p, *client = p->msg_client.p;
    uint8_t *mtype = p->msg_type.p;
    const int64_t *abs_off = p->payload_off.p;
    /* per-type client columns, for the token passes */
    uint32_t *type_client[3];
    if (need(&p->dgram_ip, (size_t)n * 4 * 3))
        return -1;
    for (int j = 0; j < 3; j++)
        type_client[j] = (uint32_t *)p->dgram_ip.p + (size_t)j * n;
    for (uint32_t k = 0; k < n; k++) {
        uint8_t t = ((uint8_t *)p->payload_type.p)[k];
        int j = t == 'O' ? 0 : t == 'U' ? 1 : 2;
        uint32_t i = next[j]++;
        memcpy(dst[j] + (size_t)i * IN_LEN[t], buf + abs_off[k], IN_LEN[t]);
        type_client[j][i] = client[k];
        mtype[k] = t;
        index[k] = i;
        cmds[k].client = client[k];
        cmds[k].ts = now;
    }
    /* tokens in venue.py's order: enters (new), replaces' existing, replacements (new), cancels */
    uint64_t *scratch;
    if (need(&p->pkt_start, (size_t)n * 8))
        return -1;
    scratch = p->pkt_start.p;
    static const struct { int j; size_t size, at; int new; int field; } pass[4] = {
        {0, 49, 1, 1, 0}, {1, 47, 1, 0, 0}, {1, 47, 15, 1, 1}, {2, 19, 1, 0, 0}};
    for (int q = 0; q < 4; q++) {
        int j = pass[q].j;
        if (!next[j])
            continue;
        if (tokens(v, p, type_client[j], dst[j], pass[q].size, pass[q].at, next[j], pass[q].new, scratch, 8))
            return -1;
        uint8_t want = j == 0 ? 'O' : j == 1 ? 'U' : 'X';
        for (uint32_t k = 0; k < n; k++)
            if (mtype[k] == want) {
                if (pass[q].field)
                    cmds[k].new_token = scratch[index[k]];
                else
                    cmds[k].token = scratch[index[k]];
            }
    }
    return n;
}

/* Reply packets grouped per client (stable) and cut into datagrams (venue.py:
 * _replies_c, _reply_datagrams). Returns the datagrams, payloads in p->reply_sorted. */
static int64_t reply_datagrams(struct fp_venue *v, struct priv *p, uint32_t k)
{
    uint32_t *client = p->pkt_client.p, *size = p->pkt_len.p;
    const uint8_t *payload = p->reply.p;
    size_t total = 0;
    int interleaved = 0;
    for (uint32_t i = 0; i < k; i++) {
        total += size[i];
        interleaved |= i && client[i] < client[i - 1];
    }
    if (need(&p->reply_sorted, total) || need(&p->pkt_start, (size_t)k * 16) ||
        need(&p->dgram_off, k * 8) || need(&p->dgram_len, k * 4) || need(&p->dgram_ip, k * 4) ||
        need(&p->dgram_port, k * 2) || need(&p->dgram_mac, k * 6))
        return -1;
    uint64_t *start = p->pkt_start.p, *order = start + k;
    for (uint32_t i = 0, at = 0; i < k; at += size[i++])
        start[i] = at;
    if (interleaved && k <= INSERTION_SORT_MAX) {   /* stable: insertion sort by client */
        for (uint32_t i = 0; i < k; i++) {
            uint32_t j = i;
            for (; j && client[order[j - 1]] > client[i]; j--)
                order[j] = order[j - 1];
            order[j] = i;
        }
    } else if (interleaved) {       /* stable counting sort by client, over every client id */
        uint32_t *count = p->client_count;
        memset(count, 0, (v->max_clients + 1) * sizeof *count);
        for (uint32_t i = 0; i < k; i++)
            count[client[i] + 1]++;
        for (uint32_t c = 1; c <= v->max_clients; c++)
            count[c] += count[c - 1];
        for (uint32_t i = 0; i < k; i++)
            order[count[client[i]]++] = i;
    } else {
        for (uint32_t i = 0; i < k; i++)
            order[i] = i;
    }
    uint8_t *out = p->reply_sorted.p;
    int64_t *doff = p->dgram_off.p;
    uint32_t *dlen = p->dgram_len.p, *dip = p->dgram_ip.p, nd = 0;
    uint16_t *dport = p->dgram_port.p;
    uint8_t *dmac = p->dgram_mac.p;
    uint64_t at = 0, run_start = 0, piece = 0;
    uint32_t prev = 0;
    for (uint32_t r = 0; r < k; r++) {
        uint32_t i = order[r], c = client[i];
        int head = !r || c != prev;
        if (head)
            run_start = at;
        uint64_t pc = (at - run_start) / v->reply_payload;
        if (head || pc != piece) {
            if (nd)
                dlen[nd - 1] = (uint32_t)(at - doff[nd - 1]);
            doff[nd] = (int64_t)at;
            dip[nd] = v->client_ip[c];
            dport[nd] = v->client_port[c];
            memcpy(dmac + 6 * nd, v->client_mac + 6 * (size_t)c, 6);
            nd++;
        }
        piece = pc;
        prev = c;
        memcpy(out + at, payload + start[i], size[i]);
        at += size[i];
    }
    dlen[nd - 1] = (uint32_t)(at - doff[nd - 1]);
    v->counts[FP_REPLIES] += k;
    return nd;
}

static int add_frames(struct fp_venue *v, struct priv *p, const uint8_t *pbuf, const int64_t *poff,
                      const uint32_t *plen, uint32_t n, const uint8_t *mac, uint32_t step, const uint32_t *ip,
                      const uint16_t *dport, const uint16_t *sport)
{
    size_t bytes = 0, used = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += plen[i] + FRAME_HEADERS;
    for (uint32_t i = 0; i < v->n_out; i++)
        used += v->out_len[i];
    if (need(&p->out_buf, used + bytes) || need(&p->out_off, (v->n_out + n) * 8) ||
        need(&p->out_len, (v->n_out + n) * 4))
        return -1;
    v->out_buf = p->out_buf.p;
    v->out_off = p->out_off.p;
    v->out_len = p->out_len.p;
    uint32_t built = stk_build_udp(v->stack_cfg, pbuf, poff, plen, n, mac, step, ip, step, dport, step, sport,
                                   0, v->out_buf + used, p->out_buf.cap - used, v->out_off + v->n_out,
                                   v->out_len + v->n_out);
    for (uint32_t i = 0; i < built; i++)
        v->out_off[v->n_out + i] += (int64_t)used;
    v->n_out += built;
    return 0;
}

static int feed(struct fp_venue *v, struct priv *p, const struct event *ev, uint32_t n_ev,
                const struct venue_tables *t)
{
    uint32_t n_msgs = 0;
    if (need(&p->itch, (size_t)n_ev * 46 + 1))
        return -1;
    size_t len = venue_itch(ev, n_ev, t, p->itch.p, &n_msgs);
    if (!n_msgs)
        return 0;
    size_t cap = 2 * len / (v->feed_max_payload - 20) + 2;
    if (need(&p->mold, len + 20 * cap) || need(&p->mold_off, cap * 8) || need(&p->mold_len, cap * 4) ||
        need(&p->mold_seq, cap * 8) || need(&p->mold_count, cap * 2))
        return -1;
    int error = 0;
    uint64_t error_index = 0;
    int64_t np = mold_pack(v->feed_session, v->feed_seq, p->itch.p, len, v->feed_max_payload, p->mold.p,
                           p->mold_off.p, p->mold_len.p, p->mold_seq.p, p->mold_count.p, &error, &error_index);
    if (np < 0)
        return -1;
    uint64_t count = 0;
    for (int64_t i = 0; i < np; i++)
        count += ((uint16_t *)p->mold_count.p)[i];
    p->feed_len = v->recovery ? len : 0;
    p->feed_first = v->feed_seq;
    v->feed_seq += count;
    v->counts[FP_FEED_MESSAGES] += count;
    static const uint8_t no_mac[6];
    return add_frames(v, p, p->mold.p, p->mold_off.p, p->mold_len.p, (uint32_t)np, no_mac, 0, &v->feed_ip,
                      &v->feed_port, &v->feed_port);
}

/* The burst's requests to the re-request server, out of dg into asks for fp_answer
 * (venue.py: _take_requests). */
static uint32_t take_requests(struct fp_venue *v, struct priv *p, uint32_t n_dg)
{
    uint32_t kept = 0;
    for (uint32_t d = 0; d < n_dg; d++) {
        const struct stk_datagram *g = &p->dg[d];
        if (g->dst_port == v->recovery_port)
            p->asks[p->n_asks++] = *g;
        else
            p->dg[kept++] = *g;
    }
    return kept;
}

int64_t fp_answer(struct fp_venue *v, const uint8_t *buf)
{
    struct priv *p = v->priv;
    uint32_t k = 0, room = v->feed_max_payload, n = p->n_asks;
    p->n_asks = 0;
    v->n_out = 0;
    if (need(&p->mold, (size_t)n * room) || need(&p->dgram_off, n * 8) || need(&p->dgram_len, n * 4) ||
        need(&p->dgram_ip, n * 4) || need(&p->dgram_port, n * 2) || need(&p->dgram_mac, n * 6))
        return FP_ERR_MEMORY;
    for (uint32_t a = 0; a < n; a++) {
        const struct stk_datagram *g = &p->asks[a];
        int verdict;
        uint32_t sent, len = mold_store_answer(v->recovery, v->feed_session, buf + g->offset, g->length, g->src_ip,
                                               p->now_ns, room, (uint8_t *)p->mold.p + (size_t)k * room, &verdict,
                                               &sent);
        v->counts[FP_REQUESTS + verdict]++;
        v->counts[FP_RETRANSMITTED] += sent;
        if (!len)
            continue;
        ((int64_t *)p->dgram_off.p)[k] = (int64_t)k * room;
        ((uint32_t *)p->dgram_len.p)[k] = len;
        ((uint32_t *)p->dgram_ip.p)[k] = g->src_ip;
        ((uint16_t *)p->dgram_port.p)[k] = g->src_port;
        memcpy((uint8_t *)p->dgram_mac.p + 6 * (size_t)k, g->src_mac, 6);
        k++;
    }
    if (k && add_frames(v, p, p->mold.p, p->dgram_off.p, p->dgram_len.p, k, p->dgram_mac.p, 1, p->dgram_ip.p,
                        p->dgram_port.p, &v->recovery_port))
        return FP_ERR_MEMORY;
    return v->n_out;
}

/* n payloads of size bytes as sealed journal records from *seq on, in one write(). */
static int journal(struct fp_venue *v, struct priv *p, int fd, uint64_t *seq, const uint8_t *payload, size_t size,
                   uint32_t n, uint64_t now)
{
    size_t rec = JNL_HEAD + size + 4;
    if (need(&p->jnl_buf, n * rec))
        return FP_ERR_MEMORY;
    uint8_t *r = p->jnl_buf.p;
    for (uint32_t i = 0; i < n; i++, r += rec) {
        uint64_t s = *seq + i;
        memcpy(r, &s, 8);
        memcpy(r + 8, &now, 8);
        memcpy(r + JNL_HEAD, payload + i * size, size);
    }
    jnl_seal(p->jnl_buf.p, n, rec, JNL_HEAD + size);
    const uint8_t *at = p->jnl_buf.p;
    size_t left = n * rec;
    while (left) {
        ssize_t w = write(fd, at, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            v->jnl_errno = w < 0 ? errno : EIO;
            return FP_ERR_JOURNAL;
        }
        at += w;
        left -= (size_t)w;
    }
    *seq += n;
    return 0;
}

void fp_settle(struct fp_venue *v)
{
    struct priv *p = v->priv;
    if (p->unsettled)
        risk_apply(v->risk_state, p->cmds.p, p->holds.p, p->events.p, p->unsettled_events);
    if (p->feed_len)
        mold_store_add(v->recovery, p->feed_first, p->itch.p, p->feed_len);
    p->unsettled = 0;
    p->feed_len = 0;
}

int64_t fp_burst(struct fp_venue *v, const uint8_t *buf, const int64_t *off, const uint32_t *len,
                 uint32_t n, uint64_t now_ns, uint64_t *stamps)
{
    struct priv *p = v->priv;
    stamps[FP_POLL] = __rdtsc();
    if (p->unsettled || p->feed_len)     /* the caller did not settle the last burst */
        fp_settle(v);
    p->now_ns = now_ns;
    v->n_out = 0;
    v->n_replies = 0;
    if (n > p->max_burst || ensure_clients(v, p))
        return -1;
    v->counts[FP_RX_FRAMES] += n;
    uint32_t n_dg = stk_process(v->stack_cfg, v->bound, buf, off, len, n, p->verdict, p->dg, v->reply_buf,
                                (uint64_t)p->max_burst * REPLY_ROOM, v->reply_off, v->reply_len,
                                p->max_burst + STK_MAX_GROUPS, &v->n_replies, v->stack_counts);
    p->n_asks = 0;
    if (v->recovery && n_dg)
        n_dg = take_requests(v, p, n_dg);
    int64_t nc = n_dg ? parse(v, p, buf, n_dg, now_ns) : 0;
    stamps[FP_PARSED] = __rdtsc();
    if (nc <= 0)
        return nc;
    uint32_t nk = (uint32_t)nc;
    struct command *cmds = p->cmds.p;
    const uint32_t *index = p->msg_index.p;
    struct venue_tables t = {v->tick, v->names, p->token_bytes.p, v->client_firm, v->reject_code,
                             v->cancel_code, p->enters.p, p->replaces.p, v->symbol_keys, v->symbol_ids,
                             v->symbol_mask};
    uint8_t *verdict = p->venue_verdict.p;
    venue_commands(cmds, nk, p->msg_type.p, index, &t, p->cancels.p, v->n_symbols, v->venue_firms, v->n_firms,
                   p->token_symbol.p, v->client_firm, verdict);
    /* each order's token-table line is in no cache at light load (a random slot of a 1 MB
     * table): fetched while risk runs, the Matching stage's p50 fell by 0.2 us */
    match_prefetch(v->book, cmds, nk);
    if (need(&p->holds, nk * sizeof(struct risk_hold)))
        return -1;
    const int32_t *bid = NULL, *ask = NULL;
    if (v->mid_reference) {         /* the burst's symbols only: risk reads no other (a
                                     * replace's is its order's, which token_symbol holds) */
        const struct book *b = v->book;
        for (uint32_t k = 0; k < nk; k++) {
            uint32_t s = cmds[k].symbol;
            if (s >= v->n_symbols)
                continue;
            int32_t lb = b->best[2 * s], la = b->best[2 * s + 1];
            p->bid[s] = lb >= 0 ? b->levels[lb].price : 0;
            p->ask[s] = la >= 0 ? b->levels[la].price : 0;
        }
        bid = p->bid;
        ask = p->ask;
    }
    risk_check(v->risk_limits, v->risk_state, cmds, nk, bid, ask, p->holds.p);
    for (uint32_t k = 0; k < nk; k++)
        if (verdict[k])
            cmds[k].risk = verdict[k];
    stamps[FP_VALIDATED] = __rdtsc();

    /* matching (engine.matching.Matcher.run: events' cmd relative to the whole batch) */
    uint32_t done = 0, n_ev = 0;
    while (done < nk) {
        uint32_t cap = (uint32_t)(p->events.cap / sizeof(struct event)), wrote = 0, room = 0;
        struct event *ev = (struct event *)p->events.p + n_ev;
        uint32_t consumed = match_run(v->book, cmds + done, nk - done, ev, cap - n_ev, &wrote, &room, NULL);
        for (uint32_t e = 0; e < wrote; e++)
            ev[e].cmd += done;
        n_ev += wrote;
        done += consumed;
        if (done < nk && need(&p->events, (n_ev + (room > MIN_EVENTS ? room : MIN_EVENTS)) * sizeof(struct event)))
            return -1;
    }
    const struct event *ev = p->events.p;
    p->unsettled = 1;               /* risk settles from the events in fp_settle */
    p->unsettled_events = n_ev;
    stamps[FP_MATCHED] = __rdtsc();

    v->counts[FP_COMMANDS] += nk;
    for (uint32_t e = 0; e < n_ev; e++) {
        v->counts[FP_FILLS] += ev[e].kind == EV_TRADE;
        v->counts[FP_ACCEPTED] += ev[e].kind == EV_ACCEPTED;
        if (ev[e].kind == EV_REJECTED)
            v->rejects[ev[e].reason]++;
    }
    if (need(&p->reply, (size_t)n_ev * 2 * 83 + 1) || need(&p->pkt_client, n_ev * 8 + 4) ||
        need(&p->pkt_len, n_ev * 8 + 4))
        return -1;
    uint32_t k = venue_replies(ev, n_ev, cmds, index, &t, p->reply.p, p->pkt_client.p, p->pkt_len.p);
    if (k) {
        int64_t nd = reply_datagrams(v, p, k);
        if (nd < 0 || add_frames(v, p, p->reply_sorted.p, p->dgram_off.p, p->dgram_len.p, (uint32_t)nd,
                                 p->dgram_mac.p, 1, p->dgram_ip.p, p->dgram_port.p, &v->order_port))
            return -1;
    }
    if (feed(v, p, ev, n_ev, &t))
        return -1;
    stamps[FP_SERIALIZED] = __rdtsc();
    if (v->jnl_fd >= 0) {           /* venue.py's order: new clients and tokens, then commands */
        size_t used = offsetof(struct command, risk) + 1;
        for (uint32_t k = 0; k < nk; k++)   /* the stages may leave bytes in the tail padding */
            memset((uint8_t *)&cmds[k] + used, 0, sizeof *cmds - used);
        int err = p->n_learned ? journal(v, p, v->sessions_fd, &v->sessions_seq, p->learned.p, SESSION_SIZE,
                                         p->n_learned, now_ns) : 0;
        if (!err)
            p->n_learned = 0;
        if (err || (err = journal(v, p, v->jnl_fd, &v->jnl_seq, (const uint8_t *)cmds, sizeof *cmds, nk, now_ns)))
            return err;
    }
    stamps[FP_JOURNALED] = __rdtsc();
    return nc;
}

/* ---- the AF_XDP loop ---------------------------------------------------------------- */

static void submit(struct fp_venue *v, const struct nx_burst_api *api, struct nx_xsk *x, const uint8_t *buf,
                   uint64_t cap, const int64_t *off, const uint32_t *len, uint32_t n)
{
    if (!n)
        return;
    int64_t sent = api->tx_submit(x, buf, cap, off, len, n);
    if (sent < 0)
        sent = 0;
    v->counts[FP_TX_FRAMES] += sent;
    v->counts[FP_TX_RING_FULL] += n - sent;
}

static void stalled(struct fp_venue *v, uint64_t cycles)
{
    v->counts[FP_STALLS]++;
    v->counts[FP_STALLED_CYCLES] += (int64_t)cycles;
    if ((int64_t)cycles > v->counts[FP_LONGEST_STALL])
        v->counts[FP_LONGEST_STALL] = (int64_t)cycles;
}

int64_t fp_poll(struct fp_venue *v, const void *api_, void *xsk, const uint8_t *umem, uint32_t burst_size,
                uint32_t max_bursts, uint64_t until_tsc, uint64_t *stamps, uint64_t *frames_seen)
{
    const struct nx_burst_api *api = api_;
    struct nx_xsk *x = xsk;
    struct priv *p = v->priv;
    if (burst_size > p->max_burst)
        burst_size = p->max_burst;
    int64_t off[burst_size], rx_stamps[burst_size], poll_tsc;
    struct netio_xdp_meta meta[burst_size];
    uint64_t hops[FP_HOPS];
    uint32_t len[burst_size], clock;
    int64_t recorded = 0;
    *frames_seen = 0;
    for (uint64_t now = __rdtsc(); (uint64_t)recorded < max_bursts; now = __rdtsc()) {
        int64_t gap = (int64_t)(now - p->polled_tsc);      /* < 0: the thread moved to a CPU behind */
        p->polled_tsc = now;
        if (v->stall_cycles && gap > (int64_t)v->stall_cycles)
            stalled(v, (uint64_t)gap);
        if (now >= until_tsc)
            break;
        uint32_t n = api->rx_burst_meta(x, burst_size, off, len, rx_stamps, meta, &clock, &poll_tsc);
        if (!n)
            continue;
        *frames_seen += n;
        uint64_t now_ns;
        if (v->clock) {             /* a multiply and a shift, where clock_gettime reads the kernel's page */
            now_ns = (uint64_t)netio_tsc_to_ns(v->clock, (uint64_t)poll_tsc);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
        int64_t nc = fp_burst(v, umem, off, len, n, now_ns, hops);
        if (nc < 0) {               /* nothing of an unjournaled burst is sent */
            fp_settle(v);
            api->release(x, off, n);
            return nc;
        }
        submit(v, api, x, v->reply_buf, (uint64_t)p->max_burst * REPLY_ROOM, v->reply_off, v->reply_len,
               v->n_replies);
        submit(v, api, x, v->out_buf, p->out_buf.cap, v->out_off, v->out_len, v->n_out);
        hops[FP_TX_SUBMITTED] = __rdtsc();
        api->tx_kick(x);
        hops[FP_TX_COMPLETED] = __rdtsc();
        fp_settle(v);
        int64_t answers = p->n_asks ? fp_answer(v, umem) : 0;     /* re-requests, after the burst's own frames */
        if (answers < 0) {
            api->release(x, off, n);
            return answers;
        }
        if (answers) {
            submit(v, api, x, v->out_buf, p->out_buf.cap, v->out_off, v->out_len, v->n_out);
            api->tx_kick(x);
        }
        api->release(x, off, n);
        p->polled_tsc = __rdtsc();  /* the burst's own time is not a stall */
        if (!nc)
            continue;
        uint64_t *s = stamps + (size_t)recorded * FP_STAMPS;
        memcpy(s, hops, sizeof hops);
        s[FP_HOPS] = n;
        s[FP_HOPS + 1] = (uint64_t)nc;
        s[FP_HOPS + 2] = (uint64_t)rx_stamps[0];
        s[FP_HOPS + 3] = clock;
        recorded++;
    }
    return recorded;
}

/* ---- the loop on a thread of its own ----------------------------------------------- */

struct fp_runner {
    struct fp_venue *v;
    const struct nx_burst_api *api;
    struct nx_xsk *x;
    const uint8_t *umem;
    uint32_t burst_size;
    uint64_t check_cycles, heartbeat_cycles;
    uint64_t *ring, mask;           /* (mask + 1) slots of FP_STAMPS */
    uint64_t head, tail;            /* written by the thread / by fp_drain alone */
    uint64_t frames_seen, drained_frames, lost, heartbeats;
    int64_t result;
    int stop;
    pthread_t thread;
};

/* An empty MoldUDP64 packet with the next sequence number, to the feed's group. */
static void heartbeat(struct fp_runner *r)
{
    struct fp_venue *v = r->v;
    struct priv *p = v->priv;
    static const uint8_t no_mac[6];
    uint8_t packet[20] = {0};       /* session, sequence (big-endian), message count 0 */
    int64_t off = 0;
    uint32_t len = sizeof packet;
    uint64_t seq = __builtin_bswap64(v->feed_seq);
    memcpy(packet, v->feed_session, 10);
    memcpy(packet + 10, &seq, 8);
    v->n_out = 0;
    if (add_frames(v, p, packet, &off, &len, 1, no_mac, 0, &v->feed_ip, &v->feed_port, &v->feed_port))
        return;                     /* no memory: the next turn tries again */
    submit(v, r->api, r->x, v->out_buf, p->out_buf.cap, v->out_off, v->out_len, v->n_out);
    r->api->tx_kick(r->x);
    __atomic_store_n(&r->heartbeats, r->heartbeats + 1, __ATOMIC_RELAXED);
}

static void *run(void *arg)
{
    struct fp_runner *r = arg;
    struct fp_venue *v = r->v;
    struct priv *p = v->priv;
    uint64_t dropped[FP_STAMPS], seen, feed_seq = v->feed_seq, feed_at = __rdtsc();
    p->polled_tsc = feed_at;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        int full = r->head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) > r->mask;
        uint64_t *slot = full ? dropped : r->ring + (r->head & r->mask) * FP_STAMPS;
        int64_t k = fp_poll(v, r->api, r->x, r->umem, r->burst_size, 1, __rdtsc() + r->check_cycles, slot, &seen);
        if (k < 0) {
            __atomic_store_n(&r->result, k, __ATOMIC_RELEASE);
            break;
        }
        __atomic_store_n(&r->frames_seen, r->frames_seen + seen, __ATOMIC_RELAXED);
        if (k && full)
            __atomic_store_n(&r->lost, r->lost + 1, __ATOMIC_RELAXED);
        else if (k)
            __atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
        uint64_t now = __rdtsc();
        if (v->feed_seq != feed_seq) {
            feed_seq = v->feed_seq;
            feed_at = now;
        } else if (r->heartbeat_cycles && now - feed_at > r->heartbeat_cycles) {
            heartbeat(r);
            feed_at = now;
            p->polled_tsc = __rdtsc();      /* sending it is no stall */
        }
    }
    return NULL;
}

struct fp_runner *fp_start(struct fp_venue *v, const void *api, void *xsk, const uint8_t *umem, uint32_t burst_size,
                           uint32_t ring_bursts, uint64_t check_cycles, uint64_t heartbeat_cycles)
{
    if (!ring_bursts || ring_bursts & (ring_bursts - 1)) {
        errno = EINVAL;
        return NULL;
    }
    struct fp_runner *r = calloc(1, sizeof *r);
    if (!r || !(r->ring = malloc((size_t)ring_bursts * FP_STAMPS * sizeof *r->ring))) {
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    r->v = v;
    r->api = api;
    r->x = xsk;
    r->umem = umem;
    r->burst_size = burst_size;
    r->mask = ring_bursts - 1;
    r->check_cycles = check_cycles;
    r->heartbeat_cycles = heartbeat_cycles;
    int err = pthread_create(&r->thread, NULL, run, r);
    if (!err)
        return r;
    free(r->ring);
    free(r);
    errno = err;
    return NULL;
}

int64_t fp_drain(struct fp_runner *r, uint64_t *stamps, uint32_t max, uint64_t *frames_seen, uint64_t *lost,
                 uint64_t *heartbeats)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE), n = 0;
    for (; r->tail + n != head && n < max; n++)
        memcpy(stamps + n * FP_STAMPS, r->ring + ((r->tail + n) & r->mask) * FP_STAMPS, FP_STAMPS * sizeof *stamps);
    __atomic_store_n(&r->tail, r->tail + n, __ATOMIC_RELEASE);
    uint64_t seen = __atomic_load_n(&r->frames_seen, __ATOMIC_RELAXED);
    *frames_seen = seen - r->drained_frames;
    r->drained_frames = seen;
    *lost = __atomic_load_n(&r->lost, __ATOMIC_RELAXED);
    *heartbeats = __atomic_load_n(&r->heartbeats, __ATOMIC_RELAXED);
    int64_t result = __atomic_load_n(&r->result, __ATOMIC_ACQUIRE);
    return n || !result ? (int64_t)n : result;
}

int64_t fp_stop(struct fp_runner *r)
{
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    pthread_join(r->thread, NULL);
    int64_t result = r->result;
    free(r->ring);
    free(r);
    return result;
}

int fp_restore(struct fp_venue *v, uint32_t n_clients, const uint32_t *ip, const uint16_t *port,
               const uint32_t *id, uint32_t n_tokens, const uint32_t *client, const uint8_t *token,
               const uint64_t *core_token, const uint8_t *token_bytes, const uint16_t *token_symbol,
               uint64_t n_core_tokens)
{
    struct priv *p = v->priv;
    if (ensure_clients(v, p) || need(&p->token_bytes, n_core_tokens * 14) ||
        need(&p->token_symbol, n_core_tokens * sizeof(uint16_t)))
        return -1;
    memcpy(p->token_bytes.p, token_bytes, n_core_tokens * 14);
    memcpy(p->token_symbol.p, token_symbol, n_core_tokens * sizeof(uint16_t));
    for (uint32_t c = 0; c < n_clients; c++) {
        uint64_t key = ((uint64_t)ip[c] << 16 | port[c]) + 1;
        uint64_t i = (key * 0x9e3779b97f4a7c15ull) >> 20 & p->client_mask;
        while (p->clients[i].key && p->clients[i].key != key)
            i = (i + 1) & p->client_mask;
        p->clients[i].key = key;
        p->clients[i].id = id[c];
    }
    for (uint32_t k = 0; k < n_tokens; k++) {
        if ((p->n_tokens + 1) * 2 > p->token_mask && grow_tokens(p))
            return -1;
        struct token_slot *s = token_slot(p, client[k], token + 14 * (size_t)k);
        if (!s->id)
            p->n_tokens++;
        s->id = core_token[k];
        s->client = client[k];
        memcpy(s->token, token + 14 * (size_t)k, 14);
    }
    return 0;
}
