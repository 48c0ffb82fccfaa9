/* TSC -> nanoseconds on the calibrated timeline, for C hot paths.
 *
 * netio.clock publishes a struct netio_clock (a numpy record with the same fields) and
 * re-anchors it as the calibration tracks drift; readers convert with one 128-bit
 * multiply and a shift. mult/shift are the kernel's convention (ns = cycles * mult >> shift).
 */
#ifndef NETIO_TSC_CLOCK_H
#define NETIO_TSC_CLOCK_H
#include <stdint.h>

struct netio_clock {
    uint64_t tsc0;   /* TSC reading at the anchor */
    int64_t ns0;     /* reference-domain nanoseconds at the anchor */
    uint64_t mult;   /* nanoseconds per cycle << shift */
    uint32_t shift;
    uint32_t seq;    /* bumped by the writer after every update */
};

static inline int64_t netio_tsc_to_ns(const struct netio_clock *c, uint64_t tsc)
{
    int64_t cycles = (int64_t)(tsc - c->tsc0);
    return c->ns0 + (int64_t)(((__int128)cycles * (__int128)c->mult) >> c->shift);
}

static inline uint64_t netio_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
#endif
