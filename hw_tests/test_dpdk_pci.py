"""The DPDK backend on a real NIC bound to vfio-pci (skips without NETIO_DPDK_PCI).

Set NETIO_DPDK_PCI to the PCI address of a port bound to vfio-pci
(`dpdk-devbind.py -b vfio-pci 0000:01:00.0`), with its link cabled to something
that sends it traffic (a switch, a loopback cable, a second port) and hugepages
reserved (`dpdk-hugepages.py -p 2M --setup 1G`). Each case runs in its own process
because the process's EAL must be started with the PCI bus on.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = textwrap.dedent("""
    import sys, time
    from netio.dpdk import DpdkPort
    from netio.port import TimestampSource
    with DpdkPort(sys.argv[1], hugepages=True, file_prefix="netio-hw-dpdk") as port:
        assert port.info.zero_copy is True and port.info.details["driver"].startswith("net_")
        print("link", port.link()["up"], port.link()["speed_mbps"])
        assert port.xstats(), "a NIC driver has extended statistics"
        got, end = 0, time.monotonic() + 5
        while time.monotonic() < end and got < 100:
            burst = port.rx_burst()
            if len(burst):
                assert burst.ts_source in (TimestampSource.NIC, TimestampSource.TSC)
                assert burst.ts_source is not TimestampSource.NIC or all(burst.timestamps > 0)
            got += len(burst)
            port.release(burst)
        print("received", got, port.info.ts_source.value)
""")


@pytest.fixture
def pci_address() -> str:
    address = os.environ.get("NETIO_DPDK_PCI")
    if not address:
        pytest.skip("no DPDK NIC: set NETIO_DPDK_PCI to the PCI address of a port bound to vfio-pci")
    if not os.path.exists(f"/sys/bus/pci/drivers/vfio-pci/{address}"):
        pytest.skip(f"{address} is not bound to vfio-pci (dpdk-devbind.py -b vfio-pci {address})")
    return address


def test_a_pci_port_opens_reports_its_link_and_receives_with_stamps(pci_address):
    done = subprocess.run([sys.executable, "-c", DRIVER, pci_address], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    link, received = done.stdout.splitlines()
    assert link.startswith("link True"), "the port's link is up"
    assert int(received.split()[1]) > 0, "traffic arrived on the port within 5 s"
