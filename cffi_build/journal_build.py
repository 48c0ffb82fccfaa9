"""cffi build of engine._journal: bulk CRC-32C sealing and checking of journal records."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef("""
    uint32_t jnl_crc32c(const uint8_t *data, size_t len);
    void jnl_seal(uint8_t *recs, size_t n, size_t rec_size, size_t crc_offset);
    size_t jnl_check(const uint8_t *recs, size_t n, size_t rec_size, size_t crc_offset, uint8_t *ok);
""")
ffibuilder.set_source(
    "engine._journal",
    '#include "journal.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
