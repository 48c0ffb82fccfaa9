"""engine._telemetry: bulk recording of stage latencies into HdrHistogram counts."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef("""
struct hdr_layout { int64_t counts_len; int32_t unit_magnitude; int32_t sub_bucket_half_count_magnitude;
                    int64_t sub_bucket_mask; int64_t sub_bucket_half_count; };
struct hdr_totals { int64_t count; int64_t min; int64_t max; int64_t dropped; };
void hdr_record_values(const struct hdr_layout *h, int64_t *counts, const int64_t *values, size_t n,
                       int64_t times, struct hdr_totals *t);
void hdr_record_cycles(const struct hdr_layout *h, int64_t *counts, uint64_t from, uint64_t to,
                       uint64_t mult, uint32_t shift, int64_t times, struct hdr_totals *t);
void hdr_record_intervals(const struct hdr_layout *h, int64_t *counts, const uint64_t *stamps, size_t n,
                          size_t stride, size_t from, size_t to, uint64_t mult, uint32_t shift,
                          const int64_t *times, struct hdr_totals *t);
""")
ffibuilder.set_source("engine._telemetry", '#include "telemetry.c"', include_dirs=[str(HERE)],
                      extra_compile_args=["-O3", "-march=x86-64-v2"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
