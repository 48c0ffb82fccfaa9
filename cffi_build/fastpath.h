/* Declarations shared by fastpath.c and its cffi build script (cffi_build/fastpath_build.py).
 *
 * The venue's whole walk for one received burst in one C call: stack -> OUCH -> clients
 * and tokens -> command fields -> risk check -> matching -> OUCH replies and ITCH/MoldUDP64
 * -> UDP frames (-> AF_XDP TX in fp_poll). What the frames do not need waits until they
 * are sent: risk settling and the feed's messages into the re-request server's store
 * (fp_settle), then the answers to the burst's MoldUDP64 re-requests (fp_answer). It
 * calls the same C
 * functions engine/venue.py calls one by one, in the same order (but for those left until
 * after the send), so its frames are those
 * of the Python pipeline byte for byte (tests/test_venue_fastpath.py). Clients and
 * tokens live in C tables here. With a journal (jnl_fd >= 0) each burst's new clients and
 * tokens, then its commands, are written in engine/journal.py's record format (CRC-32C)
 * before any of its frames is submitted: nothing reaches the wire unjournaled.
 */
#include <stddef.h>
#include <stdint.h>

enum {                              /* slots of fp_venue.counts */
    FP_RX_FRAMES, FP_DATAGRAMS, FP_MESSAGES, FP_COMMANDS, FP_FILLS, FP_ACCEPTED, FP_REPLIES,
    FP_FEED_MESSAGES, FP_TX_FRAMES, FP_TX_RING_FULL,
    FP_DROP_SOUP_CONTROL, FP_DROP_UNSUPPORTED, FP_DROP_TOO_MANY_CLIENTS,
    FP_DROP_OUCH_REJECT,            /* + OUCH_R_* (5 slots) */
    FP_RETRANSMITTED = FP_DROP_OUCH_REJECT + 5,    /* feed messages sent again on request */
    FP_REQUESTS,                    /* + MOLD_Q_* (6 slots): re-requests by verdict */
    /* fp_poll's turns that came more than stall_cycles after the one before (the machine
     * took the CPU from the loop): how many, their cycles in all, and the longest (a
     * maximum, not a sum) */
    FP_STALLS = FP_REQUESTS + 6, FP_STALLED_CYCLES, FP_LONGEST_STALL,
    FP_N_COUNTS
};

/* TSC hops of a burst (engine.telemetry.HOPS): fp_burst stamps the first six, fp_poll the
 * TX ones. TX submit = descriptors published on the TX ring; TX completion = after the
 * kick that has the kernel send them (in copy mode the sendto() transmits). */
enum { FP_POLL, FP_PARSED, FP_VALIDATED, FP_MATCHED, FP_SERIALIZED, FP_JOURNALED, FP_TX_SUBMITTED,
       FP_TX_COMPLETED, FP_HOPS };
/* per burst in fp_poll: the hops, frames, commands, the first frame's RX stamp and its clock
 * (xdp_api.h NX_TS_*: TSC cycles at poll, the XDP program's CLOCK_TAI ns, the NIC's ns) */
enum { FP_STAMPS = FP_HOPS + 4 };
enum { FP_ERR_MEMORY = -1, FP_ERR_JOURNAL = -2 };

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
    const uint64_t *symbol_keys;    /* name -> symbol table (venue.h struct venue_tables) */
    const uint16_t *symbol_ids;
    uint64_t symbol_mask;
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
    /* the re-request server (engine.recovery): its struct mold_store, which the feed's
     * messages are added to, and its UDP port; NULL: none */
    void *recovery;
    uint16_t recovery_port;
    /* fp_poll's command timestamps: this struct netio_clock (tsc_clock.h, a CLOCK_REALTIME
     * model) applied to the poll's TSC reading; NULL: clock_gettime(CLOCK_REALTIME) */
    const void *clock;
    uint64_t stall_cycles;          /* fp_poll counts gaps longer than this (0: none) */
    int64_t counts[FP_N_COUNTS];
    int64_t rejects[256];           /* commands rejected, by RejectReason */
    /* the journals (engine.journal, FlushPolicy.BATCH): -1 = none; next sequence numbers;
     * errno of a failed write (the burst is then not sent) */
    int jnl_fd, sessions_fd;
    uint64_t jnl_seq, sessions_seq;
    int jnl_errno;
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

/* One received burst (frames at buf + off[i], len[i] bytes) through the whole walk,
 * journaled. Commands get timestamp now_ns. stamps[FP_POLL..FP_JOURNALED] get the TSC at
 * those hops (the caller stamps the TX ones). Output frames are left in reply_* and out_*
 * for the caller to send. Returns the number of commands (0: no telemetry to record),
 * FP_ERR_MEMORY, or FP_ERR_JOURNAL (jnl_errno says why; send nothing). */
