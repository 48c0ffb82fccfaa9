"""The venue's fused C path (engine/fastpath.py, cffi_build/fastpath.c) against the
Python pipeline it fuses: the same frames in give the same frames out, byte for byte,
and the same book, risk state and counters; and it runs the venue on AF_XDP."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine import itch, journal, moldudp64
from engine.commands import COMMAND_DTYPE
from engine.matching import Matcher
from engine.venue import Venue
from engine.venue_config import VenueConfig
from netio.pages import huge_page_bytes
from netio.port import Burst
from tests.test_venue import (ROOT, VENUE_IP, VENUE_MAC, Client, MemoryPort, datagram, empty_book, enter, random_flow,
                              split_output)


def run_venue(frames: list[bytes], fused: bool, burst_size: int = 64, per_poll: int = 64, **kw):
    port = MemoryPort()
    clock = iter(range(10**12, 10**13, 1000))
    kw.setdefault("config", VenueConfig())
    venue = Venue(port, VENUE_IP, VENUE_MAC, now_ns=lambda: next(clock), fused=fused, burst_size=burst_size, **kw)
    for k in range(0, len(frames), per_poll):
        port.inbox += frames[k:k + per_poll]
        while venue.poll():
            pass
    venue.close()
    return venue, port.sent


def test_the_fused_path_sends_exactly_the_frames_of_the_python_pipeline_and_leaves_the_same_book():
    """Random flow from three clients, in bursts of 1 to 64 frames: byte-identical
    output frames, the same book hash, risk positions and counters."""
    clients = [Client(f"10.9.0.{20 + i}", 41000 + i) for i in range(3)]
    frames = random_flow(7, 600, clients)
    for per_poll in (1, 7, 64):
        py, sent_py = run_venue(frames, False, per_poll=per_poll)
        fu, sent_fu = run_venue(frames, True, per_poll=per_poll)
        assert len(sent_py) > 50
        assert sent_fu == sent_py
        assert fu.book.state_hash() == py.book.state_hash()
        for name in ("position", "open_buy", "open_sell"):
            assert np.array_equal(getattr(fu.risk, name), getattr(py.risk, name)), name
        cp, cf = py.counters(), fu.counters()
        for key in ("rx_frames", "datagrams", "messages", "commands", "fills", "accepted", "replies",
                    "feed_messages", "tx_frames", "rejects", "message_drops", "feed_next_seq", "live_orders",
                    "stack"):
            assert cf.get(key) == cp.get(key), key
    assert cp["fills"] > 50 and {"unknown_symbol", "invalid_price", "risk_other", "unknown_token"} <= set(cp["rejects"])


def test_the_fused_path_applies_the_configs_limits_with_a_mid_reference_like_the_python_pipeline(tmp_path):
    """Limits from the config (size, a price band around the book's mid, rate): the same
    verdicts, frames and risk state on both paths."""
    (tmp_path / "limits.toml").write_text(
        "[defaults]\nmax_order_qty = 300\norders_per_second = 200\nburst = 50\n\n"
        "[symbols.0]\nreference = \"mid\"\nprice_band_bps = 2\n")
    (tmp_path / "venue.toml").write_text('limits = "limits.toml"\n')
    cfg = VenueConfig.load(tmp_path / "venue.toml")
    clients = [Client(f"10.9.0.{40 + i}", 42000 + i) for i in range(2)]
    frames = random_flow(3, 300, clients)
    py, sent_py = run_venue(frames, False, per_poll=5, config=cfg)
    fu, sent_fu = run_venue(frames, True, per_poll=5, config=cfg)
    assert sent_fu == sent_py
    assert fu.book.state_hash() == py.book.state_hash()
    assert fu.counters()["rejects"] == py.counters()["rejects"]
    assert {"risk_size", "risk_price_band"} <= set(py.counters()["rejects"])


def test_a_burst_whose_caller_did_not_settle_the_last_one_settles_it_first(monkeypatch):
    """fp_settle (risk from the events, the feed into the re-request store) runs once the
    frames are sent; a caller that never calls it still gets every burst checked against
    settled risk and every message stored: frames (a re-request for the flow's last
    messages among them), book and positions are those of the Python pipeline."""
    from engine import fastpath

    class Unsettled:             # engine._fastpath's lib without fp_settle
        def __init__(self, lib):
            self.lib = lib

        def __getattr__(self, name):
            return (lambda v: None) if name == "fp_settle" else getattr(self.lib, name)

    clients = [Client(f"10.9.0.{20 + i}", 41000 + i) for i in range(3)]
    # the flow, then a burst that settles its last one: a datagram to no port, and a
    # request for the flow's last three feed messages
    flow = random_flow(5, 300, clients)
    last = run_venue(flow, False)[0].feed_seq - 3
    ask = moldudp64.request("NETIO00001", last, 3)
    frames = flow + [clients[0].stack.build_udp(Burst.of([b"x"]), VENUE_IP, 9, 41000, VENUE_MAC).to_bytes()[0],
                     clients[0].stack.build_udp(Burst.of([ask]), VENUE_IP, 15002, 41000, VENUE_MAC).to_bytes()[0]]
    py, sent_py = run_venue(frames, False, per_poll=3)
    monkeypatch.setattr(fastpath, "lib", Unsettled(fastpath.lib))
    fu, sent_fu = run_venue(frames, True, per_poll=3)
    assert sent_fu == sent_py and fu.book.state_hash() == py.book.state_hash()
    for name in ("position", "open_buy", "open_sell"):
        assert np.array_equal(getattr(fu.risk, name), getattr(py.risk, name)), name
    assert fu.counters()["stack"]["drops"] == py.counters()["stack"]["drops"] == {"unbound_port": 1}
    assert fu.counters()["retransmitted_messages"] == py.counters()["retransmitted_messages"] == 3


def test_the_fused_path_answers_arp_and_drops_bad_ouch_like_the_python_pipeline():
    """ARP and ICMP answered by the stack's C, malformed SoupBinTCP packets and
    unsupported OUCH types dropped and counted by reason, good messages beside them kept."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether
    a = Client("10.9.0.7", 40007)
    good = datagram(enter("A1", "B", 100, "AAPL", 1_900_000), enter("A2", "S", 100, "AAPL", 1_900_000))
    frames = [bytes(Ether(src="02:00:00:00:00:0c", dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc="02:00:00:00:00:0c", psrc="10.9.0.7", pdst=VENUE_IP)),
              bytes(Ether(src="02:00:00:00:00:0c", dst=VENUE_MAC) / IP(src="10.9.0.7", dst=VENUE_IP) / ICMP()),
              a.frame(good[:20]),                                       # truncated
              a.frame(b"\x00\x00" + b"\x00\x01Z" + good),               # empty, unknown packet type
              a.frame(b"\x00\x01H" + good[:len(good) // 2 + 1] + (26).to_bytes(2, "big") + b"UM" + bytes(25)),
              a.frame(good)]
    _, sent_py = run_venue(frames, False)
    fu, sent_fu = run_venue(frames, True)
    py, _ = run_venue(frames, False)
    assert sent_fu == sent_py
    replies, _, _ = split_output(sent_fu, a.stack)
    assert [r["type"] for r in replies].count("E") >= 2
    assert fu.counters()["message_drops"] == py.counters()["message_drops"]
    assert fu.counters()["message_drops"]
    assert fu.counters()["stack"] == py.counters()["stack"]


def test_sources_beyond_the_client_table_are_dropped_and_counted_on_the_fused_path(monkeypatch):
    import engine.venue
    monkeypatch.setattr(engine.venue, "MAX_CLIENTS", 2)       # room for client 1 only
    a, b = Client("10.9.0.7", 40007), Client("10.9.0.8", 40008)
    frames = [a.frame(datagram(enter("A1", "B", 100, "AAPL", 1_900_000))),
              b.frame(datagram(enter("B1", "S", 100, "AAPL", 1_900_000), enter("B2", "S", 100, "AAPL", 1_900_000))),
              a.frame(datagram(enter("A2", "B", 100, "AAPL", 1_800_000), dict(type="X", order_token="A1", shares=0)))]
    venue, sent = run_venue(frames, True)
    replies, _, _ = split_output(sent, a.stack)
    assert [(r["type"], r["order_token"]) for r in replies] == [("A", "A1"), ("A", "A2"), ("C", "A1")]
    assert split_output(sent, b.stack)[0] == []
    counts = venue.counters()
    assert counts["messages"] == 3 and counts["message_drops"] == {"too_many_clients": 2}


def test_the_fused_path_journals_exactly_the_records_of_the_python_pipeline_and_they_replay_to_its_book(tmp_path):
    """Journal in C: the same commands (risk verdicts included) and the same learned
    clients and tokens, field for field under the same sequence numbers, CRC-checked by
    engine.journal."""
    clients = [Client(f"10.9.0.{60 + i}", 43000 + i) for i in range(3)]
    frames = random_flow(11, 400, clients)
    records, venues = {}, {}
    for fused in (False, True):
        path = tmp_path / f"{fused}.jnl"
        venues[fused], _ = run_venue(frames, fused, per_poll=7, journal=str(path))
        records[fused] = (journal.read(path).records, journal.read(f"{path}.sessions").records)
    for py, fu in zip(records[False], records[True]):
        assert len(fu) > 20
        assert np.array_equal(fu["seq"], py["seq"]) and (fu["payload"] == py["payload"]).all()
    book = empty_book()
    journal.replay(tmp_path / "True.jnl", Matcher(book).run, COMMAND_DTYPE)
    assert book.state_hash() == venues[True].book.state_hash() == venues[False].book.state_hash()


@pytest.mark.parametrize("fused_after", [False, True])
def test_a_venue_restarted_on_a_fused_journal_knows_its_clients_tokens_and_feed(tmp_path, fused_after):
    """The fused path writes a journal a restarted venue (either pipeline) recovers from:
    the same book, the next feed sequence, and a returning client's old order tokens."""
    path, c = tmp_path / "venue.jnl", Client("10.9.0.7", 40007)
    first = [c.frame(datagram(enter(f"K{k}", "BS"[k % 2], 100 * (1 + k % 3), "AAPL", 1_900_000 + 100 * (k % 5 - 2))))
             for k in range(30)] + [c.frame(datagram(enter("REST", "B", 100, "AAPL", 1_880_000)))]
    before, _ = run_venue(first, True, per_poll=4, journal=str(path))
    port = MemoryPort()
    second = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(path), fused=fused_after)
    assert second.book.state_hash() == before.book.state_hash() and second.feed_seq == before.feed_seq
    port.inbox.append(c.frame(datagram(enter("NEW", "B", 100, "MSFT", 4_200_000),
                                       dict(type="X", order_token="REST", shares=0))))
    while second.poll():
        pass
    second.close()
    replies, feed, seqs = split_output(port.sent, c.stack)
    assert [(r["type"], r["order_token"]) for r in replies] == [("A", "NEW"), ("C", "REST")]
    assert seqs == [(before.feed_seq, 2)] and [m["message_type"] for m in feed] == ["A", "D"]
    assert len(journal.read(path).records) == 33


def test_a_burst_the_fused_path_cannot_journal_is_not_sent_and_the_error_says_why(tmp_path):
    """Nothing reaches the wire unjournaled: with the journal's file gone bad, poll raises
    the write's error and no reply of that burst leaves."""
    c = Client("10.9.0.8", 40008)
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(tmp_path / "venue.jnl"), fused=True)
    port.inbox.append(c.frame(datagram(enter("OK1", "B", 100, "AAPL", 1_900_000))))
    venue.poll()
    assert [r["order_token"] for r in split_output(port.sent, c.stack)[0]] == ["OK1"]
    sent = len(port.sent)
    readonly = os.open(tmp_path / "venue.jnl", os.O_RDONLY)
    os.dup2(readonly, venue.journal.fileno())     # the journal's descriptor can no longer write
    os.close(readonly)
    port.inbox.append(c.frame(datagram(enter("LOST", "B", 100, "AAPL", 1_900_000))))
    with pytest.raises(OSError, match="journal"):
        venue.poll()
    venue.close()
    assert len(port.sent) == sent
    assert len(journal.read(tmp_path / "venue.jnl").records) == 1


def test_a_venue_runs_the_fused_path_by_default_only_on_a_port_with_a_c_table():
    venue = Venue(MemoryPort(), VENUE_IP, VENUE_MAC)
    assert not venue.fused
    venue.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_netio_run_with_the_python_pipeline_on_af_xdp_answers_every_order_and_its_fills_match_the_feed(tmp_path):
    """netio-run --pipeline python --backend xdp on a veth (the reference pipeline, where
    the fused C walk is the default: tests/test_venue.py runs that one): every order
    accepted, each cross filled on both sides, the feed's executions those fills, no gap
    in the feed, SIGTERM stops it cleanly."""
    import json
    import signal
    import subprocess
    import sys

    from netio import iface
    from netio.netns import VethNamespace
    from tests.test_venue import CLIENT_SCRIPT, ROOT, venue_address
    n = 60
    v = VethNamespace("vnfp")
    try:
        v.open()
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        venue = subprocess.Popen(
            [sys.executable, "-m", "tools.run", "--iface", v.host_if, "--backend", "xdp", "--ip", venue_address(v),
             "--pipeline", "python", "--hlog", str(tmp_path / "venue.hlog"), "--duration", "30",
             "--final-state", str(tmp_path / "final.json")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            started = [venue.stderr.readline()]
            while started[-1] and not started[-1].startswith("netio-run: venue at"):
                started.append(venue.stderr.readline())
            assert started[-1].rstrip().endswith("Python-driven pipeline"), "".join(started)
            out = v.run([sys.executable, "-c", CLIENT_SCRIPT, venue_address(v), v.ns_ip, str(n)],
                        cwd=ROOT, capture_output=True, text=True, timeout=40)
            assert out.returncode == 0, out.stderr
            got = json.loads(out.stdout)
            venue.send_signal(signal.SIGTERM)
            _, err = venue.communicate(timeout=20)
        finally:
            if venue.poll() is None:
                venue.kill()
        assert venue.returncode == 143, err
        assert iface.xdp_programs(v.host_if) == []
    finally:
        v.close()
    replies, feed, seqs = got["replies"], got["feed"], got["seqs"]
    assert {r["order_token"] for r in replies if r["type"] == "A"} == {f"E{k}" for k in range(1, n)}
    fills = [r for r in replies if r["type"] == "E"]
    assert len(fills) == 2 * (n // 2)
    assert sorted(f["match_number"] for f in fills if f["liquidity_flag"] == "R") == \
        sorted(m["match_number"] for m in feed if m["message_type"] == "E")
    assert seqs and all(s + c == nxt for (s, c), (nxt, _) in zip(seqs, seqs[1:]))
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["counters"]["stack"]["received"] == final["counters"]["rx_frames"]
    assert final["counters"]["commands"] == n and final["counters"]["fills"] == n // 2


def _locked_kb() -> int:
    status = open("/proc/self/status").read()
    return int(status.split("VmLck:")[1].split()[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_IPC_LOCK) to lock all its memory")
def test_lock_memory_makes_the_pages_mapped_later_resident_too_and_unlock_releases_them():
    """A venue's tables are mapped after the lock (numpy zeros and calloc take fresh
    mappings): MCL_FUTURE has them resident at once, so no order pays for a first touch."""
    import mmap
    from engine.fastpath import lock_memory, unlock_memory
    lock_memory()
    try:
        before = _locked_kb()
        table = mmap.mmap(-1, 16 << 20)             # 16 MiB, never touched
        assert _locked_kb() - before >= 16 << 10
        table.close()
    finally:
        unlock_memory()
    assert _locked_kb() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_IPC_LOCK) to lock all its memory")
@pytest.mark.skipif("[never]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read(),
                    reason="transparent huge pages are off on this machine")
def test_huge_pages_moves_a_locked_table_onto_2_mb_pages():
    """Locked memory is resident on 4 kB pages; huge_pages() moves it onto 2 MB pages
    (a table of 16 MiB holds at least seven whole ones, whatever its alignment)."""
    from engine.fastpath import huge_pages, lock_memory, unlock_memory
    lock_memory()
    try:
        table = np.zeros(16 << 20, np.uint8)
        moved, _ = huge_pages()
        assert moved >= 14 << 20 and huge_page_bytes(table) >= 14 << 20
    finally:
        unlock_memory()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_the_benchmarks_c_client_gets_every_order_answered_by_the_venue_and_by_the_c_echo(tmp_path):
    """tools/bench/c/ouch_client.c against the default (fused) venue and against the C
    echo on the same veth: every order answered once by its token, none rejected; the
    venue's telemetry has TX submit and TX completion as separate stages."""
    from pathlib import Path

    from netio import iface
    from netio.netns import VethNamespace
    from tools.bench import venue as bench
    with VethNamespace("vncc") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        b = bench.Bench(v, *bench._compile(Path(tmp_path)))
        run = b.venue(500, 1.0)
        echo = b.echo_run(500, 1.0)
        stalls = b.cpu_stalls(0.2)
        assert iface.xdp_programs(v.host_if) == []
    assert 0 <= stalls["pct_over_10us"] <= stalls["pct_over_2us"] < 100
    assert stalls["per_s_over_10us"] <= stalls["per_s_over_2us"] and stalls["longest_us"] > 0
    assert run["fused"]
    for got in (run["client"], echo):
        assert got["sent"] == got["answered"] == 500 and got["lost"] == 0
        assert got["duplicates"] == got["rejected"] == got["foreign"] == got["send_errors"] == 0
        assert 0 < got["rtt_ns_p50"] <= got["rtt_ns_p99"] <= got["rtt_ns_max"]
    # the echo's own walk (poll to TX submit) for every frame it answered, warm-up included
    assert len(echo["walks_ns"]) >= 500 and (echo["walks_ns"] > 0).all()
    assert {"NetworkRX", "NetworkTX", "TxCompletion", "TOTAL"} <= set(run["stages"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(60)
def test_on_af_xdp_command_timestamps_come_from_the_venues_realtime_clock_model(tmp_path):
    """fp_poll stamps commands by the venue's CLOCK_REALTIME model of the TSC (no
    clock_gettime per burst): a model that says it is the year 2096 puts every journaled
    command there, and set_clock's next model takes over."""
    from pathlib import Path

    from netio import iface
    from netio.clock import ClockModel
    from netio.netns import VethNamespace
    from netio.tsc import frequency, rdtsc
    from tools.bench import venue as bench
    from tools.run import open_venue_port
    future = 4 * 10**18
    model = ClockModel(rdtsc(), future, 1e9 / frequency().hz, 0.0, "CLOCK_REALTIME")
    with VethNamespace("vnck") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        b = bench.Bench(v, *bench._compile(Path(tmp_path)))
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, b.ip, v.host_mac, clock=model, journal=str(tmp_path / "v.jnl"))
            assert venue.fused
            client = b._client(500, 0.5)
            while client.poll() is None:
                venue.poll()
            venue.set_clock(ClockModel(model.tsc0, 2 * future, model.ns_per_cycle, 0.0, "CLOCK_REALTIME"))
            client = b._client(500, 0.2)
            while client.poll() is None:
                venue.poll()
            venue.close()
    ts = journal.read(tmp_path / "v.jnl").records["payload"]["ts"].astype(np.int64)
    assert len(ts) >= 300 and (ts >= future).all() and (ts < future + 10**11).sum() >= 200
    assert (ts >= 2 * future).sum() >= 50


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_on_af_xdp_the_fused_loop_answers_on_its_own_thread_while_python_does_not_poll(tmp_path):
    """Once started, the loop's thread answers every order of the C client although
    Python never calls poll(); close() then collects its telemetry and journal."""
    import json
    from pathlib import Path

    from netio import iface
    from netio.clock import ClockSync, SystemClock
    from netio.netns import VethNamespace
    from tools.bench import venue as bench
    from tools.run import open_venue_port
    with VethNamespace("vnth") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        b = bench.Bench(v, *bench._compile(Path(tmp_path)))
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, b.ip, v.host_mac, journal=str(tmp_path / "v.jnl"),
                          clock=ClockSync(SystemClock()).model)
            assert venue.start()
            out, _ = b._client(400, 0.5).communicate(timeout=30)
            venue.close()
    got = json.loads(out)            # the client counts the orders after its warm-up
    assert got["sent"] == got["answered"] > 0 and got["lost"] == got["rejected"] == 0
    commands = venue.counters()["commands"]
    assert commands >= got["sent"] and len(journal.read(tmp_path / "v.jnl").records) == commands
    assert venue.telemetry.summary()["TOTAL"].total_count == commands


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(60)
def test_the_fused_loops_thread_sends_the_feeds_heartbeats_with_the_next_sequence_number():
    """No order for a while: the thread sends an empty MoldUDP64 packet (the session, the
    next sequence number, count 0) to the feed group about every FEED_HEARTBEAT_S."""
    import struct
    import time

    from engine.venue import FEED_HEARTBEAT_S
    from netio import iface
    from netio.netns import VethNamespace
    from netio.stack import ip_int
    from tests.wire import capture_in_namespace
    cfg = VenueConfig()
    with VethNamespace("vnhb") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        from tools.run import open_venue_port
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, str(v.subnet.network_address + 10), v.host_mac, cfg)
            venue.start()
            frames = capture_in_namespace(v, 2, lambda: time.sleep(2.5 * FEED_HEARTBEAT_S))
            venue.close()
    assert len(frames) == 2 and venue.counters()["feed_heartbeats"] >= 2
    for f in frames:
        ip, udp, payload = f[14:34], f[34:42], f[42:]
        assert struct.unpack("!I", ip[16:20])[0] == ip_int(cfg.feed_group)
        assert struct.unpack("!HH", udp[:4]) == (cfg.feed_port, cfg.feed_port)
        assert payload == cfg.feed_session.encode().ljust(10) + struct.pack("!QH", venue.feed_seq, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(60)
def test_on_af_xdp_the_fused_loops_thread_answers_a_re_request_to_the_asking_socket():
    """A kernel UDP socket in the namespace asks the recovery port for the start of day
    (system event, stock directory): the loop's thread sends those messages back to it."""
    import sys

    from netio import iface
    from netio.netns import VethNamespace
    from tools.run import open_venue_port
    cfg = VenueConfig()
    with VethNamespace("vnrq") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=False, netns=v.ns_name)
        ip = str(v.subnet.network_address + 10)
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, ip, v.host_mac, cfg)
            assert venue.start()
            asker = (f"import socket, sys\nfrom engine import moldudp64\n"
                     f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\n"
                     f"s.sendto(moldudp64.request({cfg.feed_session!r}, 1, 100), ({ip!r}, {cfg.recovery_port}))\n"
                     f"data, src = s.recvfrom(2000)\nsys.stdout.buffer.write(src[0].encode() + b' ' + data)")
            run = v.run([sys.executable, "-c", asker], capture_output=True, cwd=ROOT, timeout=30)
            venue.close()
    assert run.returncode == 0, run.stderr.decode()
    source, answer = run.stdout.split(b" ", 1)
    packet = moldudp64.decode(answer)
    assert source.decode() == ip and (packet.session, packet.sequence) == (cfg.feed_session, 1)
    assert [itch.unpack(m)["message_type"] for m in packet.messages] == ["S"] + ["R"] * len(cfg.symbols)
    assert venue.counters()["retransmitted_messages"] == 1 + len(cfg.symbols)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces, AF_XDP and a real-time process")
@pytest.mark.timeout(60)
def test_the_fused_loops_thread_counts_the_time_the_machine_took_its_cpu():
    """A real-time process that spins for 50 ms on the loop's CPU takes it from the loop:
    counted as a stall at least that long."""
    import subprocess
    import sys

    from netio import iface
    from netio.netns import VethNamespace
    from tools.run import open_venue_port
    cpu = max(os.sched_getaffinity(0))
    spin = "import time\nend = time.monotonic() + 0.05\nwhile time.monotonic() < end: pass"
    with VethNamespace("vnst") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, str(v.subnet.network_address + 10), v.host_mac)
            assert venue.start(cpu)
            spun = subprocess.run(["taskset", "-c", str(cpu), "chrt", "--fifo", "10", sys.executable, "-c", spin],
                                  capture_output=True, text=True, timeout=30)
            venue.close()
    if spun.returncode:
        pytest.skip(f"no real-time process here: {spun.stderr.strip()}")
    c = venue.counters()
    assert c["cpu_stalls"] >= 1 and c["cpu_longest_stall_us"] >= 50_000
    assert c["cpu_stalled_us"] >= c["cpu_longest_stall_us"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(60)
def test_closing_the_port_first_stops_the_fused_loops_thread():
    """The port's close() stops a loop still driving it; the venue then closes cleanly."""
    from netio import iface
    from netio.netns import VethNamespace
    from tools.run import open_venue_port
    with VethNamespace("vncl") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        port = open_venue_port(v.host_if, "xdp", 0)
        venue = Venue(port, str(v.subnet.network_address + 10), v.host_mac)
        assert venue.start() and venue._fused.running
        port.close()
        assert not venue._fused.running
        venue.close()
        assert iface.xdp_programs(v.host_if) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_on_af_xdp_a_burst_the_loops_thread_cannot_journal_ends_it_unsent_and_poll_says_why(tmp_path):
    """Nothing reaches the wire unjournaled on the thread either: it stops at the burst it
    cannot journal, poll() raises the write's error once, and close() finishes."""
    import json
    from pathlib import Path

    from netio import iface
    from netio.netns import VethNamespace
    from tools.bench import venue as bench
    from tools.run import open_venue_port
    with VethNamespace("vnje") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        b = bench.Bench(v, *bench._compile(Path(tmp_path)))
        with open_venue_port(v.host_if, "xdp", 0) as port:
            venue = Venue(port, b.ip, v.host_mac, journal=str(tmp_path / "v.jnl"))
            readonly = os.open(tmp_path / "v.jnl", os.O_RDONLY)
            os.dup2(readonly, venue.journal.fileno())     # the journal's descriptor can no longer write
            os.close(readonly)
            venue.start()
            out, _ = b._client(200, 0.3).communicate(timeout=30)
            with pytest.raises(OSError, match="journal"):
                for _ in range(1000):
                    venue.poll()
            assert venue.poll() == 0
            venue.close()
    got = json.loads(out)
    assert got["sent"] > 0 and got["answered"] == 0
    assert len(journal.read(tmp_path / "v.jnl").records) == 0
