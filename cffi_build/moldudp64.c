/* MoldUDP64 per-packet loops for engine/moldudp64.py's bulk paths.
 *
 * Downstream packet: Session (10) + Sequence Number (8, big-endian) + Message Count
 * (2, big-endian; 0 heartbeat, 0xFFFF end of session) + Count message blocks, each a
 * 2-byte big-endian length and that many bytes.
 */
#include <stdint.h>
#include <string.h>

#include "moldudp64.h"

#define HEADER 20
#define END_OF_SESSION 0xFFFF
#define MAX_COUNT 0xFFFE

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

uint32_t mold_scan(const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                   uint8_t *hdr, uint8_t *status, int64_t *msg_off, uint16_t *msg_len,
                   uint64_t *msg_seq, uint32_t *msg_pkt, uint32_t *rejects)
{
    uint32_t nm = 0;

    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *p = buf + off[k];
        uint32_t plen = len[k];
        int reason = -1;
        uint32_t first = nm;

        if (plen < HEADER) {
            reason = MOLD_R_TRUNCATED_HEADER;
        } else {
            uint64_t seq = be64(p + 10);
            uint32_t count = be16(p + 18), pos = HEADER;
            if (count == END_OF_SESSION) {
                if (plen != HEADER)
                    reason = MOLD_R_END_OF_SESSION_WITH_DATA;
                count = 0;
            }
            for (uint32_t i = 0; reason < 0 && i < count; i++) {
                if (plen - pos < 2) {
                    reason = MOLD_R_COUNT_EXCEEDS_BLOCKS;
                    break;
                }
                uint16_t ml = be16(p + pos);
                if (plen - pos - 2 < ml) {
                    reason = MOLD_R_BLOCK_OVERRUN;
                    break;
                }
                msg_off[nm] = off[k] + pos + 2;
                msg_len[nm] = ml;
                msg_seq[nm] = seq + i;
                msg_pkt[nm] = k;
                nm++;
                pos += 2 + ml;
            }
            if (reason < 0 && pos != plen)
                reason = MOLD_R_TRAILING_BYTES;
        }
        if (reason >= 0) {
            nm = first;                     /* a refused packet gives no messages */
            rejects[reason]++;
            status[k] = (uint8_t)(1 + reason);
            memset(hdr + (size_t)k * HEADER, 0, HEADER);
        } else {
            status[k] = 0;
            memcpy(hdr + (size_t)k * HEADER, p, HEADER);
        }
    }
    return nm;
}

int64_t mold_pack(const uint8_t *session, uint64_t first_seq, const uint8_t *stream, size_t len,
                  uint32_t max_payload, uint8_t *out, int64_t *pkt_off, uint32_t *pkt_len,
                  uint64_t *pkt_seq, uint16_t *pkt_count, int *error, uint64_t *error_index)
{
    uint64_t room = max_payload - HEADER, seq = first_seq, index = 0;
    size_t pos = 0, o = 0;
    int64_t np = 0;

    while (pos < len) {
        /* one packet: take whole blocks while they fit */
        size_t start = pos;
        uint32_t count = 0;
        while (pos < len && count < MAX_COUNT) {
            if (len - pos < 2 || len - pos - 2 < be16(stream + pos)) {
                *error = MOLD_E_BLOCK_PAST_END;
                *error_index = index;
                return -1;
            }
            size_t block = 2 + (size_t)be16(stream + pos);
            if (block > room) {
                *error = MOLD_E_MESSAGE_TOO_LARGE;
                *error_index = index;
                return -1;
            }
            if (pos - start + block > room)
                break;
            pos += block;
            count++;
            index++;
        }
        memcpy(out + o, session, 10);
        put_be64(out + o + 10, seq);
        out[o + 18] = (uint8_t)(count >> 8);
        out[o + 19] = (uint8_t)count;
        memcpy(out + o + HEADER, stream + start, pos - start);
        pkt_off[np] = (int64_t)o;
        pkt_len[np] = (uint32_t)(HEADER + pos - start);
        pkt_seq[np] = seq;
        pkt_count[np] = (uint16_t)count;
        o += HEADER + pos - start;
        seq += count;
        np++;
    }
    return np;
}

/* ---- the re-request server's store (see moldudp64.h) --------------------------------- */

static void ring_put(struct mold_store *s, uint64_t pos, const uint8_t *src, size_t n)
{
    size_t at = pos & s->bytes_mask, first = s->bytes_mask + 1 - at;
    memcpy(s->bytes + at, src, n < first ? n : first);
    if (n > first)
        memcpy(s->bytes, src + first, n - first);
}

