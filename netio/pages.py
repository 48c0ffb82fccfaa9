"""Memory on 2 MB pages: asking for them, and seeing where they were given.

A frame, a ring slot or a table row on its own 4 kB page costs a TLB miss when the walk
that reads it has been away long enough (on a VM, a two-level page-table walk): memory a
hot path touches belongs on 2 MB pages. Transparent huge pages give them to anonymous
memory that asks (MADV_HUGEPAGE) before it is first touched, when
/sys/kernel/mm/transparent_hugepage/enabled is ``always`` or ``madvise``, and since Linux
6.1 move memory already touched onto them on request (MADV_COLLAPSE).
"""
from __future__ import annotations

import mmap

import numpy as np

THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
HUGE_PAGE = 2 << 20
MADV_COLLAPSE = 25      # Linux 6.1; not in Python 3.11's mmap module


def huge_page_area(size: int) -> tuple[mmap.mmap, np.ndarray]:
    """``size`` bytes of fresh private memory that asked for 2 MB pages and starts on a
    2 MB boundary (a huge page maps only an aligned 2 MB): (the mapping, which owns it;
    the bytes, an array into it). Untouched, it gets huge pages as it is first touched;
    faulted in already (in a process under mlockall), it is moved onto them here."""
    # room to start on a boundary, and for a whole huge page under the last bytes
    area = mmap.mmap(-1, -(-size // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        area.madvise(mmap.MADV_HUGEPAGE)
        # in a process under mlockall(MCL_FUTURE) (engine.fastpath.lock_memory) mmap has
        # already faulted it in, on 4 kB pages: those are moved now
        area.madvise(MADV_COLLAPSE)
    except OSError:
        # EINVAL: no transparent huge pages, a kernel before 6.1, or (the usual case) nothing
        # faulted in yet to move: first touches then get huge pages. EAGAIN, ENOMEM: no
        # free 2 MB pages. huge_page_bytes says what it got.
        pass
    start = -np.frombuffer(area, np.uint8, count=1).ctypes.data % HUGE_PAGE
    return area, np.frombuffer(area, np.uint8, count=size, offset=start)


def huge_page_bytes(array: np.ndarray) -> int:
    """Bytes of the mappings ``array`` lies in that are on 2 MB pages (their
    AnonHugePages in /proc/self/smaps). The kernel merges neighbouring mappings made
    alike into one, so this can count a neighbour's pages too."""
    start = array.ctypes.data
    end = start + array.nbytes
    inside, kb = False, 0
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):     # a mapping's first line: lo-hi perms ...
                lo, hi = (int(a, 16) for a in head.split("-"))
                inside = lo < end and start < hi
            elif inside and head == "AnonHugePages:":
                kb += int(line.split()[1])
    return kb << 10


def why_not_huge() -> str:
    """Why memory that asked for 2 MB pages may not have them, and what to do."""
    mode = thp_setting()
    if mode == "not built":
        return "this kernel has no transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE)"
    if mode == "never":
        return f"transparent huge pages are off; `echo madvise > {THP_SETTING}` lets netio have them"
    return ("the kernel had no free 2 MB pages (memory fragmented); "
            "`echo 1 > /proc/sys/vm/compact_memory` before starting may help")


def thp_setting() -> str:
    """The transparent huge page mode in use (``always``, ``madvise``, ``never``), or
    ``not built`` on a kernel without them."""
    try:
        with open(THP_SETTING) as f:
            modes = f.read().split()
    except FileNotFoundError:
        return "not built"
    return next((m.strip("[]") for m in modes if m.startswith("[")), " ".join(modes))
