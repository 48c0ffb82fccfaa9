/* ITCH 5.0 bulk kernels: messages <-> per-type wire-image arrays.
 *
 * Messages arrive either framed -- a run of messages each preceded by a 2-byte
 * big-endian length (MoldUDP64 message blocks, ITCH files) -- or as views: a
 * buffer plus each message's offset and length (what the MoldUDP64 decoder hands
 * over).  The per-type arrays are numpy structured arrays whose records are the
 * wire message byte for byte, so decoding is validation plus one fixed-size copy
 * per message: no field is swapped here.
 *
 * Decoding is two passes over the same messages: scan counts valid messages per
 * type (and rejects per reason) and lays the per-type arrays out back to back in
 * one block; gather copies each message into its row and records the arrival order.
 *
 * `lengths[t]` is the spec length of message type t (0 = not an ITCH 5.0 type); it
 * comes from engine/itch.py, the single place the spec is written down.  Order
 * records are packed 5-byte {uint8 type; uint32 row (native endian)}, the numpy
 * dtype of ItchBatch.order.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ITCH_ORDER_SIZE 5
#define ITCH_WIDE 64    /* every message fits one 64-byte move; see copy_message */

enum { REJECT_TRUNCATED, REJECT_LENGTH_MISMATCH, REJECT_UNKNOWN_TYPE, REJECT_EMPTY, REJECT_COUNT };

static inline size_t be16(const uint8_t *p) { return ((size_t)p[0] << 8) | p[1]; }

/* Copy one n-byte message.  When `readable` bytes from src and `writable` bytes at
 * dst allow it, one fixed 64-byte move: no branch on the message size to mispredict
 * (types arrive in random order), and the excess lands where a later row or the
 * slack goes.  Otherwise two overlapping fixed-size moves per length class. */
