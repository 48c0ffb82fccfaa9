/* Pre-trade risk interface. Plain declarations only: this file is also the cffi cdef.
 *
 * All arrays are numpy arrays owned by engine.risk.RiskEngine; per (client, symbol)
 * arrays are indexed client * n_symbols + symbol.
 */

struct risk_limits {               /* swapped whole between batches, never edited in place */
    uint32_t n_clients, n_symbols;
    const int64_t *max_qty, *max_notional, *long_limit, *short_limit;  /* [client][symbol] */
    const int64_t *lot;            /* [symbol] notional = price ticks * qty * lot */
    const int32_t *band_bps;       /* [symbol] price band half-width, < 0 = no band */
    const int32_t *static_ref;     /* [symbol] static reference price, 0 = none */
    const uint8_t *ref_mode;       /* [symbol] RISK_REF_* */
    const int64_t *rate;           /* [client] orders per second, < 0 = unlimited */
    const int64_t *burst;          /* [client] token bucket depth (orders) */
};

/* One order risk follows, a slot of the (client, token) table: 24 bytes, one probe. */
struct risk_order {
    uint64_t token;
    uint32_t client, leaves;       /* leaves: open shares */
    uint16_t symbol;
    uint8_t side, state;           /* state: 0 empty, 1 live, 2 pending (see risk.c) */
    uint32_t pad;
};

struct risk_state {
    uint32_t n_clients, n_symbols;
    int64_t *position, *open_buy, *open_sell;      /* [client][symbol] shares */
    int32_t *last_trade;                           /* [symbol] 0 = no trade yet */
    int64_t *bucket;                               /* [client] nano-orders in the bucket */
    uint64_t *bucket_ts;                           /* [client] ts of the last refill */
    const uint8_t *client_kill;                    /* [client] */
    const uint8_t *global_kill;                    /* [1] */
    struct risk_order *table;                      /* linear probing, mask = size - 1 */
    uint64_t mask;
    int64_t *counters;                             /* RISK_CTR_* */
};

/* What check() reserved for one command, for apply() to settle. */
struct risk_hold {
    int64_t qty;                   /* shares added to open buy/sell at check time */
    uint16_t symbol;
    uint8_t side;
    uint8_t entered;               /* an ENTER whose order was put in the table at check time */
    uint32_t pad;
};

/* Check commands in order, writing each verdict (0 or a RejectReason) into its `risk`
 * field and its reservation into holds[i]. bid/ask: best prices per symbol at the start
 * of the batch (0 = empty side), may be NULL. Returns the number rejected. */
uint32_t risk_check(const struct risk_limits *lim, struct risk_state *st, void *cmds, uint32_t n,
                    const int32_t *bid, const int32_t *ask, struct risk_hold *holds);

/* Settle a batch: the matching core's events for the same commands update open
 * quantities, positions, last trade prices and the order table. */
void risk_apply(struct risk_state *st, const void *cmds, const struct risk_hold *holds,
                const void *events, uint32_t n_events);
