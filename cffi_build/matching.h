/* Matching kernel interface. Plain declarations only: this file is also the cffi cdef.
 *
 * struct command / struct event mirror engine.commands.COMMAND_DTYPE / EVENT_DTYPE field
 * for field; struct book holds pointers into the numpy arrays owned by engine.book.Book.
 */

struct command {
    uint64_t ts, token, new_token;
    int32_t price;
    uint32_t qty, min_qty, client, stp_group;
    uint16_t symbol;
    uint8_t kind, side, tif, flags, stp, risk;
};

struct event {
    uint64_t ts, ref, token, other_ref, other_token, match;
    int32_t price;
    uint32_t qty, leaves, other_leaves, client, other_client, cmd;
    uint16_t symbol;
    uint8_t kind, side, reason;
    uint8_t zero[7];     /* the dtype's tail padding, named so every write clears it */
};

/* One order of the pool (engine.book.ORDER_POOL_DTYPE): one cache line. */
struct order {
    uint64_t ref, token, ts;
    int32_t price, next, prev, level;   /* next/prev: FIFO links (next: free list) */
    uint32_t qty, client, group;
    uint32_t hash;                      /* of (client, token), for the token table */
    uint16_t symbol;
    uint8_t side, flags, stp;
};

/* One price level (engine.book.LEVEL_DTYPE). */
struct level {
    int32_t price, head, tail, next, prev;   /* next/prev: overflow list (next: free list) */
    uint32_t count;
    uint64_t qty;
};

/* (client, token) -> order slot, -1 = empty entry (engine.book.HASH_DTYPE). */
struct hash_entry {
    int32_t slot;
    uint32_t hash;
};

struct book {
    /* configuration */
    uint32_t symbols, pool_size, band_ticks, band_words, max_qty;
    uint32_t hash_mask;            /* token table size - 1 (a power of two >= 2 * pool) */
    int32_t *band_lo, *ref_price, *collar;          /* per symbol */
    int64_t *state;                /* counters, see S_* in matching.c / engine.book */
    /* per symbol and side (index symbol * 2 + side, side 0 = buy) */
    int32_t *best;                 /* level id of the best level, -1 = empty */
    int32_t *ovf_head;             /* outside-band levels, sorted best first */
    uint32_t *count;               /* resting orders */
    uint64_t *bitmap;              /* band_words words each: bit i = level at band_lo + i */
    struct level *levels;          /* symbols * 2 * band_ticks band levels, then overflow */
    struct order *orders;
    struct hash_entry *h_table;
};

/* Apply commands[0..n) in order, writing events into ev[0..cap). Stops before a command
 * whose worst-case events would not fit: returns the commands consumed, *n_events the
 * events written and *need the room the next command needs. tsc, if not NULL, receives
 * the TSC cycles each consumed command took. */
uint32_t match_run(struct book *b, const struct command *cmds, uint32_t n,
                   struct event *ev, uint32_t cap, uint32_t *n_events, uint32_t *need,
                   uint64_t *tsc);

/* Ask the CPU for the slot of the (client, token) table that match_run probes first for
 * each of commands[0..n): called before the risk checks, its misses overlap their work. */
void match_prefetch(const struct book *b, const struct command *cmds, uint32_t n);

/* The CPU's time stamp counter, to calibrate the per-command stamps against a clock. */
uint64_t match_tsc(void);

/* One order-book change from a market-data feed (engine.feed.FEED_OP_DTYPE): ITCH 5.0's
 * add ('A', 'F'), execute ('E', 'C'), cancel ('X'), delete ('D') and replace ('U').
 * ref is the feed's order reference (the original one for 'U'); qty is the shares added,
 * executed or canceled, or the replacement's shares. */
struct feed_op {
    uint64_t ref, new_ref, ts;
    int32_t price;
    uint32_t qty;
    uint16_t symbol;
    uint8_t kind, side;
    uint8_t zero[4];
};

/* Why an op was not applied as it stands (engine.feed.FEED_STATUS names them). */
enum feed_status {
    FEED_OK = 0, FEED_UNKNOWN_REF = 1, FEED_DUPLICATE_REF = 2, FEED_UNKNOWN_SYMBOL = 3,
    FEED_BAD_SIDE = 4, FEED_BAD_PRICE = 5, FEED_BAD_QTY = 6, FEED_OVER_REDUCE = 7,
    FEED_POOL_FULL = 8, FEED_LEVELS_FULL = 9, FEED_UNKNOWN_KIND = 10
};

/* Apply ops[0..n) in order to a book keyed by the feed's order references (client 0,
 * token = reference), resting orders where the feed says without matching them.
 * status[i] gets a feed_status; FEED_OVER_REDUCE still removes the order (the feed says
 * it is gone). Returns the ops that were not FEED_OK. */
uint32_t feed_apply(struct book *b, const struct feed_op *ops, uint32_t n, uint8_t *status);
