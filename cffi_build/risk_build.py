"""cffi build of engine._risk: pre-trade checks over a command batch and their settlement."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef((HERE / "risk.h").read_text())
ffibuilder.set_source(
    "engine._risk",
    '#include "risk.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
