/* Price-time matching kernel over numpy buffers (see engine/reference.py for the rules).
 *
 * Book layout (all arrays owned by engine.book.Book):
 *  - levels: one per tick inside each symbol's band (per side), addressed directly, with a
 *    bitmap per symbol-side to find the next non-empty level; prices outside the band use
 *    levels from an overflow pool kept in a sorted list per symbol-side (the slow path);
 *  - orders: a fixed pool of one-cache-line records, FIFO-linked inside their level, with
 *    a free list;
 *  - a (client, token) open-addressing table for cancel/replace lookups.
 * Nothing is allocated here; a command that needs a slot that is not there is rejected.
 */
#include <stdint.h>
#include <x86intrin.h>
#include "matching.h"

enum { K_ENTER = 'O', K_REPLACE = 'U', K_CANCEL = 'X', K_MASS_CLIENT = 'C', K_MASS_SYMBOL = 'M' };
enum { BUY = 'B', SELL = 'S' };
enum { DAY = 0, IOC = 1, FOK = 2 };
enum { F_POST_ONLY = 1, F_MARKET = 2, F_HIDDEN = 4, F_ALL = 7, O_LIVE = 0x80 };
enum { STP_NONE, STP_NEWEST, STP_OLDEST, STP_BOTH, STP_DECREMENT };
enum { R_UNKNOWN_SYMBOL = 1, R_INVALID_PRICE, R_INVALID_QTY, R_INVALID_MIN_QTY, R_INVALID_ORDER,
       R_DUPLICATE_TOKEN, R_UNKNOWN_TOKEN, R_POOL_FULL, R_LEVELS_FULL, R_WOULD_CROSS,
       R_UNKNOWN_KIND };
enum { C_USER = 1, C_IOC, C_FOK, C_MIN_QTY, C_STP, C_MASS_CLIENT, C_MASS_SYMBOL, C_COLLAR };
enum { E_ACCEPTED = 1, E_REJECTED, E_TRADE, E_CANCELED, E_REPLACED, E_ADD = 'A', E_EXEC = 'E',
       E_BOOK_CANCEL = 'X', E_DELETE = 'D', E_BOOK_REPLACE = 'U', E_BOOK_TRADE = 'P' };
/* book->state[] slots; engine/book.py names them the same */
enum { S_NEXT_REF, S_NEXT_MATCH, S_LIVE, S_OUTSIDE, S_FREE_ORDER, S_FREE_LEVEL };

#define PRICE_MAX 2147483647LL

struct out {
    struct event *ev;
    uint32_t n, cap, cmd;
    uint64_t ts;
};

/* An incoming order (or a replacement) while it takes liquidity; rests into the pool. */
struct taker {
    uint64_t ref, token;
    int32_t price;
    uint32_t qty, client, group, hash;
    uint16_t symbol;
    uint8_t side, stp, hidden;
};

static inline uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline int side_index(uint8_t side) { return side == SELL; }
static inline int better(int si, int32_t p, int32_t q) { return si ? p < q : p > q; }
/* Does a limit on side `side` reach an opposite level at `price`? */
static inline int crosses(uint8_t side, int32_t limit, int32_t price)
{
    return side == BUY ? price <= limit : price >= limit;
}

/* ---- events ------------------------------------------------------------------------- */

static inline struct event *emit(struct out *o, uint8_t kind)
{
    struct event *e = &o->ev[o->n++];
    *e = (struct event){ .ts = o->ts, .cmd = o->cmd, .kind = kind };
    return e;
}

static inline struct event *emit_order(struct out *o, uint8_t kind, const struct book *b, int32_t i)
{
    const struct order *r = &b->orders[i];
    struct event *e = emit(o, kind);
    e->ref = r->ref;
    e->token = r->token;
    e->client = r->client;
    e->symbol = r->symbol;
    e->side = r->side;
    e->price = r->price;
    e->leaves = r->qty;
    return e;
}

static inline struct event *emit_taker(struct out *o, uint8_t kind, const struct taker *t)
{
    struct event *e = emit(o, kind);
    e->ref = t->ref;
    e->token = t->token;
    e->client = t->client;
    e->symbol = t->symbol;
    e->side = t->side;
    e->price = t->price;
    e->leaves = t->qty;
    return e;
}

