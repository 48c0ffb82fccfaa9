"""Build engine._itch: the ITCH 5.0 bulk decode/encode kernels (cffi_build/itch.c)."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef("""
int64_t itch_scan(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                  uint64_t counts[256], uint64_t offset[257], uint64_t rejects[4]);
int64_t itch_gather(const uint8_t *buf, size_t len, const uint8_t lengths[256],
                    uint8_t *block, const uint64_t offset[257], const uint64_t capacity[256],
                    uint8_t *order, uint64_t order_capacity);
int64_t itch_scan_views(const uint8_t *buf, size_t buf_len, const int64_t *off, const uint16_t *len,
                        uint64_t n_views, const uint8_t lengths[256],
                        uint64_t counts[256], uint64_t offset[257], uint64_t rejects[4]);
int64_t itch_gather_views(const uint8_t *buf, size_t buf_len, const int64_t *off, const uint16_t *len,
                          uint64_t n_views, const uint8_t lengths[256],
                          uint8_t *block, const uint64_t offset[257], const uint64_t capacity[256],
                          uint8_t *order, uint32_t *source, uint64_t order_capacity);
int64_t itch_encode(const uint8_t *order, uint64_t n_order, const uint8_t lengths[256],
                    const uint8_t *const src[256], const uint64_t counts[256],
                    uint8_t *out, size_t out_len);
""")
ffibuilder.set_source(
    "engine._itch",
    '#include "itch.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
