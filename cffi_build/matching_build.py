"""Build engine._matching: the price-time matching kernel (cffi_build/matching.c)."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef((HERE / "matching.h").read_text())
ffibuilder.set_source(
    "engine._matching",
    '#include "matching.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
