"""The burst API shared by every backend: Burst views, and how backend="auto" falls back."""
import pytest

from netio import port as netio_port
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, open_port


def test_burst_of_frames_keeps_every_byte_and_length():
    frames = [b"\x01" * 60, b"\x02\x03" * 40, b""]
    burst = Burst.of(frames)
    assert len(burst) == 3
    assert burst.to_bytes() == frames
    assert burst.lengths.tolist() == [60, 80, 0]


def test_burst_frames_are_views_not_copies():
    burst = Burst.of([b"abcd", b"efgh"])
    burst.frame(1)[0] = ord("E")
    assert bytes(burst.buffer) == b"abcdEfgh"


def test_empty_burst():
    assert len(Burst.empty()) == 0 and Burst.of([]).to_bytes() == []


class _Unavailable:
    def __init__(self, iface, queue=0, **options):
        raise PortUnavailable("no driver here; load one")


class _Works(Port):
    def __init__(self, iface, queue=0, **options):
        self.info = PortInfo(backend="works", iface=iface, queue=queue)
        self.options = options

    def rx_burst(self, max_frames=64):
        return Burst.empty()

    def tx_burst(self, burst):
        return len(burst)

    def stats(self):
        return PortStats()

    def close(self):
        pass


@pytest.fixture
def fake_backends(monkeypatch):
    classes = {"first": _Unavailable, "second": _Works}
    monkeypatch.setattr(netio_port, "_backend_class", lambda name: classes[name])
    monkeypatch.setattr(netio_port, "AUTO_ORDER", ("first", "second"))


def test_auto_takes_the_first_backend_that_opens_and_says_why(fake_backends):
    with open_port("veth0", backend="auto", queue=2, ring_size=64) as port:
        assert port.info.backend == "works" and port.info.queue == 2
        assert port.info.fallbacks == ["first: no driver here; load one"]
        assert port.options == {"ring_size": 64}


def test_auto_with_nothing_working_names_every_reason(monkeypatch):
    monkeypatch.setattr(netio_port, "_backend_class", lambda name: _Unavailable)
    monkeypatch.setattr(netio_port, "AUTO_ORDER", ("a", "b"))
    with pytest.raises(PortError, match="a: no driver here.*b: no driver here"):
        open_port("veth0")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(PortError, match="unknown backend 'carrier-pigeon'"):
        open_port("veth0", backend="carrier-pigeon")


def test_port_info_describes_itself_in_one_line():
    info = PortInfo(backend="xdp", iface="eth0", zero_copy=False, xdp_mode="native", busy_poll=True,
                    ts_source=netio_port.TimestampSource.KERNEL)
    assert info.describe() == "xdp on eth0 queue 0, copy mode, native XDP, busy-poll, timestamps: kernel-sw"