static inline void copy_message(uint8_t *dst, const uint8_t *src, size_t n, size_t readable, size_t writable)
{
    if (readable >= ITCH_WIDE && writable >= ITCH_WIDE) {
        memcpy(dst, src, ITCH_WIDE);
    } else if (n <= 16) {               /* 12 (S, W) */
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

/* Scan one non-empty message body: count it under its type, or its reject reason. */
static inline int64_t count_message(const uint8_t *p, size_t n, const uint8_t lengths[256],
                                    uint64_t counts[256], uint64_t rejects[REJECT_COUNT])
{
    size_t want = lengths[p[0]];
    if (want == n) { counts[p[0]]++; return 1; }
    rejects[want == 0 ? REJECT_UNKNOWN_TYPE : REJECT_LENGTH_MISMATCH]++;
    return 0;
}

/* Type t's rows start at byte offset[t] of one block of offset[256] bytes; each
 * present type's rows are followed by ITCH_WIDE bytes of slack for wide copies. */
static void layout(const uint8_t lengths[256], const uint64_t counts[256], uint64_t offset[257])
{
    offset[0] = 0;
    for (int t = 0; t < 256; t++)
        offset[t + 1] = offset[t] + (counts[t] ? counts[t] * lengths[t] + ITCH_WIDE : 0);
}

/* Where gather puts things; `fill` counts rows written per type so far. */
struct sink {
    const uint8_t *lengths;
    uint8_t *block;
    const uint64_t *offset, *capacity;
    uint8_t *order;
    uint64_t order_capacity, placed;
    uint64_t fill[256];
};

/* Gather one message body (`readable` bytes of input from p on) if valid.  Never
 * writes past a type's capacity (pass 1's count) or the order's, even if the input
 * changed between the passes. */
static inline int place_message(struct sink *s, const uint8_t *p, size_t n, size_t readable)
{
    if (n == 0)
        return 0;
    uint8_t type = p[0];
    if (s->lengths[type] != n || s->fill[type] >= s->capacity[type] || s->placed >= s->order_capacity)
        return 0;
    uint32_t row = (uint32_t)s->fill[type]++;
    copy_message(s->block + s->offset[type] + (size_t)row * n, p, n, readable, ITCH_WIDE);
    uint8_t *o = s->order + s->placed * ITCH_ORDER_SIZE;
    o[0] = type;
    memcpy(o + 1, &row, 4);
    s->placed++;
    return 1;
}

/* ---- framed: 2-byte big-endian length + message, repeated ------------------------
 * A zero length is an empty reject; a prefix or body running past the end of the
 * buffer is one truncated reject and ends the walk. */

int64_t itch_scan(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                  uint64_t counts[256], uint64_t offset[257], uint64_t rejects[REJECT_COUNT])
{
    size_t pos = 0;
    int64_t valid = 0;
    while (pos < len) {
        if (len - pos < 2) { rejects[REJECT_TRUNCATED]++; break; }
        size_t n = be16(buf + pos);
        pos += 2;
        if (n == 0) { rejects[REJECT_EMPTY]++; continue; }
        if (n > len - pos) { rejects[REJECT_TRUNCATED]++; break; }
        valid += count_message(buf + pos, n, lengths, counts, rejects);
        pos += n;
    }
    layout(lengths, counts, offset);
    return valid;
}

int64_t itch_gather(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                    uint8_t *block, const uint64_t offset[257], const uint64_t capacity[256],
                    uint8_t *order, uint64_t order_capacity)
{
    struct sink s = {lengths, block, offset, capacity, order, order_capacity, 0, {0}};
    size_t pos = 0;
    while (len - pos >= 2) {
        size_t n = be16(buf + pos);
        pos += 2;
        if (n > len - pos) break;
        place_message(&s, buf + pos, n, len - pos);
        pos += n;
    }
    return (int64_t)s.placed;
}

/* ---- views: message k is buf[off[k] .. off[k] + len[k]) ---------------------------
 * Views are independent: one lying outside the buffer is a truncated reject and the
 * walk goes on.  gather also records, per placed message, the index of its view. */

static inline int view_inside(size_t buf_len, int64_t off, size_t n)
{
    return off >= 0 && (uint64_t)off <= buf_len && n <= buf_len - (size_t)off;
}

int64_t itch_scan_views(const uint8_t *buf, size_t buf_len, const int64_t *off, const uint16_t *len,
                        uint64_t n_views, const uint8_t lengths[256],
                        uint64_t counts[256], uint64_t offset[257], uint64_t rejects[REJECT_COUNT])
{
    int64_t valid = 0;
    for (uint64_t k = 0; k < n_views; k++) {
        if (len[k] == 0) rejects[REJECT_EMPTY]++;
        else if (!view_inside(buf_len, off[k], len[k])) rejects[REJECT_TRUNCATED]++;
        else valid += count_message(buf + off[k], len[k], lengths, counts, rejects);
    }
    layout(lengths, counts, offset);
    return valid;
}

int64_t itch_gather_views(const uint8_t *buf, size_t buf_len, const int64_t *off, const uint16_t *len,
                          uint64_t n_views, const uint8_t lengths[256],
                          uint8_t *block, const uint64_t offset[257], const uint64_t capacity[256],
                          uint8_t *order, uint32_t *source, uint64_t order_capacity)
{
    struct sink s = {lengths, block, offset, capacity, order, order_capacity, 0, {0}};
    for (uint64_t k = 0; k < n_views; k++) {
        if (len[k] == 0 || !view_inside(buf_len, off[k], len[k])) continue;
        uint64_t at = s.placed;
        if (place_message(&s, buf + off[k], len[k], buf_len - (size_t)off[k])) source[at] = (uint32_t)k;
    }
    return (int64_t)s.placed;
}

/* ---- encode: for each order entry, the 2-byte length and the record's bytes --------
 * Every entry is checked (known type, row in range, the record's own type byte equal
 * to the entry's type, room in `out`).  Returns bytes written, or -(k + 1) when entry
 * k breaks a rule (nothing after it is written). */

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
        copy_message(out + pos + 2, rec, n, (counts[type] - row) * n, out_len - pos - 2);
        pos += n + 2;
    }
    return (int64_t)pos;
}
