/* Declarations shared by venue.c and its cffi build script (cffi_build/venue_build.py).
 *
 * The venue's serialize stage: the matching core's events (struct event, matching.h)
 * straight to wire bytes. OUCH 4.2 replies as SoupBinTCP 'S' packets and ITCH 5.0
 * messages as a MoldUDP64 block stream (2-byte length + message), field for field as
 * engine/ouch.py and engine/itch.py lay them out; engine/venue.py holds the numpy
 * reference these loops are tested against.
 */
#include <stddef.h>
#include <stdint.h>

/* What the replies need besides the events; arrays indexed as named. */
struct venue_tables {
    const int64_t *tick;          /* per symbol: Price(4) units per core tick */
    const uint8_t *names;         /* per symbol: 8-byte space-padded stock */
    const uint8_t *token_bytes;   /* per core token: the client's 14-byte OUCH token */
    const uint8_t *firms;         /* per client: 4-byte firm of its last Enter */
    const uint8_t *reject_code;   /* [256] RejectReason -> OUCH reject reason byte */
    const uint8_t *cancel_code;   /* [256] CancelReason -> OUCH cancel reason byte */
    const uint8_t *enters;        /* the batch's Enter Order messages (49 bytes each) */
    const uint8_t *replaces;      /* the batch's Replace Order messages (47 bytes each) */
    /* stock name -> symbol, open addressing (venue_symbol_table) */
    const uint64_t *symbol_keys;  /* [symbol_mask + 1] the 8 name bytes, 0 = empty slot */
    const uint16_t *symbol_ids;   /* [symbol_mask + 1] */
    uint64_t symbol_mask;         /* a power of two, at least 2 * n_symbols, minus one */
};

/* Fill the lookup table of n names (8 bytes each) into keys and ids (mask + 1 zeroed
 * slots each), for venue_tables.symbol_*. */
void venue_symbol_table(const uint8_t *names, uint32_t n, uint64_t *keys, uint16_t *ids, uint64_t mask);

/* Fill the batch's commands from their OUCH messages (cmd k is message msg_index[k] of
 * type msg_type[k]: 'O' in t->enters, 'U' in t->replaces, 'X' in cancels); ts, client,
 * token and new_token are set already. Symbols by stock name, prices to ticks; a
 * verdict per command: UNKNOWN_SYMBOL, RISK_OTHER (firm not in venue_firms) or
 * INVALID_PRICE (not a positive multiple of the tick), else 0. Keeps token_symbol
 * (per core token) and client_firm (per client) up to date. Passes: enters, replaces,
 * cancels, as the numpy reference does. */
void venue_commands(void *commands, uint32_t n, const uint8_t *msg_type, const uint32_t *msg_index,
                    const struct venue_tables *t, const uint8_t *cancels, uint32_t n_symbols,
                    const uint8_t *venue_firms, uint32_t n_firms, uint16_t *token_symbol,
                    uint8_t *client_firm, uint8_t *verdict);

/* One SoupBinTCP 'S' packet per reply, in event order (TRADE: taker, then maker); a
 * REJECTED with reason UNKNOWN_TOKEN for a cancel or replace is not answered (OUCH 4.2).
 * msg_index[cmd] is the command's row in enters/replaces. Writes pkt_client/pkt_len per
 * packet; `out` holds 83 bytes per reply at most. Returns the number of packets. */
uint32_t venue_replies(const void *events, uint32_t n, const void *commands, const uint32_t *msg_index,
                       const struct venue_tables *t, uint8_t *out, uint32_t *pkt_client, uint32_t *pkt_len);

/* The book events (ITCH A, E, X, D, U, P) as a block stream, in event order; `out`
 * holds 46 bytes per event at most. Returns bytes written and the count in *n_msgs. */
size_t venue_itch(const void *events, uint32_t n, const struct venue_tables *t, uint8_t *out,
                  uint32_t *n_msgs);
