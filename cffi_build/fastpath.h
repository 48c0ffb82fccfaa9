/* Declarations shared by fastpath.c and its cffi build script (cffi_build/fastpath_build.py).
 *
 * The venue's whole walk for one received burst in one C call: stack -> OUCH -> clients
 * and tokens -> command fields -> risk check -> matching -> risk settle -> OUCH replies
 * and ITCH/MoldUDP64 -> UDP frames (-> AF_XDP TX in fp_poll). It calls the same C
 * functions engine/venue.py calls one by one, in the same order, so its frames are those
 * of the Python pipeline byte for byte (tests/test_venue_fastpath.py). Clients and
 * tokens live in C tables here; the fast path runs without a journal.
 */
#include <stddef.h>
#include <stdint.h>

enum {                              /* slots of fp_venue.counts */
    FP_RX_FRAMES, FP_DATAGRAMS, FP_MESSAGES, FP_COMMANDS, FP_FILLS, FP_ACCEPTED, FP_REPLIES,
    FP_FEED_MESSAGES, FP_TX_FRAMES, FP_TX_RING_FULL,
    FP_DROP_SOUP_CONTROL, FP_DROP_UNSUPPORTED, FP_DROP_TOO_MANY_CLIENTS,
    FP_DROP_OUCH_REJECT,            /* + OUCH_R_* (5 slots) */
    FP_N_COUNTS = FP_DROP_OUCH_REJECT + 5
};

enum { FP_STAMPS = 9 };             /* per burst in fp_poll: 6 TSC hops, frames, commands, RX TSC */

struct fp_venue {
    /* set once by engine/venue.py: addresses of the other modules' structs and arrays */
    void *stack_cfg;                /* struct stk_config of the venue's Stack */
    const uint8_t *bound;           /* its [65536] bound UDP ports */
    uint64_t *stack_counts;         /* its per-verdict counters */
    void *book;                     /* the Matcher's struct book */
    const void *risk_limits;        /* the RiskEngine's active struct risk_limits */
    void *risk_state;               /* its struct risk_state */
    int mid_reference;              /* some symbol's band centres on the mid: pass bid/ask */
    const int64_t *tick;            /* per symbol */
    const uint8_t *names;           /* per symbol, 8 bytes */
    uint32_t n_symbols, n_firms;
    const uint8_t *venue_firms;     /* 4 bytes each */
    const uint8_t *reject_code, *cancel_code;
    uint32_t *client_ip;            /* per client id (max_clients) */
    uint16_t *client_port;
    uint8_t *client_mac;            /* 6 bytes each */
    uint8_t *client_firm;           /* 4 bytes each */
    uint32_t max_clients, next_client;
    uint64_t next_token;
    uint16_t order_port, feed_port;
    uint32_t feed_ip, feed_max_payload, reply_payload;
    uint8_t feed_session[10];
    uint64_t feed_seq;              /* next MoldUDP64 sequence number */
    int64_t counts[FP_N_COUNTS];
    int64_t rejects[256];           /* commands rejected, by RejectReason */
    /* the last fp_burst's output: stack replies, then the venue's frames, to send in order */
    uint8_t *reply_buf;
    int64_t *reply_off;
    uint32_t *reply_len;
    uint32_t n_replies;
    uint8_t *out_buf;
    int64_t *out_off;
    uint32_t *out_len;
    uint32_t n_out;
    void *priv;                     /* fastpath.c's own tables and scratch */
};

/* A venue context with empty client and token tables; fp_free releases it. NULL: no memory. */
struct fp_venue *fp_new(uint32_t max_burst);
void fp_free(struct fp_venue *v);

/* One received burst (frames at buf + off[i], len[i] bytes) through the whole walk.
 * Commands get timestamp now_ns. stamps[0..4] get the TSC at the first five hops (the
 * caller stamps tx_submitted). Output frames are left in reply_* and out_* for the caller
 * to send. Returns the number of commands (0: no telemetry to record), -1: out of memory. */
int64_t fp_burst(struct fp_venue *v, const uint8_t *buf, const int64_t *off, const uint32_t *len,
                 uint32_t n, uint64_t now_ns, uint64_t *stamps);

/* Poll an AF_XDP port (xdp_api.h: api, xsk from XdpPort.c_api(), frames in umem) until max_bursts bursts
 * carried frames or the TSC passes until_tsc, running fp_burst on each and sending its
 * frames; command timestamps from CLOCK_REALTIME. For each burst with commands, stamps
 * gets FP_STAMPS values (6 hops, frames, commands, the
 * port's RX stamp). Returns the bursts recorded, or -1. */
int64_t fp_poll(struct fp_venue *v, const void *api, void *xsk, const uint8_t *umem, uint32_t burst_size, uint32_t max_bursts,
                uint64_t until_tsc, uint64_t *stamps, uint64_t *frames_seen);

uint64_t fp_tsc(void);
