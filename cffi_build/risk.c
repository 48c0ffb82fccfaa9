/* Pre-trade risk: per-command checks over a batch before matching, and settlement of
 * the matching core's events after it. The rules are written out in engine/risk.py and,
 * as plain Python, in engine/risk_reference.py; this file must agree with both.
 */
#include <stdint.h>
#include <string.h>
#include "matching.h"
#include "risk.h"

/* engine.commands values */
enum { K_ENTER = 'O', K_REPLACE = 'U' };
enum { S_BUY = 'B', S_SELL = 'S' };
enum { F_MARKET = 2 };
enum { E_ACCEPTED = 1, E_REJECTED = 2, E_TRADE = 3, E_CANCELED = 4, E_REPLACED = 5 };
enum { R_SIZE = 32, R_PRICE_BAND = 33, R_POSITION = 34, R_NOTIONAL = 35, R_RATE = 36,
       R_KILL_SWITCH = 37, R_OTHER = 38 };
/* engine.risk.RefMode */
enum { RISK_REF_LAST = 0, RISK_REF_MID = 1, RISK_REF_STATIC = 2 };
/* engine.risk counters */
enum { RISK_CTR_LIVE = 0, RISK_CTR_MAX_ORDERS = 1, RISK_CTR_UNTRACKED = 2 };

#define NANO 1000000000LL          /* one order's worth of bucket, in nano-orders */

/* ---- the order table: (client, token) -> symbol, side, open shares ------------------- *
 * An entry is LIVE (the core has the order) or PENDING (an ENTER passed risk in this
 * batch and awaits the core's verdict). A key has at most one entry of each kind: a
 * REPLACE earlier in the batch may give a live order the token of a pending ENTER,
 * which the core will then reject as a duplicate. */
enum { T_EMPTY = 0, T_LIVE = 1, T_PENDING = 2, T_ANY = 3 };

