/* OUCH 4.2 over SoupBinTCP: the per-message loops of engine/ouch.py's bulk paths.
 *
 * A SoupBinTCP packet is length (2, big-endian, counts type + payload) + type (1) +
 * payload; a data packet ('U' client->server, 'S' server->client) carries exactly one
 * OUCH message. The message layouts live in Python (numpy dtypes that are the wire
 * image); C only needs each type's length, so it copies whole records.
 */
#include <stdint.h>
#include <string.h>

#include "ouch.h"

static int is_soup_type(uint8_t t)
{
    switch (t) {
    case '+': case 'A': case 'J': case 'S': case 'H':
    case 'Z': case 'L': case 'U': case 'R': case 'O':
        return 1;
    default:
        return 0;
    }
}

size_t ouch_scan(const uint8_t *buf, size_t len, int final, uint8_t data_type,
                 const uint16_t *msg_len,
                 uint8_t *order_type, uint32_t *order_off, uint32_t *ctrl_off, uint32_t *stats)
{
    uint32_t *counts = stats + OUCH_STAT_COUNTS, *rejects = stats + OUCH_STAT_REJECTS;
    uint32_t no = 0, nc = 0;
    size_t pos = 0;

    while (len - pos >= 2) {
        uint32_t length = (uint32_t)buf[pos] << 8 | buf[pos + 1];
        if (length == 0) {
            rejects[OUCH_R_EMPTY_PACKET]++;
            pos += 2;
            continue;
        }
        if (len - pos - 2 < length)
            break;                                  /* rest of the packet not here yet */
        uint8_t ptype = buf[pos + 2];
        if (!is_soup_type(ptype)) {
            rejects[OUCH_R_UNKNOWN_PACKET_TYPE]++;
        } else if (ptype != data_type) {
            ctrl_off[nc++] = (uint32_t)pos;
        } else if (length == 1 || msg_len[buf[pos + 3]] == 0) {
            rejects[OUCH_R_UNKNOWN_MESSAGE_TYPE]++;
        } else if (msg_len[buf[pos + 3]] != length - 1) {
            rejects[OUCH_R_BAD_MESSAGE_LENGTH]++;
        } else {
            order_type[no] = buf[pos + 3];
            order_off[no] = (uint32_t)(pos + 3);
            counts[buf[pos + 3]]++;
            no++;
        }
        pos += 2 + length;
    }
    if (final && pos < len) {
        rejects[OUCH_R_TRUNCATED_PACKET]++;
        pos = len;
    }
    stats[OUCH_STAT_N_ORDER] = no;
    stats[OUCH_STAT_N_CTRL] = nc;
    return pos;
}

void ouch_gather(const uint8_t *buf, const uint8_t *order_type, const uint32_t *order_off,
                 uint32_t n, const uint16_t *msg_len, uint8_t *const *dst,
                 uint32_t *order_index)
{
    uint32_t next[256] = {0};

    for (uint32_t k = 0; k < n; k++) {
        uint8_t t = order_type[k];
        uint32_t i = next[t]++;
        memcpy(dst[t] + (size_t)i * msg_len[t], buf + order_off[k], msg_len[t]);
        order_index[k] = i;
    }
}

/* Copy one record behind its packet header; alpha bytes left NUL by numpy become spaces
 * (mask[b] is 1 on alpha bytes). Branch-free and restrict so the loop vectorises. */
static inline void put_record(uint8_t *restrict dst, const uint8_t *restrict rec,
                              const uint8_t *restrict mask, size_t len)
{
    for (size_t b = 0; b < len; b++)
        dst[b] = (uint8_t)(rec[b] | (((rec[b] == 0) & mask[b]) * ' '));
}

size_t ouch_encode(uint8_t *out, uint8_t packet_type,
                   const uint8_t *const *src, const uint16_t *msg_len,
                   const uint8_t *const *alpha_mask,
                   const uint8_t *order_type, const uint32_t *order_index, uint32_t n)
{
    uint8_t *p = out;

    for (uint32_t k = 0; k < n; k++) {
        uint8_t t = order_type[k];
        uint16_t ml = msg_len[t];
        uint16_t plen = (uint16_t)(ml + 1);

        p[0] = (uint8_t)(plen >> 8);
        p[1] = (uint8_t)plen;
        p[2] = packet_type;
        put_record(p + 3, src[t] + (size_t)order_index[k] * ml, alpha_mask[t], ml);
        p[3] = t;                                   /* the type byte comes from the key */
        p += 3 + ml;
    }
    return (size_t)(p - out);
}