static void reject(struct out *o, const struct command *c, uint8_t reason)
{
    struct event *e = emit(o, E_REJECTED);
    e->token = c->token;
    e->client = c->client;
    e->symbol = c->symbol;
    e->side = c->side;
    e->price = c->price;
    e->qty = c->qty;
    e->reason = reason;
}

/* ---- (client, token) table: linear probing, backward-shift deletion ---------------- */

static inline uint32_t h_hash(uint32_t client, uint64_t token)
{
    uint64_t x = token ^ ((uint64_t)client * 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(x ^ (x >> 31));
}

static int32_t h_find(const struct book *b, uint32_t client, uint64_t token, uint32_t hash)
{
    for (uint32_t h = hash & b->hash_mask;; h = (h + 1) & b->hash_mask) {
        int32_t i = b->h_table[h].slot;
        if (i < 0)
            return -1;
        if (b->h_table[h].hash == hash && b->orders[i].token == token && b->orders[i].client == client)
            return i;
    }
}

static void h_insert(struct book *b, int32_t i)
{
    uint32_t hash = b->orders[i].hash, h = hash & b->hash_mask;
    while (b->h_table[h].slot >= 0)
        h = (h + 1) & b->hash_mask;
    b->h_table[h] = (struct hash_entry){ .slot = i, .hash = hash };
}

static void h_delete(struct book *b, int32_t i)
{
    uint32_t mask = b->hash_mask, hole = b->orders[i].hash & mask;
    while (b->h_table[hole].slot != i)
        hole = (hole + 1) & mask;
    /* pull later members of the probe run back so lookups never stop at the hole */
    for (uint32_t j = (hole + 1) & mask; b->h_table[j].slot >= 0; j = (j + 1) & mask) {
        uint32_t home = b->h_table[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            b->h_table[hole] = b->h_table[j];
            hole = j;
        }
    }
    b->h_table[hole].slot = -1;
}

/* ---- levels ----------------------------------------------------------------------- */

static int32_t bit_highest_le(const uint64_t *w, int32_t i)
{
    if (i < 0)
        return -1;
    int32_t k = i >> 6;
    uint64_t m = w[k] & (~0ull >> (63 - (i & 63)));
    for (;;) {
        if (m)
            return (k << 6) + 63 - __builtin_clzll(m);
        if (--k < 0)
            return -1;
        m = w[k];
    }
}

static int32_t bit_lowest_ge(const uint64_t *w, int32_t i, int32_t nbits)
{
    if (i >= nbits)
        return -1;
    int32_t k = i >> 6, words = (nbits + 63) >> 6;
    uint64_t m = w[k] & (~0ull << (i & 63));
    for (;;) {
        if (m)
            return (k << 6) + __builtin_ctzll(m);
        if (++k >= words)
            return -1;
        m = w[k];
    }
}

/* Best band level at or worse than band index `from` (clamped), as a level id or -1. */
static int32_t band_best_from(const struct book *b, uint32_t key, int64_t from)
{
    int32_t band = b->band_ticks, i;
    const uint64_t *w = b->bitmap + (uint64_t)key * b->band_words;
    if (key & 1)
        i = bit_lowest_ge(w, from < 0 ? 0 : (from >= band ? band : (int32_t)from), band);
    else
        i = bit_highest_le(w, from >= band ? band - 1 : (from < 0 ? -1 : (int32_t)from));
    return i < 0 ? -1 : (int32_t)(key * (uint32_t)band) + i;
}

static inline int32_t pick_better(const struct book *b, int si, int32_t x, int32_t y)
{
    if (x < 0)
        return y;
    if (y < 0)
        return x;
    return better(si, b->levels[x].price, b->levels[y].price) ? x : y;
}

/* The best level strictly worse than `price` (for walking a side without changing it). */
static int32_t next_worse(const struct book *b, uint32_t key, int32_t price)
{
    int si = key & 1;
    int64_t rel = (int64_t)price - b->band_lo[key >> 1];
    int32_t band = si ? band_best_from(b, key, rel + 1)
                      : (rel - 1 < 0 ? -1 : band_best_from(b, key, rel - 1));
    int32_t h = b->ovf_head[key];
    while (h >= 0 && !better(si, price, b->levels[h].price))
        h = b->levels[h].next;
    return pick_better(b, si, band, h);
}

static inline int in_band(const struct book *b, uint16_t symbol, int32_t price)
{
    int64_t rel = (int64_t)price - b->band_lo[symbol];
    return rel >= 0 && rel < b->band_ticks;
}

static int32_t ovf_find(const struct book *b, uint32_t key, int32_t price)
{
    int32_t h = b->ovf_head[key];
    while (h >= 0 && b->levels[h].price != price)
        h = b->levels[h].next;
    return h;
}

/* Would resting at `price` need an overflow level that the pool cannot give? */
static int needs_missing_level(const struct book *b, uint16_t symbol, int si, int32_t price)
{
    return !in_band(b, symbol, price) && b->state[S_FREE_LEVEL] < 0
        && ovf_find(b, symbol * 2u + si, price) < 0;
}

/* The level for `price`, created (and made best if it is) when it has no orders. */
static int32_t level_for(struct book *b, uint16_t symbol, int si, int32_t price)
{
    uint32_t key = symbol * 2u + si;
    int32_t lv;
    if (in_band(b, symbol, price)) {
        uint32_t i = (uint32_t)(price - b->band_lo[symbol]);
        lv = (int32_t)(key * b->band_ticks + i);
        if (b->levels[lv].count)
            return lv;
        b->bitmap[(uint64_t)key * b->band_words + (i >> 6)] |= 1ull << (i & 63);
    } else {
        int32_t prev = -1, h = b->ovf_head[key];
        while (h >= 0 && better(si, b->levels[h].price, price)) {
            prev = h;
            h = b->levels[h].next;
        }
        if (h >= 0 && b->levels[h].price == price)
            return h;
        lv = (int32_t)b->state[S_FREE_LEVEL];       /* checked by needs_missing_level */
        b->state[S_FREE_LEVEL] = b->levels[lv].next;
        b->state[S_OUTSIDE]++;
        b->levels[lv].price = price;
        b->levels[lv].prev = prev;
        b->levels[lv].next = h;
        if (h >= 0)
            b->levels[h].prev = lv;
        if (prev >= 0)
            b->levels[prev].next = lv;
        else
            b->ovf_head[key] = lv;
    }
    b->levels[lv].head = b->levels[lv].tail = -1;
    b->levels[lv].qty = 0;
    int32_t best = b->best[key];
    if (best < 0 || better(si, price, b->levels[best].price))
        b->best[key] = lv;
    return lv;
}

static void drop_level(struct book *b, uint32_t key, int32_t lv)
{
    int si = key & 1;
    int64_t hint;
    if (lv < (int32_t)(b->symbols * 2u * b->band_ticks)) {
        uint32_t i = (uint32_t)(lv - (int32_t)(key * b->band_ticks));
        b->bitmap[(uint64_t)key * b->band_words + (i >> 6)] &= ~(1ull << (i & 63));
        hint = i;                               /* nothing better than the best is left */
    } else {
        if (b->levels[lv].prev >= 0)
            b->levels[b->levels[lv].prev].next = b->levels[lv].next;
        else
            b->ovf_head[key] = b->levels[lv].next;
        if (b->levels[lv].next >= 0)
            b->levels[b->levels[lv].next].prev = b->levels[lv].prev;
        b->levels[lv].next = (int32_t)b->state[S_FREE_LEVEL];
        b->state[S_FREE_LEVEL] = lv;
        b->state[S_OUTSIDE]--;
        hint = si ? 0 : (int64_t)b->band_ticks - 1;
    }
    if (b->best[key] != lv)
        return;
    /* an emptied side needs no search (a scan of its whole band otherwise): unlink_order
     * counts the order out first */
    b->best[key] = b->count[key] ? pick_better(b, si, band_best_from(b, key, hint), b->ovf_head[key]) : -1;
}

/* ---- orders ----------------------------------------------------------------------- */

static void unlink_order(struct book *b, int32_t i)
{
    int32_t lv = b->orders[i].level, prev = b->orders[i].prev, next = b->orders[i].next;
    uint32_t key = b->orders[i].symbol * 2u + side_index(b->orders[i].side);
    if (prev >= 0)
        b->orders[prev].next = next;
    else
        b->levels[lv].head = next;
    if (next >= 0)
        b->orders[next].prev = prev;
    else
        b->levels[lv].tail = prev;
    b->levels[lv].qty -= b->orders[i].qty;
    b->count[key]--;
    if (--b->levels[lv].count == 0)
        drop_level(b, key, lv);
}

static void free_order(struct book *b, int32_t i)
{
    h_delete(b, i);
    b->orders[i].flags = 0;
    b->orders[i].next = (int32_t)b->state[S_FREE_ORDER];
    b->state[S_FREE_ORDER] = i;
    b->state[S_LIVE]--;
}

/* Queue pool order i at the back of the level for its price and index its token. */
static void place(struct book *b, int32_t i)
{
    struct order *r = &b->orders[i];
    int si = side_index(r->side);
    int32_t lv = level_for(b, r->symbol, si, r->price);
    struct level *l = &b->levels[lv];
    r->level = lv;
    r->next = -1;
    r->prev = l->tail;
    if (l->tail >= 0)
        b->orders[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
    l->count++;
    l->qty += r->qty;
    b->count[r->symbol * 2u + si]++;
    h_insert(b, i);
}

/* Put the taker on the book (a free slot is known to exist). */
static int32_t rest(struct book *b, const struct taker *t, uint64_t ts)
{
    int32_t i = (int32_t)b->state[S_FREE_ORDER];
    b->state[S_FREE_ORDER] = b->orders[i].next;
    b->state[S_LIVE]++;
    b->orders[i] = (struct order){
        .ref = t->ref, .token = t->token, .ts = ts, .price = t->price, .qty = t->qty,
        .client = t->client, .group = t->group, .hash = t->hash, .symbol = t->symbol,
        .side = t->side, .stp = t->stp, .flags = O_LIVE | (t->hidden ? F_HIDDEN : 0),
    };
    place(b, i);
    return i;
}

static void rest_displayed(struct book *b, struct out *o, const struct taker *t)
{
    int32_t i = rest(b, t, o->ts);
    if (!t->hidden)
        emit_order(o, E_ADD, b, i)->qty = t->qty;
}

static void cancel_resting(struct book *b, struct out *o, int32_t i, uint32_t shares, uint8_t reason)
{
    int hidden = b->orders[i].flags & F_HIDDEN;
    b->orders[i].qty -= shares;
    b->levels[b->orders[i].level].qty -= shares;
    struct event *e = emit_order(o, E_CANCELED, b, i);
    e->qty = shares;
    e->reason = reason;
    if (b->orders[i].qty == 0) {
        unlink_order(b, i);
        if (!hidden)
            emit_order(o, E_DELETE, b, i);
        free_order(b, i);
    } else if (!hidden) {
        emit_order(o, E_BOOK_CANCEL, b, i)->qty = shares;
    }
}

static void cancel_taker(struct out *o, struct taker *t, uint8_t reason)
{
    uint32_t shares = t->qty;
    t->qty = 0;
    struct event *e = emit_taker(o, E_CANCELED, t);
    e->qty = shares;
    e->reason = reason;
}

/* ---- matching --------------------------------------------------------------------- */

static inline int stp_applies(const struct taker *t, uint32_t maker_group)
{
    return t->group && t->stp != STP_NONE && t->group == maker_group;
}

/* Shares the taker would trade now, counting stops at `needed`; changes nothing. */
static uint32_t fillable(const struct book *b, const struct taker *t, uint32_t needed)
{
    uint32_t key = t->symbol * 2u + !side_index(t->side), remaining = t->qty, traded = 0;
    for (int32_t lv = b->best[key]; lv >= 0; lv = next_worse(b, key, b->levels[lv].price)) {
        if (!crosses(t->side, t->price, b->levels[lv].price))
            break;
        for (int32_t m = b->levels[lv].head; m >= 0; m = b->orders[m].next) {
            if (stp_applies(t, b->orders[m].group)) {
                if (t->stp == STP_NEWEST || t->stp == STP_BOTH)
                    return traded;
                if (t->stp == STP_DECREMENT)
                    remaining -= min_u32(remaining, b->orders[m].qty);
            } else {
                uint32_t fill = min_u32(remaining, b->orders[m].qty);
                traded += fill;
                remaining -= fill;
            }
            if (remaining == 0 || traded >= needed)
                return traded;
        }
    }
    return traded;
}

/* Match the taker against the opposite side up to its limit; 0 if STP ended it. */
static int take(struct book *b, struct out *o, struct taker *t)
{
    uint32_t key = t->symbol * 2u + !side_index(t->side);
    while (t->qty) {
        int32_t lv = b->best[key];
        if (lv < 0 || !crosses(t->side, t->price, b->levels[lv].price))
            return 1;
        int32_t m = b->levels[lv].head;
        if (stp_applies(t, b->orders[m].group)) {
            uint32_t shares;
            switch (t->stp) {
            case STP_NEWEST:
                cancel_taker(o, t, C_STP);
                return 0;
            case STP_OLDEST:
                cancel_resting(b, o, m, b->orders[m].qty, C_STP);
                continue;
            case STP_BOTH:
                cancel_resting(b, o, m, b->orders[m].qty, C_STP);
                cancel_taker(o, t, C_STP);
                return 0;
            default:                            /* STP_DECREMENT */
                shares = min_u32(t->qty, b->orders[m].qty);
                cancel_resting(b, o, m, shares, C_STP);
                t->qty -= shares;
                struct event *e = emit_taker(o, E_CANCELED, t);
                e->qty = shares;
                e->reason = C_STP;
                if (!t->qty)
                    return 0;
                continue;
            }
        }
        uint32_t fill = min_u32(t->qty, b->orders[m].qty);
        uint64_t match = (uint64_t)b->state[S_NEXT_MATCH]++;
        t->qty -= fill;
        b->orders[m].qty -= fill;
        b->levels[lv].qty -= fill;
        struct event *e = emit_taker(o, E_TRADE, t);
        e->other_ref = b->orders[m].ref;
        e->other_token = b->orders[m].token;
        e->other_client = b->orders[m].client;
        e->other_leaves = b->orders[m].qty;
        e->match = match;
        e->price = b->orders[m].price;
        e->qty = fill;
        e = emit_order(o, (b->orders[m].flags & F_HIDDEN) ? E_BOOK_TRADE : E_EXEC, b, m);
        e->qty = fill;
        e->match = match;
        if (b->orders[m].qty == 0) {
            unlink_order(b, m);
            free_order(b, m);
        }
    }
    return 1;
}

/* ---- commands: each returns 0, or the event room it needs before it can run -------- */

/* Worst case of one taker: its reply, three events per resting opposite order, its end. */
static inline uint32_t taker_room(const struct book *b, uint16_t symbol, int si)
{
    return 4 + 3 * b->count[symbol * 2u + !si];
}

static uint32_t enter(struct book *b, struct out *o, const struct command *c)
{
    int market = c->flags & F_MARKET, post_only = c->flags & F_POST_ONLY;
    int si = side_index(c->side);
    if (c->symbol >= b->symbols)
        return reject(o, c, R_UNKNOWN_SYMBOL), 0;
    if ((c->side != BUY && c->side != SELL) || c->tif > FOK || (c->flags & ~F_ALL)
        || c->stp > STP_DECREMENT || (post_only && (market || c->tif != DAY)))
        return reject(o, c, R_INVALID_ORDER), 0;
    if (c->qty == 0 || c->qty > b->max_qty)
        return reject(o, c, R_INVALID_QTY), 0;
    if (c->min_qty > c->qty)
        return reject(o, c, R_INVALID_MIN_QTY), 0;
    if (!market && c->price <= 0)
        return reject(o, c, R_INVALID_PRICE), 0;
    uint32_t hash = h_hash(c->client, c->token);
    if (h_find(b, c->client, c->token, hash) >= 0)
        return reject(o, c, R_DUPLICATE_TOKEN), 0;
    int may_rest = c->tif == DAY && !market;
    if (may_rest && b->state[S_FREE_ORDER] < 0)
        return reject(o, c, R_POOL_FULL), 0;
    if (may_rest && needs_missing_level(b, c->symbol, si, c->price))
        return reject(o, c, R_LEVELS_FULL), 0;
    uint32_t okey = c->symbol * 2u + !si;
    int32_t best = b->best[okey];
    if (post_only && best >= 0 && crosses(c->side, c->price, b->levels[best].price))
        return reject(o, c, R_WOULD_CROSS), 0;
    uint32_t room = taker_room(b, c->symbol, si);
    if (o->cap - o->n < room)
        return room;

    int64_t limit = c->price;
    if (market) {
        int64_t base = best >= 0 ? b->levels[best].price : b->ref_price[c->symbol];
        limit = si ? base - b->collar[c->symbol] : base + b->collar[c->symbol];
        limit = limit < 1 ? 1 : (limit > PRICE_MAX ? PRICE_MAX : limit);
    }
    struct taker t = {
        .ref = (uint64_t)b->state[S_NEXT_REF]++, .token = c->token, .price = (int32_t)limit,
        .qty = c->qty, .client = c->client, .group = c->stp_group, .hash = hash, .symbol = c->symbol,
        .side = c->side, .stp = c->stp, .hidden = (c->flags & F_HIDDEN) != 0,
    };
    emit_taker(o, E_ACCEPTED, &t)->qty = t.qty;

    uint32_t needed = c->tif == FOK ? c->qty : c->min_qty;
    if (needed && fillable(b, &t, needed) < needed)
        return cancel_taker(o, &t, c->tif == FOK ? C_FOK : C_MIN_QTY), 0;
    if (!take(b, o, &t) || !t.qty)
        return 0;
    if (market)
        cancel_taker(o, &t, b->count[okey] ? C_COLLAR : C_IOC);
    else if (c->tif != DAY)
        cancel_taker(o, &t, C_IOC);
    else
        rest_displayed(b, o, &t);
    return 0;
}

static uint32_t cancel(struct book *b, struct out *o, const struct command *c)
{
    int32_t i = h_find(b, c->client, c->token, h_hash(c->client, c->token));
    if (i < 0)
        return reject(o, c, R_UNKNOWN_TOKEN), 0;
    if (o->cap - o->n < 2)
        return 2;
    if (c->qty < b->orders[i].qty)
        cancel_resting(b, o, i, b->orders[i].qty - c->qty, C_USER);
    return 0;
}

static uint32_t replace(struct book *b, struct out *o, const struct command *c)
{
    int32_t i = h_find(b, c->client, c->token, h_hash(c->client, c->token));
    if (i < 0)
        return reject(o, c, R_UNKNOWN_TOKEN), 0;
    uint32_t hash = h_hash(c->client, c->new_token);
    if (h_find(b, c->client, c->new_token, hash) >= 0)
        return reject(o, c, R_DUPLICATE_TOKEN), 0;
    if (c->qty == 0 || c->qty > b->max_qty)
        return reject(o, c, R_INVALID_QTY), 0;
    if (c->price <= 0)
        return reject(o, c, R_INVALID_PRICE), 0;
    struct order *r = &b->orders[i];
    int si = side_index(r->side);
    int keep = c->price == r->price && c->qty <= r->qty;
    if (!keep && needs_missing_level(b, r->symbol, si, c->price))
        return reject(o, c, R_LEVELS_FULL), 0;
    uint32_t room = taker_room(b, r->symbol, si);
    if (o->cap - o->n < room)
        return room;

    uint64_t old_ref = r->ref, old_token = r->token;
    struct event *e;
    if (keep) {
        uint32_t shrink = r->qty - c->qty;
        h_delete(b, i);
        r->token = c->new_token;
        r->hash = hash;
        h_insert(b, i);
        r->qty = c->qty;
        b->levels[r->level].qty -= shrink;
        e = emit_order(o, E_REPLACED, b, i);
        e->other_ref = old_ref;
        e->other_token = old_token;
        e->qty = c->qty;
        if (shrink && !(r->flags & F_HIDDEN))
            emit_order(o, E_BOOK_CANCEL, b, i)->qty = shrink;
        return 0;
    }

    int32_t best = b->best[r->symbol * 2u + !si];
    if (best < 0 || !crosses(r->side, c->price, b->levels[best].price)) {
        /* the common move: same slot, new place in the queue */
        unlink_order(b, i);
        h_delete(b, i);
        r->ref = (uint64_t)b->state[S_NEXT_REF]++;
        r->token = c->new_token;
        r->hash = hash;
        r->price = c->price;
        r->qty = c->qty;
        r->ts = o->ts;
        place(b, i);
        e = emit_order(o, E_REPLACED, b, i);
        e->other_ref = old_ref;
        e->other_token = old_token;
        e->qty = c->qty;
        if (!(r->flags & F_HIDDEN)) {
            e = emit_order(o, E_BOOK_REPLACE, b, i);
            e->other_ref = old_ref;
            e->qty = c->qty;
        }
        return 0;
    }

    /* crossing: the order leaves the book and trades as a taker first */
    struct taker t = {
        .ref = (uint64_t)b->state[S_NEXT_REF]++, .token = c->new_token, .price = c->price,
        .qty = c->qty, .client = r->client, .group = r->group, .hash = hash,
        .symbol = r->symbol, .side = r->side, .stp = r->stp,
        .hidden = (r->flags & F_HIDDEN) != 0,
    };
    int32_t old_price = r->price;
    unlink_order(b, i);
    free_order(b, i);
    e = emit_taker(o, E_REPLACED, &t);
    e->other_ref = old_ref;
    e->other_token = old_token;
    e->qty = t.qty;
    if (!t.hidden) {
        e = emit_taker(o, E_DELETE, &t);
        e->ref = old_ref;
        e->token = old_token;
        e->price = old_price;
        e->leaves = 0;
    }
    if (take(b, o, &t) && t.qty)
        rest_displayed(b, o, &t);
    return 0;
}

/* Cancel the symbol's orders (all, or one client's) in book order. */
static void cancel_in_symbol(struct book *b, struct out *o, uint16_t symbol, int all,
                             uint32_t client, uint8_t reason)
{
    for (uint32_t key = symbol * 2u; key < symbol * 2u + 2; key++) {
        for (int32_t lv = b->best[key]; lv >= 0;) {
            int32_t price = b->levels[lv].price;
            for (int32_t i = b->levels[lv].head, next; i >= 0; i = next) {
                next = b->orders[i].next;
                if (all || b->orders[i].client == client)
                    cancel_resting(b, o, i, b->orders[i].qty, reason);
            }
            lv = next_worse(b, key, price);
        }
    }
}

static uint32_t mass_cancel_client(struct book *b, struct out *o, const struct command *c)
{
    uint32_t orders = 0;
    for (uint32_t i = 0; i < b->pool_size; i++)
        orders += (b->orders[i].flags & O_LIVE) && b->orders[i].client == c->client;
    if (o->cap - o->n < 2 * orders)
        return 2 * orders;
    for (uint32_t s = 0; s < b->symbols; s++)
        cancel_in_symbol(b, o, (uint16_t)s, 0, c->client, C_MASS_CLIENT);
    return 0;
}

static uint32_t mass_cancel_symbol(struct book *b, struct out *o, const struct command *c)
{
    if (c->symbol >= b->symbols)
        return reject(o, c, R_UNKNOWN_SYMBOL), 0;
    uint32_t room = 2 * (b->count[c->symbol * 2u] + b->count[c->symbol * 2u + 1]);
    if (o->cap - o->n < room)
        return room;
    cancel_in_symbol(b, o, c->symbol, 1, 0, C_MASS_SYMBOL);
    return 0;
}

static uint32_t command(struct book *b, struct out *o, const struct command *c)
{
    if (o->cap == o->n)
        return 1;
    if (c->risk)
        return reject(o, c, c->risk), 0;
    switch (c->kind) {
    case K_ENTER:
        return enter(b, o, c);
    case K_CANCEL:
        return cancel(b, o, c);
    case K_REPLACE:
        return replace(b, o, c);
    case K_MASS_CLIENT:
        return mass_cancel_client(b, o, c);
    case K_MASS_SYMBOL:
        return mass_cancel_symbol(b, o, c);
    default:
        return reject(o, c, R_UNKNOWN_KIND), 0;
    }
}

static inline uint64_t stamp(void)
{
    _mm_lfence();
    return __rdtsc();
}

uint32_t match_run(struct book *b, const struct command *cmds, uint32_t n,
                   struct event *ev, uint32_t cap, uint32_t *n_events, uint32_t *need,
                   uint64_t *tsc)
{
    struct out o = { .ev = ev, .cap = cap };
    uint32_t k;
    /* one stamp per command boundary: each command's cycles run from the stamp before it
     * to the stamp after it */
    uint64_t last = tsc ? stamp() : 0;
    *need = 0;
    for (k = 0; k < n; k++) {
        const struct command *c = &cmds[k];
        o.cmd = k;
        o.ts = c->ts;
        uint32_t room = command(b, &o, c);
        if (room) {
            *need = room;
            break;
        }
        if (tsc) {
            uint64_t now = stamp();
            tsc[k] = now - last;
            last = now;
        }
    }
    *n_events = o.n;
    return k;
}

void match_prefetch(const struct book *b, const struct command *cmds, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        __builtin_prefetch(&b->h_table[h_hash(cmds[k].client, cmds[k].token) & b->hash_mask]);
}

uint64_t match_tsc(void)
{
    return stamp();
}

/* ---- books rebuilt from a feed (engine/feed.py) ------------------------------------ */

static inline int32_t feed_find(const struct book *b, uint64_t ref)
{
    return h_find(b, 0, ref, h_hash(0, ref));
}

static uint8_t feed_add(struct book *b, uint64_t ref, uint16_t symbol, uint8_t side, int32_t price,
                        uint32_t qty, uint64_t ts)
{
    if (symbol >= b->symbols)
        return FEED_UNKNOWN_SYMBOL;
    if (side != BUY && side != SELL)
        return FEED_BAD_SIDE;
    if (price <= 0)
        return FEED_BAD_PRICE;
    if (qty == 0)
        return FEED_BAD_QTY;
    if (feed_find(b, ref) >= 0)
        return FEED_DUPLICATE_REF;
    if (b->state[S_FREE_ORDER] < 0)
        return FEED_POOL_FULL;
    if (needs_missing_level(b, symbol, side_index(side), price))
        return FEED_LEVELS_FULL;
    struct taker t = { .ref = ref, .token = ref, .price = price, .qty = qty, .hash = h_hash(0, ref),
                       .symbol = symbol, .side = side };
    rest(b, &t, ts);
    return FEED_OK;
}

static uint8_t feed_reduce(struct book *b, int32_t i, uint32_t shares)
{
    struct order *r = &b->orders[i];
    if (shares == 0)
        return FEED_BAD_QTY;
    if (shares < r->qty) {
        r->qty -= shares;
        b->levels[r->level].qty -= shares;
        return FEED_OK;
    }
    uint8_t status = shares > r->qty ? FEED_OVER_REDUCE : FEED_OK;
    unlink_order(b, i);
    free_order(b, i);
    return status;
}

static uint8_t feed_replace(struct book *b, const struct feed_op *op, int32_t i)
{
    if (op->price <= 0)
        return FEED_BAD_PRICE;
    if (op->qty == 0)
        return FEED_BAD_QTY;
    if (op->new_ref != op->ref && feed_find(b, op->new_ref) >= 0)
        return FEED_DUPLICATE_REF;
    uint16_t symbol = b->orders[i].symbol;
    uint8_t side = b->orders[i].side;
    unlink_order(b, i);
    free_order(b, i);
    return feed_add(b, op->new_ref, symbol, side, op->price, op->qty, op->ts);
}

uint32_t feed_apply(struct book *b, const struct feed_op *ops, uint32_t n, uint8_t *status)
{
    uint32_t bad = 0;
    for (uint32_t k = 0; k < n; k++) {
        const struct feed_op *op = &ops[k];
        uint8_t s;
        if (op->kind == 'A' || op->kind == 'F') {
            s = feed_add(b, op->ref, op->symbol, op->side, op->price, op->qty, op->ts);
        } else {
            int32_t i = feed_find(b, op->ref);
            switch (op->kind) {
            case 'E': case 'C': case 'X':
                s = i < 0 ? FEED_UNKNOWN_REF : feed_reduce(b, i, op->qty);
                break;
            case 'D':
                s = i < 0 ? FEED_UNKNOWN_REF : feed_reduce(b, i, b->orders[i].qty);
                break;
            case 'U':
                s = i < 0 ? FEED_UNKNOWN_REF : feed_replace(b, op, i);
                break;
            default:
                s = FEED_UNKNOWN_KIND;
            }
        }
        status[k] = s;
        bad += s != FEED_OK;
    }
    return bad;
}
