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
