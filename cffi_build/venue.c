/* The venue's serialize stage: events -> OUCH 4.2 replies and ITCH 5.0 blocks (venue.h). */
#include <string.h>

#include "matching.h"
#include "venue.h"

/* engine.commands values used here */
enum { K_ENTER = 'O', K_REPLACE = 'U' };
enum { EV_ACCEPTED = 1, EV_REJECTED = 2, EV_TRADE = 3, EV_CANCELED = 4, EV_REPLACED = 5 };
enum { R_UNKNOWN_TOKEN = 7 };
enum { SIDE_BUY = 'B' };
#define NS_PER_DAY 86400000000000ULL

enum { K_CANCEL = 'X', TIF_DAY = 0, TIF_IOC = 1, F_POST_ONLY = 1, F_HIDDEN = 4 };
enum { R_UNKNOWN_SYMBOL = 1, R_INVALID_PRICE = 2, R_RISK_OTHER = 38 };

/* Inbound field offsets (engine.ouch INBOUND dtypes). */
enum { O_SIDE = 15, O_SHARES = 16, O_STOCK = 20, O_PRICE = 28, O_TIF = 32, O_FIRM = 36, O_DISPLAY = 40, O_CAPACITY = 41, O_ISE = 42, O_MIN_QTY = 43, O_CROSS = 47 };
enum { U_SHARES = 29, U_PRICE = 33, U_TIF = 37, U_DISPLAY = 41, U_ISE = 42, U_MIN_QTY = 43 };

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* big-endian stores: a byte swap and one unaligned store each */
static inline uint8_t *be16(uint8_t *p, uint16_t v) { v = __builtin_bswap16(v); memcpy(p, &v, 2); return p + 2; }
static inline uint8_t *be32(uint8_t *p, uint32_t v) { v = __builtin_bswap32(v); memcpy(p, &v, 4); return p + 4; }
static inline uint8_t *be48(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v << 16);    /* the low six bytes, most significant first */
    memcpy(p, &v, 6);
    return p + 6;
}
static inline uint8_t *be64(uint8_t *p, uint64_t v) { v = __builtin_bswap64(v); memcpy(p, &v, 8); return p + 8; }
static inline uint8_t *put(uint8_t *p, const uint8_t *src, size_t n) { memcpy(p, src, n); return p + n; }
static inline uint8_t *byte(uint8_t *p, uint8_t v) { *p = v; return p + 1; }

static inline const uint8_t *token(const struct venue_tables *t, uint64_t core_token)
{
    return t->token_bytes + 14 * core_token;
}

/* Accepted (A) and Replaced (U) share the order body. */
static uint8_t *order_body(uint8_t *p, const struct event *e, const struct venue_tables *t,
                           const uint8_t *msg, int enter)
{
    p = byte(p, e->side == SIDE_BUY ? 'B' : 'S');
    p = be32(p, e->qty);
    p = put(p, t->names + 8 * e->symbol, 8);
    p = be32(p, (uint32_t)((int64_t)e->price * t->tick[e->symbol]));
    p = put(p, msg + (enter ? O_TIF : U_TIF), 4);
    p = put(p, enter ? msg + O_FIRM : t->firms + 4 * e->client, 4);
    p = byte(p, msg[enter ? O_DISPLAY : U_DISPLAY]);
    p = be64(p, e->ref);
    p = byte(p, enter ? msg[O_CAPACITY] : 'A');
    p = byte(p, msg[enter ? O_ISE : U_ISE]);
    p = put(p, msg + (enter ? O_MIN_QTY : U_MIN_QTY), 4);
    p = byte(p, enter ? msg[O_CROSS] : 'N');
    return byte(p, 'L');
}

static inline uint64_t symbol_hash(uint64_t key)
{
    key *= 0x9e3779b97f4a7c15ull;
    return key ^ key >> 29;
}

void venue_symbol_table(const uint8_t *names, uint32_t n, uint64_t *keys, uint16_t *ids, uint64_t mask)
{
    for (uint32_t s = 0; s < n; s++) {
        uint64_t key;
        memcpy(&key, names + 8 * (size_t)s, 8);
        uint64_t i = symbol_hash(key) & mask;
        while (keys[i] && keys[i] != key)
            i = (i + 1) & mask;
        if (!keys[i]) {             /* the first of equal names wins, as in a scan */
            keys[i] = key;
            ids[i] = (uint16_t)s;
        }
    }
}

