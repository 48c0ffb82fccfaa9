"""cffi build of engine._fastpath: the venue's fused burst loop, linked with the C of the
stages it fuses (stack, OUCH, venue serialize, risk, matching, MoldUDP64, journal)."""
import os
import shutil
import tempfile
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
STAGES = ["stack.c", "ouch.c", "venue.c", "risk.c", "matching.c", "moldudp64.c", "journal.c"]

ffibuilder = cffi.FFI()
# cdef wants plain declarations: strip the preprocessor lines from the shared header.
ffibuilder.cdef("\n".join(line for line in (HERE / "fastpath.h").read_text().splitlines()
                          if not line.startswith("#")))
ffibuilder.set_source(
    "engine._fastpath",
    '#include "fastpath.c"',
    sources=[str(HERE / name) for name in STAGES],
    include_dirs=[str(HERE)],
    # the stage sources lean on the cffi preamble for <stdint.h> when built alone
    extra_compile_args=["-O3", "-march=x86-64-v2", "-std=gnu11", "-Wall", "-Wextra", "-flto",
                        "-include", "stdint.h", "-include", "stddef.h"],
    extra_link_args=["-flto", "-O3"],
)

if __name__ == "__main__":
    # built in a scratch folder: the stage sources' objects would otherwise land in the tree
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        target = HERE.parent / "engine" / built.name
        # a new file renamed over the old: a process that has the old one mapped keeps it
        # (written in place, its pages would change under it: SIGBUS)
        shutil.copy(built, target.with_suffix(".new"))
        os.replace(target.with_suffix(".new"), target)
