"""cffi build of engine._moldudp64: MoldUDP64 bulk decode and packet packing loops."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
# cdef wants plain declarations: strip the preprocessor lines from the shared header.
ffibuilder.cdef("\n".join(line for line in (HERE / "moldudp64.h").read_text().splitlines()
                          if not line.startswith("#")))
ffibuilder.set_source(
    "engine._moldudp64",
    '#include "moldudp64.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
