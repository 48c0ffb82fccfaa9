/* Declarations shared by moldudp64.c and its cffi build script (moldudp64_build.py). */
#include <stddef.h>
#include <stdint.h>

/* Reasons a downstream packet is refused, in the order of engine.moldudp64.Reject. */
enum {
    MOLD_R_TRUNCATED_HEADER,
    MOLD_R_COUNT_EXCEEDS_BLOCKS,
    MOLD_R_BLOCK_OVERRUN,
    MOLD_R_TRAILING_BYTES,
    MOLD_R_END_OF_SESSION_WITH_DATA,
    MOLD_R_COUNT
};

/* Packer errors (mold_pack returns -1 and sets *error to one of these). */
enum {
    MOLD_E_BLOCK_PAST_END = 1,      /* a block of the input stream runs past its end */
    MOLD_E_MESSAGE_TOO_LARGE = 2    /* a message cannot fit even an otherwise empty packet */
};

/* Decode n downstream packets lying in buf at off[i] for len[i] bytes. A good packet's
 * 20-byte header is copied to hdr + 20 i and status[i] = 0; a refused one leaves zeros
 * and status[i] = 1 + MOLD_R_*, counted in rejects. Each message of a good packet gets
 * msg_off (offset in buf), msg_len, msg_seq and msg_pkt (its packet); the arrays hold
 * sum(max(len - 20, 0)) / 2 + 1 entries. Returns the number of messages. */
uint32_t mold_scan(const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                   uint8_t *hdr, uint8_t *status, int64_t *msg_off, uint16_t *msg_len,
                   uint64_t *msg_seq, uint32_t *msg_pkt, uint32_t *rejects);

/* Cut a block stream (2-byte big-endian length + message, repeated) into downstream
 * packets of at most max_payload bytes, never splitting a message: header (session,
 * sequence of the first message, count) + whole blocks. Packets go back to back into out
 * (len + 20 * cap bytes) and are described by pkt_off/pkt_len/pkt_seq/pkt_count (cap
 * entries, cap = 2 len / (max_payload - 20) + 2). Returns the number of packets, or -1
 * with *error = MOLD_E_* and *error_index = the message (0-based) that broke it. */
int64_t mold_pack(const uint8_t *session, uint64_t first_seq, const uint8_t *stream, size_t len,
                  uint32_t max_payload, uint8_t *out, int64_t *pkt_off, uint32_t *pkt_len,
                  uint64_t *pkt_seq, uint16_t *pkt_count, int *error, uint64_t *error_index);

/* The feed's latest messages, for its re-request server: their blocks as sent (2-byte
 * big-endian length + message) in a ring of bytes, and where each block starts by
 * sequence number. Positions count every byte ever added; both capacities are powers of
 * two, and the oldest messages make room for new ones. The arrays are the caller's. */
struct mold_store {
    uint8_t *bytes;                 /* [bytes_mask + 1] */
    uint64_t *start;                /* [seq_mask + 1]: position of message seq's block */
    uint64_t bytes_mask, seq_mask;
    uint64_t first, next;           /* messages first .. next - 1 are held */
    uint64_t end;                   /* position after the newest block */
    /* Each asker's budget of answers (the generic cell rate algorithm: a token bucket
     * kept as one time). Askers' IPv4 addresses hash to the slots of due; askers that
     * share a slot share its budget. A slot's answer is due every interval_ns, and may
     * come up to burst_ns early: a burst of burst_ns / interval_ns + 1 answers, then one
     * every interval_ns. interval_ns 0: no limit. */
    uint64_t *due;                  /* [due_mask + 1]: ns */
    uint64_t due_mask, interval_ns, burst_ns;
    /* The same over all askers together, so that many addresses (forged ones too) draw
     * at most so much work and traffic from the venue. total_interval_ns 0: no limit. */
    uint64_t total_due, total_interval_ns, total_burst_ns;
};

/* Hold a block stream (len bytes, whole blocks, as mold_pack takes it) of messages
 * numbered from first_seq. A stream that does not follow the newest message held
 * restarts the store there. */
void mold_store_add(struct mold_store *s, uint64_t first_seq, const uint8_t *stream, size_t len);

/* What became of a request (engine.recovery.Verdict, in this order). */
enum { MOLD_Q_ANSWERED, MOLD_Q_MALFORMED, MOLD_Q_WRONG_SESSION, MOLD_Q_NOT_HELD, MOLD_Q_RATE_LIMITED,
       MOLD_Q_VENUE_LIMITED, MOLD_Q_N };

/* Answer a request packet (req_len bytes: session, sequence, count) for session from
 * asker (an IPv4 address) at now_ns: one downstream packet into out, of at most
 * max_payload bytes, with the requested messages the store holds from the requested
 * sequence number on, as many whole ones as fit, if the asker's budget and the venue's
 * allow. Returns its length, or 0 when nothing is sent; *verdict says which (MOLD_Q_*)
 * and *messages how many went. */
uint32_t mold_store_answer(struct mold_store *s, const uint8_t *session, const uint8_t *req, uint32_t req_len,
                           uint32_t asker, uint64_t now_ns, uint32_t max_payload, uint8_t *out, int *verdict,
                           uint32_t *messages);
