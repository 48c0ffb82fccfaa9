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