static void ring_get(const struct mold_store *s, uint64_t pos, uint8_t *dst, size_t n)
{
    size_t at = pos & s->bytes_mask, first = s->bytes_mask + 1 - at;
    memcpy(dst, s->bytes + at, n < first ? n : first);
    if (n > first)
        memcpy(dst + first, s->bytes, n - first);
}

static uint16_t ring_be16(const struct mold_store *s, uint64_t pos)
{
    return (uint16_t)(s->bytes[pos & s->bytes_mask] << 8 | s->bytes[(pos + 1) & s->bytes_mask]);
}

void mold_store_add(struct mold_store *s, uint64_t first_seq, const uint8_t *stream, size_t len)
{
    if (first_seq != s->next)
        s->first = s->next = first_seq;
    size_t pos = 0, cap = s->bytes_mask + 1;
    while (pos < len && len - pos > cap) {  /* only the newest blocks fit the ring */
        pos += 2 + (size_t)be16(stream + pos);
        s->first = ++s->next;
    }
    if (pos >= len)
        return;
    ring_put(s, s->end, stream + pos, len - pos);
    for (size_t b = pos; b + 2 <= len; b += 2 + (size_t)be16(stream + b))
        s->start[s->next++ & s->seq_mask] = s->end + (b - pos);
    s->end += len - pos;
    if (s->next - s->first > s->seq_mask + 1)
        s->first = s->next - (s->seq_mask + 1);
    while (s->end - s->start[s->first & s->seq_mask] > cap)
        s->first++;
}

/* One cell of the generic cell rate algorithm at now_ns: 1 and, in *then, its due after
 * one more answer if its budget has room for it, else 0. */
static int cell_allows(uint64_t *due, uint64_t interval_ns, uint64_t burst_ns, uint64_t now_ns, uint64_t *then)
{
    if (*due > now_ns + burst_ns + interval_ns)
        *due = now_ns;              /* further ahead than any budget reaches: the clock stepped back */
    uint64_t next = *due > now_ns ? *due : now_ns;
    *then = next + interval_ns;
    return !interval_ns || next - now_ns <= burst_ns;
}

/* Take one answer from asker's budget and the venue's at now_ns: MOLD_Q_ANSWERED, or the
 * budget that has none left (its own first; then neither is charged). */
static int take_budget(struct mold_store *s, uint32_t asker, uint64_t now_ns)
{
    uint64_t *mine = &s->due[(asker * 0x9e3779b97f4a7c15ull) >> 32 & s->due_mask];
    uint64_t mine_then, all_then;
    if (!cell_allows(mine, s->interval_ns, s->burst_ns, now_ns, &mine_then))
        return MOLD_Q_RATE_LIMITED;
    if (!cell_allows(&s->total_due, s->total_interval_ns, s->total_burst_ns, now_ns, &all_then))
        return MOLD_Q_VENUE_LIMITED;
    if (s->interval_ns)
        *mine = mine_then;
    if (s->total_interval_ns)
        s->total_due = all_then;
    return MOLD_Q_ANSWERED;
}

uint32_t mold_store_answer(struct mold_store *s, const uint8_t *session, const uint8_t *req, uint32_t req_len,
                           uint32_t asker, uint64_t now_ns, uint32_t max_payload, uint8_t *out, int *verdict,
                           uint32_t *messages)
{
    *messages = 0;
    uint64_t seq = req_len == HEADER ? be64(req + 10) : 0;
    uint32_t count = req_len == HEADER ? be16(req + 18) : 0;
    if (!count || count == END_OF_SESSION) {
        *verdict = MOLD_Q_MALFORMED;
        return 0;
    }
    if (memcmp(req, session, 10)) {
        *verdict = MOLD_Q_WRONG_SESSION;
        return 0;
    }
    if (seq < s->first || seq >= s->next) {
        *verdict = MOLD_Q_NOT_HELD;
        return 0;
    }
    if ((*verdict = take_budget(s, asker, now_ns)) != MOLD_Q_ANSWERED)
        return 0;
    uint32_t o = HEADER, n = 0;
    for (uint64_t q = seq; q < s->next && n < count; q++, n++) {
        uint64_t pos = s->start[q & s->seq_mask];
        size_t block = 2 + (size_t)ring_be16(s, pos);
        if (o + block > max_payload)
            break;
        ring_get(s, pos, out + o, block);
        o += (uint32_t)block;
    }
    memcpy(out, session, 10);
    put_be64(out + 10, seq);
    out[18] = (uint8_t)(n >> 8);
    out[19] = (uint8_t)n;
    *messages = n;
    return o;
}
