/* Declarations shared by ouch.c and its cffi build script (cffi_build/ouch_build.py). */
#include <stddef.h>
#include <stdint.h>

/* Reject reasons, in the order of engine.ouch.Reject. */
enum {
    OUCH_R_EMPTY_PACKET,
    OUCH_R_UNKNOWN_PACKET_TYPE,
    OUCH_R_UNKNOWN_MESSAGE_TYPE,
    OUCH_R_BAD_MESSAGE_LENGTH,
    OUCH_R_TRUNCATED_PACKET,
    OUCH_R_COUNT
};

/* Layout of the stats array ouch_scan fills (zeroed by the caller). */
enum {
    OUCH_STAT_COUNTS = 0,           /* [256] messages per type byte */
    OUCH_STAT_REJECTS = 256,        /* [OUCH_R_COUNT] drops per reason */
    OUCH_STAT_N_ORDER = 256 + OUCH_R_COUNT,
    OUCH_STAT_N_CTRL,
    OUCH_STAT_SIZE
};

/* Walk a buffer of SoupBinTCP packets. Data packets of type `data_type` whose OUCH
 * message has its spec length (msg_len[type], 0 = no such type) go to order_type /
 * order_off (offset of the message); the offsets of other SoupBinTCP packets go to
 * ctrl_off; the rest are counted as rejects. Output arrays hold len / 3 + 1 entries.
 * Returns the bytes consumed: an unfinished trailing packet is left unless `final`,
 * when it counts as truncated. */
size_t ouch_scan(const uint8_t *buf, size_t len, int final, uint8_t data_type,
                 const uint16_t *msg_len,
                 uint8_t *order_type, uint32_t *order_off, uint32_t *ctrl_off, uint32_t *stats);

/* Copy each scanned message into the record array of its type (dst[type], sized by the
 * per-type counts) and write its index there to order_index. */
void ouch_gather(const uint8_t *buf, const uint8_t *order_type, const uint32_t *order_off,
                 uint32_t n, const uint16_t *msg_len, uint8_t *const *dst,
                 uint32_t *order_index);

/* Frame records as SoupBinTCP packets of `packet_type`, in the given order. `out` holds
 * sum(msg_len + 3) bytes; indices are checked by the caller. Returns bytes written. */
size_t ouch_encode(uint8_t *out, uint8_t packet_type,
                   const uint8_t *const *src, const uint16_t *msg_len,
                   const uint8_t *const *alpha_mask,
                   const uint8_t *order_type, const uint32_t *order_index, uint32_t n);
