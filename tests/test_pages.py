"""netio.pages: asking for 2 MB pages and seeing where they were given."""
from __future__ import annotations

import mmap

import numpy as np
import pytest

from netio import pages

HUGE = 2 << 20


def private(size: int) -> mmap.mmap:
    """Anonymous memory as the AF_XDP port maps its UMEM (shared memory has its own setting)."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


@pytest.mark.skipif(pages.thp_setting() not in ("always", "madvise"),
                    reason="transparent huge pages are off on this machine")
def test_memory_that_asks_before_its_first_touch_gets_2_mb_pages():
    area = private(8 * HUGE)            # Linux aligns a mapping this big to 2 MB
    assert pages.ask_for_huge_pages(area)
    array = np.frombuffer(area, np.uint8)
    array[::4096] = 1
    # the whole mapping, and any neighbour the kernel merged it with
    assert pages.huge_page_bytes(array) >= array.nbytes
    assert pages.huge_page_bytes(array[HUGE:2 * HUGE]) >= array.nbytes
    del array
    area.close()


def test_the_setting_is_one_of_the_kernel_s_modes():
    assert pages.thp_setting() in ("always", "madvise", "never", "not built")
