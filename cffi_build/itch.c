/* ITCH 5.0 bulk framing kernels: length-prefixed messages <-> per-type wire-image arrays.
 *
 * A stream is a run of messages each preceded by a 2-byte big-endian length (the
 * MoldUDP64 message-block and ITCH-file framing).  The per-type arrays are numpy
 * structured arrays whose records are byte-for-byte the wire message, so decoding
 * is framing plus one fixed-size copy per message: no field is swapped here.
 *
 * `lengths[t]` is the spec length of message type t (0 = not an ITCH 5.0 type); it
 * comes from engine/itch.py, the single place the spec is written down.
 *
 * Order records are packed 5-byte {uint8 type; uint32 index (native endian)} to
 * match the numpy dtype of ItchBatch.order.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ITCH_ORDER_SIZE 5

enum { REJECT_TRUNCATED, REJECT_LENGTH_MISMATCH, REJECT_UNKNOWN_TYPE, REJECT_EMPTY, REJECT_COUNT };

static inline size_t be16(const uint8_t *p) { return ((size_t)p[0] << 8) | p[1]; }

/* Copy one message of a known type.  Constant-size copies per length class let the
 * compiler emit a few overlapping vector moves instead of a memcpy call. */
static inline void copy_message(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n <= 16) {                      /* 12 (S, W) and 16-byte types */
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n <= 32) {               /* 19 .. 31 */
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else {                            /* 35 .. 50 */
        memcpy(dst, src, 32);
        memcpy(dst + n - 32, src + n - 32, 32);
    }
}

/* Pass 1: walk the framing, count valid messages per type and rejects per reason.
 * A message is valid when its length prefix equals its type's spec length.  A body
 * running past the end of the buffer ends the walk (one truncated reject).
 * Returns the number of valid messages. */
int64_t itch_scan(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                  uint64_t counts[256], uint64_t rejects[REJECT_COUNT])
{
    size_t pos = 0;
    int64_t valid = 0;
    while (pos < len) {
        if (len - pos < 2) { rejects[REJECT_TRUNCATED]++; break; }
        size_t n = be16(buf + pos);
        pos += 2;
        if (n == 0) { rejects[REJECT_EMPTY]++; continue; }
        if (n > len - pos) { rejects[REJECT_TRUNCATED]++; break; }
        uint8_t type = buf[pos];
        size_t want = lengths[type];
        if (want == n) { counts[type]++; valid++; }
        else if (want == 0) rejects[REJECT_UNKNOWN_TYPE]++;
        else rejects[REJECT_LENGTH_MISMATCH]++;
        pos += n;
    }
    return valid;
}

/* Pass 2: the same walk, copying each valid message into row `fill[type]` of
 * `dst[type]` and appending {type, row} to `order`.  `capacity[type]` rows exist
 * (pass 1's counts); rows beyond it are never written even if the buffer changed.
 * Returns the number of messages placed. */
int64_t itch_gather(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                    uint8_t *const dst[256], const uint64_t capacity[256],
                    uint8_t *order, uint64_t order_capacity)
{
    uint64_t fill[256] = {0};
    size_t pos = 0;
    uint64_t placed = 0;
    while (len - pos >= 2) {
        size_t n = be16(buf + pos);
        pos += 2;
        if (n > len - pos) break;
        if (n == 0) continue;
        uint8_t type = buf[pos];
        if (lengths[type] == n && fill[type] < capacity[type] && placed < order_capacity) {
            uint32_t row = (uint32_t)fill[type]++;
            copy_message(dst[type] + (size_t)row * n, buf + pos, n);
            uint8_t *o = order + placed * ITCH_ORDER_SIZE;
            o[0] = type;
            memcpy(o + 1, &row, 4);
            placed++;
        }
        pos += n;
    }
    return (int64_t)placed;
}

/* Encode: for each order entry write the 2-byte length and the record's bytes.
 * Every entry is checked (known type, row in range, record's own type byte equal
 * to the entry's type, room in `out`).  Returns bytes written, or -(k + 1) when
 * entry k breaks a rule (nothing after it is written). */
int64_t itch_encode(const uint8_t *order, uint64_t n_order, const uint8_t lengths[256],
                    const uint8_t *const src[256], const uint64_t counts[256],
                    uint8_t *out, size_t out_len)
{
    size_t pos = 0;
    for (uint64_t k = 0; k < n_order; k++) {
        const uint8_t *o = order + k * ITCH_ORDER_SIZE;
        uint8_t type = o[0];
        uint32_t row;
        memcpy(&row, o + 1, 4);
        size_t n = lengths[type];
        if (n == 0 || row >= counts[type] || out_len - pos < n + 2) return -(int64_t)(k + 1);
        const uint8_t *rec = src[type] + (size_t)row * n;
        if (rec[0] != type) return -(int64_t)(k + 1);
        out[pos] = (uint8_t)(n >> 8);
        out[pos + 1] = (uint8_t)n;
        copy_message(out + pos + 2, rec, n);
        pos += n + 2;
    }
    return (int64_t)pos;
}