/* The symbol of an 8-byte stock name, n_symbols when none has it. */
static uint32_t symbol_of(const struct venue_tables *t, const uint8_t *stock, uint32_t n_symbols)
{
    uint64_t key;
    memcpy(&key, stock, 8);
    if (!key)
        return n_symbols;           /* no name is eight NULs: that key marks empty slots */
    for (uint64_t i = symbol_hash(key) & t->symbol_mask;; i = (i + 1) & t->symbol_mask) {
        if (t->symbol_keys[i] == key)
            return t->symbol_ids[i];
        if (!t->symbol_keys[i])
            return n_symbols;
    }
}

static void set_price(struct command *c, const uint8_t *wire, const struct venue_tables *t, uint8_t *v)
{
    int64_t price = get32(wire), tick = t->tick[c->symbol];
    int64_t ticks = price / tick;
    c->price = (int32_t)(ticks > INT32_MAX ? INT32_MAX : ticks);
    if ((price % tick != 0 || price <= 0) && *v == 0)
        *v = R_INVALID_PRICE;
}

static uint8_t order_flags(uint8_t display)
{
    return display == 'N' ? F_HIDDEN : display == 'P' ? F_POST_ONLY : 0;
}

void venue_commands(void *commands, uint32_t n, const uint8_t *msg_type, const uint32_t *msg_index,
                    const struct venue_tables *t, const uint8_t *cancels, uint32_t n_symbols,
                    const uint8_t *venue_firms, uint32_t n_firms, uint16_t *token_symbol,
                    uint8_t *client_firm, uint8_t *verdict)
{
    struct command *cmds = commands;
    for (uint32_t k = 0; k < n; k++) {
        if (msg_type[k] != K_ENTER)
            continue;
        struct command *c = &cmds[k];
        const uint8_t *m = t->enters + 49 * (size_t)msg_index[k];
        c->kind = K_ENTER;
        c->qty = get32(m + O_SHARES);
        c->side = m[O_SIDE] == 'B' ? 'B' : 'S';
        c->min_qty = get32(m + O_MIN_QTY);
        c->tif = get32(m + O_TIF) == 0 ? TIF_IOC : TIF_DAY;
        c->flags = order_flags(m[O_DISPLAY]);
        memcpy(client_firm + 4 * (size_t)c->client, m + O_FIRM, 4);
        uint32_t s = symbol_of(t, m + O_STOCK, n_symbols);
        uint8_t v = 0;
        if (s == n_symbols) {
            s = 0;
            v = R_UNKNOWN_SYMBOL;
        }
        uint32_t f = 0;
        while (f < n_firms && memcmp(m + O_FIRM, venue_firms + 4 * f, 4) != 0)
            f++;
        if (f == n_firms)
            v = R_RISK_OTHER;
        c->symbol = (uint16_t)s;
        token_symbol[c->token] = (uint16_t)s;
        set_price(c, m + O_PRICE, t, &v);
        verdict[k] = v;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (msg_type[k] != K_REPLACE)
            continue;
        struct command *c = &cmds[k];
        const uint8_t *m = t->replaces + 47 * (size_t)msg_index[k];
        c->kind = K_REPLACE;
        c->qty = get32(m + U_SHARES);
        c->tif = get32(m + U_TIF) == 0 ? TIF_IOC : TIF_DAY;
        c->flags = order_flags(m[U_DISPLAY]);
        c->symbol = token_symbol[c->token];
        token_symbol[c->new_token] = c->symbol;
        uint8_t v = 0;
        set_price(c, m + U_PRICE, t, &v);
        verdict[k] = v;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (msg_type[k] != K_CANCEL)
            continue;
        struct command *c = &cmds[k];
        c->kind = K_CANCEL;
        c->qty = get32(cancels + 19 * (size_t)msg_index[k] + 15);
        c->symbol = token_symbol[c->token];
        verdict[k] = 0;
    }
}

