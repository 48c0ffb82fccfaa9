"""What else runs on a CPU: how far the kernel leaves a latency-critical loop alone.

A busy-polling loop is only as steady as its CPU, and the kernel decides three things that
take the CPU away from it: whether the scheduler may put other tasks there (not when the
CPU is in ``isolcpus``), whether the periodic timer tick interrupts it (not while one task
runs there, when the CPU is in ``nohz_full`` on a kernel built with CONFIG_NO_HZ_FULL), and
which device interrupts land there (``/proc/irq/N``). ``cpu_share`` reads all three, so
``netio-run`` can say what the venue's CPU still shares and which boot parameters would
free it; ``timer_interrupts`` counts the ticks a CPU took (``LOC`` in /proc/interrupts), so
a benchmark can set its latency tail beside them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def parse_cpulist(text: str) -> frozenset[int]:
    """The CPUs of a kernel cpulist such as ``0-3,8`` (empty: none)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


@dataclass(frozen=True)
class CpuShare:
    """What a CPU shares with the rest of the machine."""

    cpu: int
    isolated: bool                  # in isolcpus: the scheduler places no other task there
    tickless: bool                  # in nohz_full: no timer tick while one task runs there
    nohz_full_built: bool           # the kernel can be booted with nohz_full at all
    irqs: tuple[str, ...]           # device interrupts that land there, the busiest first
    others: frozenset[int]          # the machine's other CPUs, where interrupts could go

    @property
    def alone(self) -> bool:
        return self.isolated and self.tickless and not self.irqs

    def describe(self) -> str:
        """One line: what the CPU shares, and what would free it."""
        if self.alone:
            return f"CPU {self.cpu} is isolated and tickless, and no device interrupt lands there"
        shared = []
        if not self.isolated:
            shared.append("the scheduler may run other tasks there (not in isolcpus)")
        if not self.tickless:
            why = "not in nohz_full" if self.nohz_full_built else "this kernel is built without CONFIG_NO_HZ_FULL"
            shared.append(f"the timer tick interrupts it ({why})")
        if self.irqs:
            names = ", ".join(self.irqs[:4]) + (", ..." if len(self.irqs) > 4 else "")
            shared.append(f"{len(self.irqs)} device interrupt(s) land there ({names})")
        boot = [f"isolcpus={self.cpu}"] if not self.isolated else []
        if not self.tickless and self.nohz_full_built:
            boot.append(f"nohz_full={self.cpu}")
        if self.irqs and self.others:
            boot.append("irqaffinity=" + ",".join(map(str, sorted(self.others))))
        advice = f"; for a steadier tail boot with {' '.join(boot)}" if boot else ""
        return f"CPU {self.cpu} is shared: " + "; ".join(shared) + advice


def cpu_share(cpu: int, root: Path = Path("/")) -> CpuShare:
    """What ``cpu`` shares, from sysfs and procfs under ``root``."""
    cpus_dir = root / "sys/devices/system/cpu"
    nohz = cpus_dir / "nohz_full"
    online = parse_cpulist(_read(cpus_dir / "online"))
    return CpuShare(cpu=cpu, isolated=cpu in parse_cpulist(_read(cpus_dir / "isolated")),
                    tickless=cpu in parse_cpulist(_read(nohz)), nohz_full_built=nohz.exists(),
                    irqs=tuple(name for number, name in _device_irqs(root, cpu) if cpu in _irq_cpus(root, number)),
                    others=online - {cpu})


def timer_interrupts(cpu: int, root: Path = Path("/")) -> int:
    """The local timer interrupts ``cpu`` has taken since boot (/proc/interrupts ``LOC``)."""
    lines = _read(root / "proc/interrupts").splitlines()
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0] == "LOC:":
            return int(fields[1 + lines[0].split().index(f"CPU{cpu}")])
    raise LookupError("no LOC line in /proc/interrupts")


def _device_irqs(root: Path, cpu: int) -> list[tuple[str, str]]:
    """(number, name) of the numbered interrupts in /proc/interrupts, those ``cpu`` took
    most of first."""
    lines = _read(root / "proc/interrupts").splitlines()
    header = lines[0].split() if lines else []
    column = 1 + header.index(f"CPU{cpu}") if f"CPU{cpu}" in header else None
    counted = []
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0].rstrip(":").isdigit() and len(fields) > len(header) + 1:
            taken = int(fields[column]) if column else 0
            counted.append((-taken, fields[0].rstrip(":"), fields[-1]))
    return [(number, name) for _, number, name in sorted(counted, key=lambda c: c[0])]


def _irq_cpus(root: Path, number: str) -> frozenset[int]:
    """Where the interrupt is delivered now (its effective affinity: none for one not
    started), or on a kernel that does not say, where it may be."""
    irq = root / "proc/irq" / number
    effective = irq / "effective_affinity_list"
    return parse_cpulist(_read(effective if effective.exists() else irq / "smp_affinity_list"))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
