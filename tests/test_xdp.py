"""The AF_XDP backend (netio.xdp) on veth pairs in namespaces, native and generic XDP."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from netio import iface, pages, tsc
from netio.netns import VethNamespace, leftovers
from wire import capture_in_namespace, frames_to, send_from_namespace
from netio.port import Burst, PortError, PortUnavailable, TimestampSource, open_port

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="AF_XDP and veth pairs need root")]

xdp = pytest.importorskip("netio.xdp", reason="netio._xdp is not built; run `make native`")

PREFIX = "txd"
MINE = f"{PREFIX}{os.getpid():x}x"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    yield
    assert leftovers(MINE) == []
    assert sorted(xdp.STATE_DIR.glob(f"xdp-{MINE}*")) == [], "an owner note outlived its port"


@pytest.fixture
def veth():
    """A veth pair set up as AF_XDP needs it: no TX checksum offload, GRO on both ends."""
    with VethNamespace(PREFIX) as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        yield v
    assert leftovers(v.ns_name) == []




def receive(port, count: int, timeout: float = 5.0) -> tuple[list[bytes], list[int], list[int]]:
    frames, lengths, stamps = [], [], []
    end = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < end:
        burst = port.rx_burst(64)
        assert burst.ts_source is TimestampSource.TSC
        frames += burst.to_bytes()
        lengths += burst.lengths.tolist()
        stamps += burst.timestamps.tolist()
        port.release(burst)
    return frames, lengths, stamps


MODES = ["native", "generic"]


@pytest.mark.parametrize("mode", MODES)
def test_frames_sent_in_the_namespace_arrive_byte_exact_with_lengths_and_stamps(veth, mode):
    sent = frames_to(veth.host_mac, veth.ns_mac, [60, 64, 128, 333, 1000, 1514] * 5)
    with xdp.XdpPort(veth.host_if, xdp_mode=mode) as port:
        assert port.info.xdp_mode == mode and port.info.zero_copy is False
        assert iface.xdp_program(veth.host_if).mode == mode
        before = tsc.rdtsc()
        send_from_namespace(veth, sent)
        got, lengths, stamps = receive(port, len(sent))
        after = tsc.rdtsc()
        stats = port.stats()
    assert got == sent
    assert lengths == [len(f) for f in sent]
    assert all(before < s <= after for s in stamps) and stamps == sorted(stamps)
    assert stats.rx_packets == len(sent) and stats.rx_bytes == sum(lengths)
    assert iface.xdp_program(veth.host_if) is None, "close() detaches the XDP program"


@pytest.mark.parametrize("mode", MODES)
def test_tx_burst_frames_arrive_byte_exact_in_the_namespace(veth, mode):
    sent = frames_to(veth.ns_mac, veth.host_mac, [60, 100, 700, 1514] * 25)
    with xdp.XdpPort(veth.host_if, xdp_mode=mode) as port:
        def send():
            taken = 0
            while taken < len(sent):
                taken += port.tx_burst(Burst.of(sent[taken:]))
        assert capture_in_namespace(veth, len(sent), send) == sent
        stats = port.stats()
    assert stats.tx_packets == len(sent) and stats.tx_bytes == sum(map(len, sent))


def test_received_frames_are_recycled_through_the_fill_ring(veth):
    """With 16 receive frames, 200 frames still arrive: each release hands frames back."""
    sent = frames_to(veth.host_mac, veth.ns_mac, [80] * 200)
    with xdp.XdpPort(veth.host_if, xdp_mode="generic", frames=32, ring_size=16) as port:
        got = []
        for start in range(0, len(sent), 10):
            send_from_namespace(veth, sent[start:start + 10])
            got += receive(port, 10)[0]
        assert got == sent
        burst = port.rx_burst()
        port.release(burst)
        port.release(burst)   # a second release of the same burst changes nothing


def test_a_received_frame_can_be_sent_back_from_the_umem(veth):
    """Echo: swap the MACs in place and tx_burst the received burst itself."""
    sent = frames_to(veth.host_mac, veth.ns_mac, [90, 91, 92])
    with xdp.XdpPort(veth.host_if, xdp_mode="native") as port:
        def echo():
            send_from_namespace(veth, sent)
            echoed = 0
            end = time.monotonic() + 5
            while echoed < 3 and time.monotonic() < end:
                burst = port.rx_burst()
                for frame in burst:
                    frame[:12] = np.concatenate([frame[6:12], frame[:6]])
                echoed += port.tx_burst(burst)
                port.release(burst)
        back = capture_in_namespace(veth, 3, echo)
    assert back == [f[6:12] + f[:6] + f[12:] for f in sent]


def test_auto_mode_records_each_step_down_as_a_sentence(veth):
    with xdp.XdpPort(veth.host_if) as port:
        assert port.info.xdp_mode == "native" and port.info.zero_copy is False
        assert "peer has GRO on" in port.info.details["note"]
        assert any("native XDP zero-copy refused" in f and "zero-copy" in f for f in port.info.fallbacks)
        assert port.info.details["prog_id"] == iface.xdp_program(veth.host_if).prog_id
    with pytest.raises(PortUnavailable, match="no AF_XDP socket could be bound.*zero-copy"):
        xdp.XdpPort(veth.host_if, zero_copy=True)
    assert iface.xdp_program(veth.host_if) is None


@pytest.mark.skipif(pages.thp_setting() not in ("always", "madvise"),
                    reason="transparent huge pages are off on this machine")
def test_the_umem_lies_on_2_mb_pages(veth):
    """Every frame's page stays in the TLB: the UMEM asked for huge pages before the kernel
    pinned it (a 4 MiB UMEM is two whole 2 MB pages: the mapping is 2 MB aligned)."""
    with xdp.XdpPort(veth.host_if, xdp_mode="native", frames=1024) as port:
        assert port.info.details["umem_huge_page_bytes"] == port.umem.nbytes
        assert not any("UMEM" in f for f in port.info.fallbacks)


def test_a_umem_on_4_kb_pages_is_said_with_why_and_what_to_do(veth, monkeypatch):
    monkeypatch.setattr(pages, "huge_page_bytes", lambda array: 0)
    monkeypatch.setattr(pages, "thp_setting", lambda: "never")
    with xdp.XdpPort(veth.host_if, xdp_mode="native", frames=1024) as port:
        assert port.info.details["umem_huge_page_bytes"] == 0
        assert any(f.startswith("4 of the UMEM's 4 MiB on 4 kB pages") and f"madvise > {pages.THP_SETTING}" in f
                   for f in port.info.fallbacks), port.info.fallbacks


def test_busy_poll_is_reported_only_when_the_kernel_took_it(veth):
    with xdp.XdpPort(veth.host_if, busy_poll=True) as on:
        assert on.info.busy_poll == ("busy-poll" in on.info.describe())
    with xdp.XdpPort(veth.host_if, busy_poll=False) as off:
        assert off.info.busy_poll is False and "no busy-poll" in off.info.describe()


def test_one_socket_per_queue_and_a_refused_second_leaves_the_first_working(veth):
    sent = frames_to(veth.host_mac, veth.ns_mac, [70, 71])
    with xdp.XdpPort(veth.host_if, xdp_mode="native") as first:
        with pytest.raises(PortUnavailable, match="another AF_XDP socket is bound to this queue"):
            xdp.XdpPort(veth.host_if, queue=0, xdp_mode="native")
        send_from_namespace(veth, sent)
        assert receive(first, 2)[0] == sent


@pytest.mark.parametrize("first_mode, options", [("generic", {}), ("native", {"rx_metadata": True})],
                         ids=["libxdp-program", "metadata-program"])
def test_a_port_left_by_a_killed_process_is_cleared_by_the_next_open(veth, caplog, first_mode, options):
    """SIGKILL leaves the XDP program attached; the next open detaches it and says so."""
    code = textwrap.dedent(f"""
        import time
        from netio.xdp import XdpPort
        port = XdpPort("{veth.host_if}", xdp_mode="{first_mode}", **{options!r})
        print(port.info.details["prog_id"], flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        prog_id = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert iface.xdp_program(veth.host_if).prog_id == prog_id
    with caplog.at_level("WARNING", logger="netio"), xdp.XdpPort(veth.host_if, xdp_mode="native", **options) as port:
        assert f"detached XDP program {prog_id}" in port.info.details["stale_program"]
        assert port.info.details["prog_id"] != prog_id
        assert any(f"detached XDP program {prog_id}" in r.getMessage() for r in caplog.records)
        assert port.info.xdp_mode == "native"
    assert iface.xdp_program(veth.host_if) is None


@pytest.mark.parametrize("options", ["", ", rx_metadata=True"], ids=["libxdp-program", "metadata-program"])
def test_sigterm_detaches_the_program_and_still_ends_the_process(veth, options):
    code = textwrap.dedent(f"""
        import time
        from netio.xdp import XdpPort
        port = XdpPort("{veth.host_if}"{options})
        print("open", flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "open"
        assert iface.xdp_program(veth.host_if) is not None
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert iface.xdp_program(veth.host_if) is None


def test_caller_mistakes_are_port_errors_with_one_clear_sentence(veth):
    with pytest.raises(PortError, match="no network interface named nosuch0") as e:
        xdp.XdpPort("nosuch0")
    assert not isinstance(e.value, PortUnavailable)
    with pytest.raises(PortError, match="ring_size must be a power of two"):
        xdp.XdpPort(veth.host_if, ring_size=1000)
    with pytest.raises(PortError, match="frame_size must be 2048 or 4096"):
        xdp.XdpPort(veth.host_if, frame_size=3000)
    with pytest.raises(PortError, match="does not know option.*turbo"):
        xdp.XdpPort(veth.host_if, turbo=True)
    with pytest.raises(PortError, match="no queue 7"):
        xdp.XdpPort(veth.host_if, queue=7)
    subprocess.run(["ip", "link", "set", veth.host_if, "down"], check=True)
    with pytest.raises(PortError, match="is down; bring it up"):
        xdp.XdpPort(veth.host_if)
    assert iface.xdp_program(veth.host_if) is None


def test_a_frame_that_does_not_fit_is_refused_and_nothing_is_sent(veth):
    with xdp.XdpPort(veth.host_if, frame_size=2048) as port:
        with pytest.raises(PortError, match="frame 1 .*does not fit a 2048-byte UMEM frame"):
            port.tx_burst(Burst.of([b"\0" * 60, b"\0" * 3000]))
        assert port.stats().tx_packets == 0
    with pytest.raises(PortError, match="closed"):
        port.rx_burst()


def test_not_root_is_unavailable_so_auto_moves_on(veth, monkeypatch):
    """Simulated with another uid: AF_XDP is unavailable, not a caller mistake."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PortUnavailable, match="AF_XDP needs root"):
        xdp.XdpPort(veth.host_if)
    try:
        port = open_port(veth.host_if)
    except PortError as e:   # the next backend may refuse too (or be missing); xdp's reason is kept
        assert "xdp: AF_XDP needs root" in str(e)
    else:
        with port:
            assert port.info.backend != "xdp" and port.info.fallbacks[0].startswith("xdp: AF_XDP needs root")


def test_a_real_unprivileged_process_gets_the_same_sentence(veth):
    code = textwrap.dedent(f"""
        from netio.port import PortUnavailable
        from netio.xdp import XdpPort
        try:
            XdpPort("{veth.host_if}")
        except PortUnavailable as e:
            print(e)
    """)
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "AF_XDP needs root" in out.stdout, out.stderr


def test_a_foreign_xdp_program_is_named_with_how_to_remove_it(veth):
    from test_netns import _xdp_pass_program
    fd = _xdp_pass_program()
    try:
        attached = iface.attach_xdp(veth.host_if, fd, mode="generic")
    finally:
        os.close(fd)
    with pytest.raises(PortUnavailable, match=f"XDP program {attached.prog_id} \\(generic\\) is already "
                                              f"attached and is not netio's.*xdpgeneric off"):
        xdp.XdpPort(veth.host_if, xdp_mode="generic")
    assert iface.xdp_program(veth.host_if) == attached, "someone else's program is left alone"


def test_a_umem_the_kernel_refuses_is_unavailable_with_what_to_do(veth, monkeypatch):
    """Simulated: nx_open reports the UMEM stage failing with ENOMEM (a locked-memory limit)."""
    real = xdp.lib

    class RefusingLib:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def nx_open(*args):
            stage, err = args[-2], args[-1]
            stage[0], err[0] = 1, 12
            return xdp.ffi.NULL

    monkeypatch.setattr(xdp, "lib", RefusingLib())
    with pytest.raises(PortUnavailable, match="refused to register a 16 MiB UMEM.*ulimit -l"):
        xdp.XdpPort(veth.host_if)


def test_sigint_with_a_handler_that_returns_detaches_and_the_port_still_closes_cleanly(veth):
    """The program's own SIGINT handler runs after ours; the port stays safe to use and close."""
    code = textwrap.dedent(f"""
        import os, signal
        from netio.netns import leftovers
        from netio import iface
        seen = []
        signal.signal(signal.SIGINT, lambda *a: seen.append(a[0]))
        from netio.xdp import XdpPort
        port = XdpPort("{veth.host_if}")
        os.kill(os.getpid(), signal.SIGINT)
        print(seen == [signal.SIGINT], iface.xdp_program("{veth.host_if}") is None, len(port.rx_burst()))
        port.close()
        print("closed")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.split() == ["True", "True", "0", "closed"], out.stderr


def test_a_fused_c_loop_drives_the_port_through_c_api(veth, tmp_path):
    """tools/bench/c/fused_echo.c echoes through XdpPort.c_api()'s table, no Python per burst."""
    import ctypes
    so = tmp_path / "fused_echo.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", os.path.join(ROOT, "cffi_build"), "-o", str(so),
                    os.path.join(ROOT, "tools/bench/c/fused_echo.c")], check=True)
    fused = ctypes.CDLL(str(so)).fused_echo
    fused.restype = ctypes.c_int64
    u64 = ctypes.POINTER(ctypes.c_uint64)
    fused.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                      ctypes.c_int64, u64, ctypes.c_uint64, u64]
    walks, n_walks = (ctypes.c_uint64 * 8)(), ctypes.c_uint64()
    sent = frames_to(veth.host_mac, veth.ns_mac, [64, 128, 1500])
    with xdp.XdpPort(veth.host_if, xdp_mode="native") as port:
        echoed = []

        def echo():
            send_from_namespace(veth, sent)
            port_addr, api_addr = port.c_api()
            echoed.append(fused(port_addr, api_addr, port.umem.ctypes.data, port.umem.nbytes, 200_000_000,
                                5_000_000_000, walks, len(walks), ctypes.byref(n_walks)))
        back = capture_in_namespace(veth, 3, echo)
        assert port.stats().rx_packets == 3 and port.stats().tx_packets == 3
    assert echoed == [3]
    # each frame's poll-to-TX-submit cycles, the window the venue's TOTAL stage measures
    assert n_walks.value == 3 and all(0 < w < 1e9 for w in walks[:3])
    # fused_echo.c sends each frame back to its sender: MACs, IPv4 addresses and UDP ports swapped
    assert back == [f[6:12] + f[:6] + f[12:26] + f[30:34] + f[26:30] + f[36:38] + f[34:36] + f[38:] for f in sent]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a veth gets one queue per CPU at most")
