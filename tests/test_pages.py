"""netio.pages: asking for 2 MB pages and seeing where they were given."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from netio import pages

HUGE = pages.HUGE_PAGE


thp_on = pytest.mark.skipif(pages.thp_setting() not in ("always", "madvise"),
                            reason="transparent huge pages are off on this machine")


@thp_on
@pytest.mark.parametrize("size", [8 * HUGE, 3 * HUGE + 4096 * 100], ids=["whole pages", "a part page"])
def test_an_area_starts_on_a_2_mb_boundary_and_its_pages_are_huge_once_touched(size):
    area, array = pages.huge_page_area(size)
    assert array.nbytes == size and array.ctypes.data % HUGE == 0
    array[::4096] = 1
    assert pages.huge_page_bytes(array) >= size      # the whole mapping, and any neighbour merged with it
    del array
    area.close()


@thp_on
@pytest.mark.skipif(os.geteuid() != 0, reason="mlockall of all future memory needs root")
@pytest.mark.skipif(tuple(map(int, os.uname().release.split(".")[:2])) < (6, 1),
                    reason="MADV_COLLAPSE came in Linux 6.1")
def test_an_area_made_after_mlockall_is_on_huge_pages_too():
    """Under mlockall(MCL_FUTURE) (what engine.fastpath.lock_memory does) mmap faults a new
    mapping in on 4 kB pages before any madvise; the area is moved onto 2 MB pages anyway."""
    code = textwrap.dedent("""
        import ctypes
        from netio import pages
        assert ctypes.CDLL(None, use_errno=True).mlockall(1 | 2) == 0     # MCL_CURRENT | MCL_FUTURE
        area, array = pages.huge_page_area(4 * pages.HUGE_PAGE)
        print(pages.huge_page_bytes(array) >= array.nbytes, not array.any())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_an_area_is_fresh_memory():
    area, array = pages.huge_page_area(HUGE + 1)
    assert array.nbytes == HUGE + 1 and not array.any()
    del array
    area.close()


def test_why_memory_is_not_on_huge_pages_names_what_to_do():
    assert pages.why_not_huge().endswith(("CONFIG_TRANSPARENT_HUGEPAGE)", "lets netio have them", "may help"))


def test_the_setting_is_one_of_the_kernel_s_modes():
    assert pages.thp_setting() in ("always", "madvise", "never", "not built")
