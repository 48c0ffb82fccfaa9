"""cffi build of engine._ouch: the OUCH 4.2 / SoupBinTCP bulk decode and encode loops."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
# cdef wants plain declarations: strip the preprocessor lines from the shared header.
ffibuilder.cdef("\n".join(line for line in (HERE / "ouch.h").read_text().splitlines()
                          if not line.startswith("#")))
ffibuilder.set_source(
    "engine._ouch",
    '#include "ouch.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
