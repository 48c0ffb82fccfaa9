"""cffi build of engine._venue: the venue's serialize stage (events -> OUCH replies, ITCH blocks)."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
# cdef wants plain declarations: strip the preprocessor lines from the shared header.
ffibuilder.cdef("\n".join(line for line in (HERE / "venue.h").read_text().splitlines()
                          if not line.startswith("#")))
ffibuilder.set_source(
    "engine._venue",
    '#include "venue.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
