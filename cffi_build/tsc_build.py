"""netio._tsc: TSC reads, TSC frequency sources, reference-clock sampling, TSC->ns conversion."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef("""
struct netio_clock { uint64_t tsc0; int64_t ns0; uint64_t mult; uint32_t shift; uint32_t seq; };
uint64_t tsc_now(void);
uint64_t tscp_now(uint32_t *aux);
int cpuid_leaf(uint32_t leaf, uint32_t sub, uint32_t out[4]);
int perf_tsc_conversion(uint32_t *mult, uint32_t *shift, uint64_t *zero);
int sample_clock(int id, int n, int64_t *out);
int ptp_offset_extended(int fd, int n, int64_t *out);
int ptp_offset_precise(int fd, int64_t *out);
void tsc_to_ns_batch(const struct netio_clock *c, const uint64_t *tsc, int64_t *ns, size_t n);
uint64_t convert_cost(const struct netio_clock *c, uint64_t iters, int64_t *sink);
""")
ffibuilder.set_source(
    "netio._tsc",
    '#include "tsc.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-march=x86-64-v2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