static uint64_t slot_of(uint32_t client, uint64_t token)
{
    uint64_t h = token ^ ((uint64_t)client * 0x9E3779B97F4A7C15ull);
    h ^= h >> 33;                  /* murmur3 finaliser: tokens are often sequential */
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

static int64_t find(const struct risk_state *st, uint32_t client, uint64_t token, uint8_t states)
{
    for (uint64_t i = slot_of(client, token) & st->mask;; i = (i + 1) & st->mask) {
        const struct risk_order *o = &st->table[i];
        if (o->state == T_EMPTY)
            return -1;
        if ((o->state & states) && o->token == token && o->client == client)
            return (int64_t)i;
    }
}

static int64_t insert(struct risk_state *st, uint8_t state, uint32_t client, uint64_t token,
                      uint16_t symbol, uint8_t side, uint32_t leaves)
{
    if (st->counters[RISK_CTR_LIVE] >= st->counters[RISK_CTR_MAX_ORDERS]) {
        st->counters[RISK_CTR_UNTRACKED]++;
        return -1;
    }
    uint64_t i = slot_of(client, token) & st->mask;
    while (st->table[i].state != T_EMPTY)
        i = (i + 1) & st->mask;
    st->table[i] = (struct risk_order){ .token = token, .client = client, .leaves = leaves,
                                        .symbol = symbol, .side = side, .state = state };
    st->counters[RISK_CTR_LIVE]++;
    return (int64_t)i;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void erase(struct risk_state *st, uint64_t i)
{
    st->table[i].state = T_EMPTY;
    for (uint64_t j = (i + 1) & st->mask; st->table[j].state != T_EMPTY; j = (j + 1) & st->mask) {
        uint64_t home = slot_of(st->table[j].client, st->table[j].token) & st->mask;
        /* move j back into the hole at i unless its home lies cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            st->table[i] = st->table[j];
            st->table[j].state = T_EMPTY;
            i = j;
        }
    }
    st->counters[RISK_CTR_LIVE]--;
}

/* ---- checks ------------------------------------------------------------------------- */

/* Twice the reference price (so a mid needs no rounding), 0 if there is none. */
static int64_t reference2(const struct risk_limits *lim, const struct risk_state *st,
                          uint16_t s, const int32_t *bid, const int32_t *ask)
{
    int64_t ref2 = 0;
    if (lim->ref_mode[s] == RISK_REF_LAST)
        ref2 = 2 * (int64_t)st->last_trade[s];
    else if (lim->ref_mode[s] == RISK_REF_MID && bid && ask && bid[s] > 0 && ask[s] > 0)
        ref2 = (int64_t)bid[s] + ask[s];
    return ref2 > 0 ? ref2 : 2 * (int64_t)lim->static_ref[s];
}

/* Take one order's worth from the client's bucket after refilling it up to cmd ts. */
static int take_token(const struct risk_limits *lim, struct risk_state *st, uint32_t c, uint64_t ts)
{
    int64_t rate = lim->rate[c];
    if (rate < 0)
        return 1;
    int64_t cap = lim->burst[c] * NANO;
    int64_t level = st->bucket[c] < cap ? st->bucket[c] : cap;
    if (ts > st->bucket_ts[c]) {
        uint64_t dt = ts - st->bucket_ts[c];
        int64_t room = cap - level;
        if (rate > 0 && room > 0)
            level = dt >= (uint64_t)((room + rate - 1) / rate) ? cap : level + (int64_t)dt * rate;
        st->bucket_ts[c] = ts;
    }
    int ok = level >= NANO;
    st->bucket[c] = ok ? level - NANO : level;
    return ok;
}

static uint8_t check_one(const struct risk_limits *lim, struct risk_state *st, const struct command *cmd,
                         const int32_t *bid, const int32_t *ask, struct risk_hold *h)
{
    uint32_t c = cmd->client;
    if (c >= lim->n_clients)
        return R_OTHER;
    if (st->global_kill[0] || st->client_kill[c])
        return R_KILL_SWITCH;
    if (!take_token(lim, st, c, cmd->ts))
        return R_RATE;

    uint16_t s;
    uint8_t side;
    int64_t add;                   /* shares the order adds to its side's open quantity */
    int64_t slot = -1;
    if (cmd->kind == K_ENTER) {
        if (cmd->symbol >= lim->n_symbols)
            return R_OTHER;
        s = cmd->symbol;
        side = cmd->side;
        add = cmd->qty;
        slot = find(st, c, cmd->token, T_ANY);
    } else {
        int64_t i = find(st, c, cmd->token, T_ANY);
        if (i < 0)
            return 0;              /* not live: the core rejects it as UNKNOWN_TOKEN */
        s = st->table[i].symbol;
        side = st->table[i].side;
        add = (int64_t)cmd->qty - st->table[i].leaves;
        if (add < 0)
            add = 0;
    }

    size_t cs = (size_t)c * lim->n_symbols + s;
    if ((int64_t)cmd->qty > lim->max_qty[cs])
        return R_SIZE;
    int market = cmd->kind == K_ENTER && (cmd->flags & F_MARKET);
    int64_t ref2 = reference2(lim, st, s, bid, ask);
    if (!market && lim->band_bps[s] >= 0 && ref2 > 0) {
        int64_t off = 2 * (int64_t)cmd->price - ref2;
        if (off < 0)
            off = -off;
        if (off * 10000 > (int64_t)lim->band_bps[s] * ref2)
            return R_PRICE_BAND;
    }
    __int128 price = market ? ref2 / 2 : cmd->price;
    if (price * cmd->qty * lim->lot[s] > (__int128)lim->max_notional[cs])
        return R_NOTIONAL;

    if (side != S_BUY && side != S_SELL)
        return 0;                  /* the core rejects it as INVALID_ORDER */
    if (add > 0) {
        if (side == S_BUY && st->position[cs] + st->open_buy[cs] + add > lim->long_limit[cs])
            return R_POSITION;
        if (side == S_SELL && st->position[cs] - st->open_sell[cs] - add < -lim->short_limit[cs])
            return R_POSITION;
    }
    if (cmd->kind == K_ENTER && slot < 0) {
        if (st->counters[RISK_CTR_LIVE] >= st->counters[RISK_CTR_MAX_ORDERS])
            return R_OTHER;        /* no room to follow one more order */
        insert(st, T_PENDING, c, cmd->token, s, side, cmd->qty);
        h->entered = 1;
    }
    (side == S_BUY ? st->open_buy : st->open_sell)[cs] += add;
    h->qty = add;
    h->symbol = s;
    h->side = side;
    return 0;
}

uint32_t risk_check(const struct risk_limits *lim, struct risk_state *st, void *cmds, uint32_t n,
                    const int32_t *bid, const int32_t *ask, struct risk_hold *holds)
{
    struct command *cmd = cmds;
    uint32_t rejected = 0;
    memset(holds, 0, (size_t)n * sizeof *holds);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t kind = cmd[i].kind;
        cmd[i].risk = kind == K_ENTER || kind == K_REPLACE
                    ? check_one(lim, st, &cmd[i], bid, ask, &holds[i]) : 0;
        rejected += cmd[i].risk != 0;
    }
    return rejected;
}

/* ---- settlement ---------------------------------------------------------------------- */

static int64_t *open_of(struct risk_state *st, uint8_t side, size_t cs)
{
    return &(side == S_BUY ? st->open_buy : st->open_sell)[cs];
}

/* An order's open shares fell by `qty` to `leaves`; a fill also moves the position. */
static void reduce(struct risk_state *st, uint32_t client, uint64_t token, uint32_t qty,
                   uint32_t leaves, int fill)
{
    int64_t i = find(st, client, token, T_LIVE);
    if (i < 0) {
        st->counters[RISK_CTR_UNTRACKED]++;
        return;
    }
    struct risk_order *o = &st->table[i];
    size_t cs = (size_t)client * st->n_symbols + o->symbol;
    *open_of(st, o->side, cs) -= qty;
    if (fill)
        st->position[cs] += o->side == S_BUY ? (int64_t)qty : -(int64_t)qty;
    o->leaves = leaves;
    if (leaves == 0)
        erase(st, (uint64_t)i);
}

void risk_apply(struct risk_state *st, const void *cmds, const struct risk_hold *holds,
                const void *events, uint32_t n_events)
{
    const struct command *cmd = cmds;
    const struct event *ev = events;
    for (uint32_t k = 0; k < n_events; k++) {
        const struct event *e = &ev[k];
        const struct command *c = &cmd[e->cmd];
        const struct risk_hold *h = &holds[e->cmd];
        switch (e->kind) {
        case E_ACCEPTED:
            if (h->entered) {
                int64_t i = find(st, e->client, e->token, T_PENDING);
                if (i >= 0)
                    st->table[i].state = T_LIVE;
                else
                    st->counters[RISK_CTR_UNTRACKED]++;
            } else if (e->client >= st->n_clients || e->symbol >= st->n_symbols) {
                st->counters[RISK_CTR_UNTRACKED]++;
            } else {               /* its token was taken at check time, and freed since */
                int64_t *open = open_of(st, e->side, (size_t)e->client * st->n_symbols + e->symbol);
                int tracked = insert(st, T_LIVE, e->client, e->token, e->symbol, e->side, e->qty) >= 0;
                *open += (tracked ? (int64_t)e->qty : 0) - h->qty;
            }
            break;
        case E_REJECTED:           /* release what check() reserved */
            if (h->entered) {
                int64_t i = find(st, c->client, c->token, T_PENDING);
                if (i >= 0)
                    erase(st, (uint64_t)i);
            }
            if (h->qty)
                *open_of(st, h->side, (size_t)c->client * st->n_symbols + h->symbol) -= h->qty;
            break;
        case E_TRADE:
            reduce(st, e->client, e->token, e->qty, e->leaves, 1);
            reduce(st, e->other_client, e->other_token, e->qty, e->other_leaves, 1);
            if (e->symbol < st->n_symbols)
                st->last_trade[e->symbol] = e->price;
            break;
        case E_CANCELED:
            reduce(st, e->client, e->token, e->qty, e->leaves, 0);
            break;
        case E_REPLACED: {
            int64_t i = find(st, e->client, e->other_token, T_LIVE);
            if (i < 0) {
                st->counters[RISK_CTR_UNTRACKED]++;
                break;
            }
            struct risk_order old = st->table[i];
            erase(st, (uint64_t)i);
            insert(st, T_LIVE, e->client, e->token, old.symbol, old.side, e->qty);
            *open_of(st, old.side, (size_t)e->client * st->n_symbols + old.symbol)
                += (int64_t)e->qty - old.leaves - h->qty;
            break;
        }
        default:                   /* book events repeat what the order events said */
            break;
        }
    }
}