def test_one_socket_per_queue_shares_one_program_and_every_frame_arrives_once(veth):
    """With two queues, each XdpPort takes one; frames land on either, none twice or lost."""
    assert iface.set_queue_count(veth.host_if, 2) == 2
    assert iface.set_queue_count(veth.ns_if, 2, netns=veth.ns_name) == 2
    sent = frames_to(veth.host_mac, veth.ns_mac, [80 + i for i in range(40)])
    with xdp.XdpPort(veth.host_if, queue=0) as q0, xdp.XdpPort(veth.host_if, queue=1) as q1:
        assert q0.info.details["prog_id"] == q1.info.details["prog_id"]
        send_from_namespace(veth, sent)
        got: list[bytes] = []
        end = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < end:
            for port in (q0, q1):
                burst = port.rx_burst()
                got += burst.to_bytes()
                port.release(burst)
        q1.close()
        assert iface.xdp_program(veth.host_if) is not None, "queue 0 still needs the program"
    assert sorted(got) == sorted(sent)
    assert iface.xdp_program(veth.host_if) is None


def test_a_burst_from_another_port_is_refused_on_release(veth):
    sent = frames_to(veth.host_mac, veth.ns_mac, [64])
    with xdp.XdpPort(veth.host_if) as port:
        send_from_namespace(veth, sent)
        end = time.monotonic() + 5
        while not len(burst := port.rx_burst()) and time.monotonic() < end:
            pass
        assert burst.to_bytes() == sent
        port.close()   # frees the queue for a second port on it
        with xdp.XdpPort(veth.host_if) as other, pytest.raises(PortError, match="received on another port"):
            other.release(burst)


def test_an_unclosed_port_is_closed_when_dropped(veth):
    import gc
    port = xdp.XdpPort(veth.host_if)
    port.release(port.rx_burst())
    del port
    gc.collect()
    assert iface.xdp_program(veth.host_if) is None


def test_auto_picks_af_xdp_on_a_veth_and_says_why_not_faster(veth):
    with open_port(veth.host_if) as port:
        assert port.info.backend == "xdp" and port.info.xdp_mode == "native"
        assert port.info.fallbacks and "zero-copy refused" in port.info.fallbacks[0]
        assert "copy mode, native XDP" in port.info.describe()
