"""netio.isolation: what else runs on the venue's CPU, read from sysfs and procfs."""
import os
import time
from pathlib import Path

import pytest

from netio.isolation import cpu_share, parse_cpulist, timer_interrupts

INTERRUPTS = """\
           CPU0       CPU1       CPU2       CPU3
 36:          0     499587          0          0  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 41:       8375          0          0          0  PCI-MSIX-0000:00:04.0   1-edge      eth0-rx-0
 42:          0          0       9000          0  PCI-MSIX-0000:00:04.0   2-edge      eth0-tx-0
NMI:          0          0          0          0   Non-maskable interrupts
LOC:    3839728    5237766        250         17   Local timer interrupts
"""


def machine(root: Path, isolated: str, nohz_full: str | None, irq_cpus: dict[str, str]) -> Path:
    """A sysfs and procfs tree of a 4-CPU machine under root."""
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0-3\n")
    (cpu / "isolated").write_text(isolated + "\n")
    if nohz_full is not None:
        (cpu / "nohz_full").write_text(nohz_full + "\n")
    (root / "proc").mkdir()
    (root / "proc/interrupts").write_text(INTERRUPTS)
    for number, cpus in irq_cpus.items():
        (root / "proc/irq" / number).mkdir(parents=True)
        (root / "proc/irq" / number / "effective_affinity_list").write_text(cpus + "\n")
    return root


def test_cpulists_name_single_cpus_and_ranges():
    assert parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpulist("\n") == frozenset()


def test_an_isolated_tickless_cpu_without_interrupts_is_alone(tmp_path):
    root = machine(tmp_path, isolated="2-3", nohz_full="2-3", irq_cpus={"36": "1", "41": "0", "42": "2"})
    share = cpu_share(3, root)
    assert share.alone
    assert share.describe() == "CPU 3 is isolated and tickless, and no device interrupt lands there"


def test_a_shared_cpu_names_what_interrupts_it_and_the_boot_parameters_that_would_free_it(tmp_path):
    root = machine(tmp_path, isolated="3", nohz_full="3", irq_cpus={"36": "1", "41": "0", "42": "2"})
    share = cpu_share(2, root)
    assert (share.isolated, share.tickless, share.irqs) == (False, False, ("eth0-tx-0",))
    line = share.describe()
    assert "not in isolcpus" in line and "not in nohz_full" in line and "eth0-tx-0" in line
    assert line.endswith("boot with isolcpus=2 nohz_full=2 irqaffinity=0,1,3")


def test_the_interrupts_a_cpu_took_most_of_are_named_first(tmp_path):
    root = machine(tmp_path, isolated="", nohz_full="", irq_cpus={"36": "0-3", "41": "0-3", "42": "0-3"})
    assert cpu_share(1, root).irqs == ("virtio1-req.0", "eth0-rx-0", "eth0-tx-0")
    assert cpu_share(2, root).irqs[0] == "eth0-tx-0"


def test_an_interrupt_not_started_lands_nowhere(tmp_path):
    root = machine(tmp_path, isolated="", nohz_full="", irq_cpus={"36": "", "41": "1", "42": ""})
    assert cpu_share(1, root).irqs == ("eth0-rx-0",)


def test_a_kernel_without_nohz_full_is_named_as_the_reason_the_tick_stays(tmp_path):
    root = machine(tmp_path, isolated="", nohz_full=None, irq_cpus={})
    line = cpu_share(1, root).describe()
    assert "built without CONFIG_NO_HZ_FULL" in line
    assert "nohz_full=" not in line       # no parameter this kernel would take


def test_timer_interrupts_are_the_cpus_column_of_the_loc_line(tmp_path):
    root = machine(tmp_path, isolated="", nohz_full="", irq_cpus={})
    assert [timer_interrupts(c, root) for c in range(4)] == [3839728, 5237766, 250, 17]


def test_a_cpu_that_keeps_running_takes_timer_ticks_on_this_kernel():
    cpu = min(os.sched_getaffinity(0))
    if cpu_share(cpu).tickless:
        pytest.skip(f"CPU {cpu} is in nohz_full: it may take no tick while one task runs")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        ticks = timer_interrupts(cpu)
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            pass
        assert timer_interrupts(cpu) - ticks >= 10      # 0.2 s at the slowest tick (100 Hz) is 20
    finally:
        os.sched_setaffinity(0, before)