int64_t fp_burst(struct fp_venue *v, const uint8_t *buf, const int64_t *off, const uint32_t *len,
                 uint32_t n, uint64_t now_ns, uint64_t *stamps);

/* What the last fp_burst's frames do not wait for, to do once they are sent and before
 * the next burst: risk settles from its events, and its feed messages go into the
 * re-request server's store. fp_poll calls it after the kick; fp_burst calls it first
 * when the caller has not. */
void fp_settle(struct fp_venue *v);

/* Answer the last fp_burst's requests to the re-request server (their payloads in buf,
 * the burst's frames) from the feed's store, one packet each to its sender, as frames in
 * out_* (replacing the burst's, which must be sent first). Returns the frames, or
 * FP_ERR_MEMORY. fp_poll sends them after the burst's own. */
int64_t fp_answer(struct fp_venue *v, const uint8_t *buf);

/* Poll an AF_XDP port (xdp_api.h: api, xsk from XdpPort.c_api(), frames in umem) until
 * max_bursts bursts carried commands or the TSC passes until_tsc, running fp_burst on each
 * and sending its frames (submit, then kick); command timestamps in CLOCK_REALTIME (see
 * fp_venue.clock). For each burst with commands, stamps gets FP_STAMPS values (the hops,
 * frames, commands, the port's RX stamp and its clock). Idle turns of the loop more than
 * stall_cycles apart are counted as stalls (FP_STALLS): the machine took the CPU, or a
 * wakeup syscall of the port's took that long. A stall inside a burst's walk is not
 * counted; it shows in that burst's latency. Returns the bursts recorded, or an FP_ERR_*. */
int64_t fp_poll(struct fp_venue *v, const void *api, void *xsk, const uint8_t *umem, uint32_t burst_size, uint32_t max_bursts,
                uint64_t until_tsc, uint64_t *stamps, uint64_t *frames_seen);

/* fp_poll on a thread of its own, until fp_stop: the loop never hands the CPU back to
 * Python, whose turn once a second held every order that arrived meanwhile (a millisecond
 * and more) and left the caches cold for the next. Each burst with commands puts its
 * FP_STAMPS values in a ring of ring_bursts slots (a power of two) that fp_drain empties;
 * when the ring is full the stamps are dropped and counted, the burst is not held. The
 * thread checks for fp_stop every check_cycles, and when nothing went out on the feed for
 * heartbeat_cycles it sends a MoldUDP64 heartbeat (0 = never). The thread runs on the
 * CPUs of the caller. NULL: no memory or no thread (errno says which). */
struct fp_runner;
struct fp_runner *fp_start(struct fp_venue *v, const void *api, void *xsk, const uint8_t *umem, uint32_t burst_size,
                           uint32_t ring_bursts, uint64_t check_cycles, uint64_t heartbeat_cycles);

/* Up to max bursts' stamps from the ring (oldest first) into stamps; *frames_seen gets the
 * frames received since the last call, *lost the bursts whose stamps the full ring dropped
 * so far, *heartbeats the heartbeats sent so far. Returns the bursts copied, or the
 * FP_ERR_* that ended the thread (what was in the ring is still drained first). */
int64_t fp_drain(struct fp_runner *r, uint64_t *stamps, uint32_t max, uint64_t *frames_seen, uint64_t *lost,
                 uint64_t *heartbeats);

/* Stop the thread, wait for it, free r. Returns 0 or the FP_ERR_* that had ended it. */
int64_t fp_stop(struct fp_runner *r);

/* Clients and tokens a venue recovered from its journal, into the C tables: n_clients
 * (ip, port, id); n_tokens (client, 14-byte token, core token); and per core token
 * 0..n_core_tokens its 14 bytes and symbol. 0, or -1: no memory. */
int fp_restore(struct fp_venue *v, uint32_t n_clients, const uint32_t *ip, const uint16_t *port,
               const uint32_t *id, uint32_t n_tokens, const uint32_t *client, const uint8_t *token,
               const uint64_t *core_token, const uint8_t *token_bytes, const uint16_t *token_symbol,
               uint64_t n_core_tokens);

uint64_t fp_tsc(void);

/* Lock every page of the process in RAM, those mapped now and those mapped later
 * (mlockall MCL_CURRENT | MCL_FUTURE): 0, or the errno of the refusal. */
int fp_lock_memory(void);
int fp_unlock_memory(void);         /* munlockall: 0, or errno */

/* The pages of [addr, addr + len) (2 MB aligned) moved onto 2 MB pages now
 * (madvise MADV_COLLAPSE): 0, or errno. */
int fp_collapse(void *addr, uint64_t len);
