/* Bulk recording into HdrHistogram counts arrays, laid out as the hdrhistogram package
 * lays them out (its counts are a native int64 ctypes array), so Python encodes the same
 * histogram to the standard log format. No allocation: values go straight to counters. */
#include <stdint.h>
#include <stddef.h>

struct hdr_layout {
    int64_t counts_len;
    int32_t unit_magnitude;
    int32_t sub_bucket_half_count_magnitude;
    int64_t sub_bucket_mask;
    int64_t sub_bucket_half_count;
};

struct hdr_totals {
    int64_t count;    /* values recorded (with their multiplicity) */
    int64_t min;
    int64_t max;
    int64_t dropped;  /* negative or out of range */
};

static int64_t hdr_index(const struct hdr_layout *h, int64_t value)
{
    int pow2ceiling = 64 - __builtin_clzll((uint64_t)value | (uint64_t)h->sub_bucket_mask);
    int bucket = pow2ceiling - h->unit_magnitude - (h->sub_bucket_half_count_magnitude + 1);
    int64_t sub_bucket = value >> (bucket + h->unit_magnitude);
    return ((int64_t)(bucket + 1) << h->sub_bucket_half_count_magnitude) + (sub_bucket - h->sub_bucket_half_count);
}

static void hdr_record(const struct hdr_layout *h, int64_t *counts, int64_t value, int64_t times,
                       struct hdr_totals *t)
{
    int64_t i = value < 0 ? -1 : hdr_index(h, value);
    if (i < 0 || i >= h->counts_len) {
        t->dropped += times;
        return;
    }
    counts[i] += times;
    t->count += times;
    if (value < t->min) t->min = value;
    if (value > t->max) t->max = value;
}

/* Record values[i] (ns) `times` times each. */
void hdr_record_values(const struct hdr_layout *h, int64_t *counts, const int64_t *values, size_t n,
                       int64_t times, struct hdr_totals *t)
{
    for (size_t i = 0; i < n; i++)
        hdr_record(h, counts, values[i], times, t);
}

/* Record the TSC interval between two stamps, converted to ns, `times` times. */
void hdr_record_cycles(const struct hdr_layout *h, int64_t *counts, uint64_t from, uint64_t to,
                       uint64_t mult, uint32_t shift, int64_t times, struct hdr_totals *t)
{
    int64_t cycles = (int64_t)(to - from);
    int64_t ns = (int64_t)(((__int128)cycles * mult) >> shift);
    hdr_record(h, counts, ns, times, t);
}

/* Record, for each of n bursts (rows of `stride` stamps), the TSC interval from column
 * `from` to column `to`, converted to ns, times[k] times: one stage of many bursts. */
void hdr_record_intervals(const struct hdr_layout *h, int64_t *counts, const uint64_t *stamps, size_t n,
                          size_t stride, size_t from, size_t to, uint64_t mult, uint32_t shift,
                          const int64_t *times, struct hdr_totals *t)
{
    for (size_t k = 0; k < n; k++) {
        const uint64_t *row = stamps + k * stride;
        hdr_record_cycles(h, counts, row[from], row[to], mult, shift, times[k], t);
    }
}