uint32_t venue_replies(const void *events, uint32_t n, const void *commands, const uint32_t *msg_index,
                       const struct venue_tables *t, uint8_t *out, uint32_t *pkt_client, uint32_t *pkt_len)
{
    const struct event *ev = events;
    const struct command *cmds = commands;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct event *e = &ev[i];
        const struct command *c = &cmds[e->cmd];
        uint64_t ts = e->ts % NS_PER_DAY;
        for (int side = 0; side < (e->kind == EV_TRADE ? 2 : 1); side++) {
            uint8_t *start = out, *p = out + 3;   /* 2-byte length + 'S', filled below */
            uint32_t client = e->client;
            switch (e->kind) {
            case EV_ACCEPTED:
                p = byte(p, 'A'); p = be64(p, ts); p = put(p, token(t, e->token), 14);
                p = order_body(p, e, t, t->enters + 49 * msg_index[e->cmd], 1);
                p = byte(p, ' ');
                break;
            case EV_REPLACED:
                p = byte(p, 'U'); p = be64(p, ts); p = put(p, token(t, e->token), 14);
                p = order_body(p, e, t, t->replaces + 47 * msg_index[e->cmd], 0);
                p = put(p, token(t, e->other_token), 14);
                p = byte(p, ' ');
                break;
            case EV_REJECTED:
                if (e->reason == R_UNKNOWN_TOKEN && c->kind != K_ENTER)
                    continue;
                p = byte(p, 'J'); p = be64(p, ts);
                p = put(p, token(t, c->kind == K_REPLACE ? c->new_token : c->token), 14);
                p = byte(p, t->reject_code[e->reason]);
                break;
            case EV_CANCELED:
                p = byte(p, 'C'); p = be64(p, ts); p = put(p, token(t, e->token), 14);
                p = be32(p, e->qty);
                p = byte(p, t->cancel_code[e->reason]);
                break;
            case EV_TRADE:
                if (side)
                    client = e->other_client;
                p = byte(p, 'E'); p = be64(p, ts);
                p = put(p, token(t, side ? e->other_token : e->token), 14);
                p = be32(p, e->qty);
                p = be32(p, (uint32_t)((int64_t)e->price * t->tick[e->symbol]));
                p = byte(p, side ? 'A' : 'R');
                p = be64(p, e->match);
                break;
            default:
                continue;   /* book events: the feed's */
            }
            be16(start, (uint16_t)(p - start - 2));
            start[2] = 'S';
            pkt_client[k] = client;
            pkt_len[k++] = (uint32_t)(p - start);
            out = p;
        }
    }
    return k;
}

size_t venue_itch(const void *events, uint32_t n, const struct venue_tables *t, uint8_t *out,
                  uint32_t *n_msgs)
{
    const struct event *ev = events;
    uint8_t *base = out;
    uint32_t count = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct event *e = &ev[i];
        uint8_t kind = e->kind;
        if (!(kind == 'A' || kind == 'E' || kind == 'X' || kind == 'D' || kind == 'U' || kind == 'P'))
            continue;
        uint8_t *start = out, *p = out + 2;
        uint32_t price = (uint32_t)((int64_t)e->price * t->tick[e->symbol]);
        p = byte(p, kind); p = be16(p, e->symbol); p = be16(p, 0); p = be48(p, e->ts % NS_PER_DAY);
        switch (kind) {
        case 'A': case 'P':
            p = be64(p, e->ref); p = byte(p, e->side == SIDE_BUY ? 'B' : 'S'); p = be32(p, e->qty);
            p = put(p, t->names + 8 * e->symbol, 8); p = be32(p, price);
            if (kind == 'P')
                p = be64(p, e->match);
            break;
        case 'E':
            p = be64(p, e->ref); p = be32(p, e->qty); p = be64(p, e->match);
            break;
        case 'X':
            p = be64(p, e->ref); p = be32(p, e->qty);
            break;
        case 'D':
            p = be64(p, e->ref);
            break;
        case 'U':
            p = be64(p, e->other_ref); p = be64(p, e->ref); p = be32(p, e->qty); p = be32(p, price);
            break;
        }
        be16(start, (uint16_t)(p - start - 2));
        out = p;
        count++;
    }
    *n_msgs = count;
    return (size_t)(out - base);
}
