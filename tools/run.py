"""netio-run: a matching venue on a kernel-bypass port (and ``--demo``: the whole show on a veth pair).

``serve`` is the loop: ``Venue.poll`` until a signal, ``--duration`` or the end of a
replayed capture, a status line each second, then a drain (poll until the port has been
quiet for DRAIN_IDLE_S) before the journal, the logs and the port are closed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.venue import Venue
from engine.venue_config import VenueConfig
from netio.clock import ClockSync, SystemClock
from netio.isolation import cpu_share
from netio.port import BACKENDS, Port, PortError, open_port

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PORT, EXIT_VENUE = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM
DRAIN_IDLE_S = 0.2          # on stop: keep polling until the port has been quiet this long
DRAIN_MAX_S = 2.0

EXAMPLES = """
examples:
  sudo netio-run --iface eth0 --ip 10.0.0.1                  venue on eth0, AF_XDP if it can, else sockets
  sudo netio-run --iface eth0 --ip 10.0.0.1 --backend xdp --queue 2 --journal venue.jnl --hlog venue.hlog
  sudo netio-run --iface 0000:3b:00.0 --backend dpdk --dpdk-args "-l 2 -n 4" --ip 10.0.0.1 --mac 0c:42:a1:00:00:01
  sudo netio-run --iface eth0 --ip 10.0.0.1 --config engine/venue.example.toml --duration 60
  sudo netio-run --iface eth0 --ip 10.0.0.1 --pipeline python  the Python-driven reference pipeline
                                                             (AF_XDP runs the fused C walk by default)
  netio-run --iface orders.pcap --backend pcap --ip 10.0.0.1 --mac 02:00:00:00:00:01   replay a capture;
                                                             what the venue sends goes to orders.out.pcap
  sudo netio-run --iface eth0 --ip 10.0.0.1 --cpu 3 --lock-memory   pinned, its memory locked: what a
                                                             latency-sensitive venue wants
  sudo netio-run --demo                                      venue + load generator on a veth pair, then the breakdown
  netio-report venue.hlog                                    per-stage latency of a run afterwards

Order entry is OUCH 4.2 in SoupBinTCP 'U' packets over UDP to --ip:--order-port; replies go
back to the sender; the feed is ITCH 5.0 in MoldUDP64 to --feed-group:--feed-port, and
MoldUDP64 requests to --ip:--recovery-port get the messages asked for back, unicast
(netio-feed --recovery IP:PORT asks there for what it missed).
The venue answers ARP for --ip itself; on the socket backend the kernel sees the frames
too, so there --ip must be an address the kernel does not own (AF_XDP and DPDK take the
frames from it). A status line goes to stderr every second: packets/s, orders/s, fills,
rejects and drops by reason, per-stage p50/p99 in microseconds.

exit status: 0 ran to --duration, 1 the demo's checks failed, 2 usage, 3 the port could
not be opened, 4 the venue could not start (journal, config, --cpu or --lock-memory refused),
130 SIGINT, 143 SIGTERM
(both after a clean shutdown: drained, journal and logs flushed, XDP program detached).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netio-run", description="A matching venue on a kernel-bypass port: "
                                "OUCH 4.2 in, risk, price-time matching, OUCH replies and an ITCH 5.0 feed out.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = VenueConfig()
    p.add_argument("--iface", help="interface (a PCI address for dpdk, a file for pcap)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="port backend; auto tries xdp, then packet sockets (default %(default)s)")
    p.add_argument("--queue", type=int, default=0, help="receive queue (default %(default)s)")
    p.add_argument("--ip", help="the venue's IPv4 address for order entry")
    p.add_argument("--mac", help="the venue's MAC (default: the interface's)")
    p.add_argument("--order-port", type=int, help=f"UDP port for OUCH order entry (default {d.order_port})")
    p.add_argument("--feed-group", help=f"multicast group of the ITCH feed (default {d.feed_group})")
    p.add_argument("--feed-port", type=int, help=f"UDP port of the feed (default {d.feed_port})")
    p.add_argument("--recovery-port", type=int, help="UDP port of the feed's MoldUDP64 re-request server, which "
                   "answers from the feed's latest messages (recovery_messages in --config, default "
                   f"{d.recovery_messages:,}) after each burst's own frames, at most recovery_answers_per_s "
                   f"(default {d.recovery_answers_per_s:,}) a second to each asker and "
                   f"recovery_total_answers_per_s ({d.recovery_total_answers_per_s:,}) to all; 0: none "
                   f"(default {d.recovery_port})")
    p.add_argument("--config", help="venue TOML: symbols, ports, feed, limits (see engine/venue.example.toml)")
    p.add_argument("--journal", help="append every command batch here before acknowledging (replayed on start)")
    p.add_argument("--hlog", help="per-stage latency interval log (HdrHistogram, for netio-report)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")
    p.add_argument("--dpdk-args", help="EAL arguments for --backend dpdk, e.g. \"-l 2 -n 4\"")
    p.add_argument("--pcap-out", help="--backend pcap: write what the venue sends here (default IFACE.out.pcap)")
    p.add_argument("--final-state", help="write the final counters and book hash here as JSON")
    p.add_argument("--demo", action="store_true", help="venue and load generator on a veth pair, then the breakdown")
    p.add_argument("--rate", type=float, default=2000, help="--demo: orders per second (default %(default)s)")
    p.add_argument("--logs", help="--demo: keep venue.hlog and loadgen.hlog in this directory (default: a new one "
                   "under the temporary directory, named at the end)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line")
    p.add_argument("--rx-stamps", choices=("poll", "xdp"), default="poll",
                   help="where latency starts on AF_XDP: poll (default), the TSC when the venue takes a burst; "
                        "xdp, netio's XDP program stamps each frame (the NIC's hardware stamp where the driver "
                        "gives one, else the kernel's clock as XDP sees it), so Network RX shows the kernel's part")
    p.add_argument("--lock-memory", action=argparse.BooleanOptionalAction,
                   help="lock the venue's memory in RAM before it starts (mlockall): no page fault ever stalls "
                        "an order, where otherwise the first touch of each page of its tables does (needs root "
                        "or a large enough memlock limit); its tables then move onto 2 MB pages where the kernel "
                        "can (fewer TLB misses). --demo does unless --no-lock-memory")
    p.add_argument("--cpu", type=int, help="pin the venue's loop to this CPU (keep other work and IRQs off it; "
                   "the fused loop has a thread of its own there and the status line and telemetry run on the "
                   "other CPUs); netio-run says what still shares it (isolcpus, nohz_full, device interrupts) "
                   "and which boot parameters would free it; --demo pins its own")
    p.add_argument("--busy-poll", action="store_true",
                   help="AF_XDP: the venue's loop runs the interface's receive processing itself whenever its ring "
                        "is empty (SO_PREFER_BUSY_POLL) instead of leaving it to interrupts; off by default: on a veth "
                        "the client's send already runs that processing on the client's CPU, and polling for it "
                        "made the light-load tail worse; try it on a NIC whose interrupts land on the venue's CPU")
    p.add_argument("--pipeline", choices=("auto", "fused", "python"), default="auto",
                   help="fused: the whole walk in C per burst (engine/fastpath.py); python: the Python-driven "
                        "reference pipeline; auto (default): fused on a port with a C table (AF_XDP)")
    return p


_FUSED = {"auto": None, "fused": True, "python": False}


def _config(args) -> VenueConfig:
    cfg = VenueConfig.load(args.config) if args.config else VenueConfig()
    changes = {k: v for k, v in (("order_port", args.order_port), ("feed_group", args.feed_group),
                                 ("feed_port", args.feed_port), ("recovery_port", args.recovery_port))
               if v is not None}
    return dataclasses.replace(cfg, **changes)


class PcapReplay(Port):
    """A capture replayed into the venue, everything it sends written to another capture."""

    def __init__(self, source: str, out: str):
        from netio.pcap import PcapPort
        self.reader = PcapPort(source)
        try:
            self.writer = PcapPort(out, mode="w")
        except BaseException:
            self.reader.close()
            raise
        self.info = self.reader.info
        self.info.details["written_to"] = out

    @property
    def exhausted(self) -> bool:
        return self.reader.exhausted

    def rx_burst(self, max_frames: int = 64):
        return self.reader.rx_burst(max_frames)

    def release(self, burst) -> None:
        self.reader.release(burst)

    def tx_burst(self, burst) -> int:
        return self.writer.tx_burst(burst)

    def stats(self):
        stats = self.reader.stats()
        written = self.writer.stats()
        stats.tx_packets, stats.tx_bytes = written.tx_packets, written.tx_bytes
        return stats

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def open_venue_port(iface: str, backend: str, queue: int, dpdk_args: str | None = None,
                    pcap_out: str | None = None, rx_stamps: str = "poll", busy_poll: bool = False) -> Port:
    """The port for a venue: ``auto`` is AF_XDP, else a TPACKET_V2 socket (per-frame wake-ups,
    where V3's block timeout would hold sparse orders for a millisecond); ``pcap`` replays
    the capture ``iface`` and writes what the venue sends to ``pcap_out``. ``rx_stamps="xdp"``
    has AF_XDP frames stamped by netio's XDP program (the NIC's stamp where the driver gives
    one, else the kernel's as XDP sees the frame) instead of when the venue polls them.
    ``busy_poll``: AF_XDP with SO_PREFER_BUSY_POLL, the venue's loop running the
    interface's receive processing in a syscall whenever its ring is empty. Off by
    default: on a veth the sender's transmit already schedules that processing on the
    sender's CPU, and the venue polling for it contends for the same NAPI. In five
    interleaved pairs of 10 s runs at 1,000 orders/s on a quiet machine, busy polling put
    a median 2.2 % of orders over 10 us against 0.28 % without it (worse in four pairs of
    five); single runs have gone either way (tools/bench/venue.py's
    ``internal_busy_poll_*`` beside ``internal_*``)."""
    if backend == "pcap":
        return PcapReplay(iface, pcap_out or str(Path(iface).with_suffix(".out.pcap")))
    options = {"socket": {"ring": "v2"}, "dpdk": {"dpdk_args": dpdk_args} if dpdk_args else {},
               "xdp": {"rx_metadata": rx_stamps == "xdp", "busy_poll": busy_poll}}
    if backend != "auto":
        return open_port(iface, backend, queue, **options.get(backend, {}))
    try:
        return open_port(iface, "xdp", queue, **options["xdp"])
    except PortError as e:
        port = open_port(iface, "socket", queue, **options["socket"])
        port.info.fallbacks.insert(0, f"xdp: {e}")
        return port


def _iface_mac(iface: str) -> str | None:
    try:
        return Path(f"/sys/class/net/{iface}/address").read_text().strip()
    except OSError:
        return None


class Stopper:
    """SIGINT/SIGTERM ask the loop to stop (and drain); a second signal gives up at once."""

    def __init__(self):
        self.signum: int | None = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None:
            from netio import teardown
            teardown.run_all()
            os._exit(128 + signum)
        self.signum = signum

    @property
    def stop(self) -> bool:
        return self.signum is not None


def _status(venue: Venue, elapsed: float, last: dict) -> str:
    c = venue.counters()
    rate = lambda key: (c.get(key, 0) - last.get(key, 0)) / max(elapsed, 1e-9)
    drops = {**c["port_drops"], **c["stack"]["drops"], **c["message_drops"]}
    drops = {k: v for k, v in drops.items() if v}
    parts = [f"{rate('rx_frames'):,.0f} pkt/s", f"{rate('commands'):,.0f} orders/s", f"fills {c.get('fills', 0)}",
             f"live {c['live_orders']}",
             "rejects " + (",".join(f"{k}={v}" for k, v in c["rejects"].items()) or "0"),
             "drops " + (",".join(f"{k}={v}" for k, v in drops.items()) or "0")]
    if "cpu_stalls" in c:       # the fused loop's thread: the machine took its CPU
        parts.append(f"stalls {rate('cpu_stalls'):,.0f}/s (longest {c['cpu_longest_stall_us']:,.0f}us)")
    if venue.telemetry:
        live = venue.telemetry.live()
        parts.append(" ".join(f"{tag} {p50 / 1000:.1f}/{p99 / 1000:.1f}us" for tag, (p50, p99, _) in live.items()))
    last.clear()
    last.update(c)
    return " | ".join(parts)


def serve(venue: Venue, stopper: Stopper, duration: float | None, quiet: bool, sync: ClockSync,
          until=None) -> None:
    """Poll until stopped, the duration is up, or ``until()`` is true; then drain."""
    start = last_status = time.monotonic()
    seen: dict = {}
    tty = sys.stderr.isatty()
    poll = venue.poll
    while not stopper.stop:
        poll()
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        if now - last_status >= 1.0:
            venue.set_clock(sync.update())
            if until is not None and until():
                break
            if not quiet:
                line = _status(venue, now - last_status, seen)
                print(("\r\x1b[K" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
            last_status = now
    quiet_since = time.monotonic()
    deadline = quiet_since + DRAIN_MAX_S
    while time.monotonic() < deadline and time.monotonic() - quiet_since < DRAIN_IDLE_S:
        if poll():
            quiet_since = time.monotonic()
    if tty and not quiet:
        print(file=sys.stderr)


def _prepare(cpu: int | None, lock_memory: bool, who: str) -> bool:
    """--cpu and --lock-memory, before the venue allocates its tables; False: refused (said why)."""
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
            _say_what_shares(cpu, who)
        if lock_memory:
            from engine.fastpath import lock_memory
            lock_memory()
    except (OSError, ValueError) as e:
        print(f"{who}: {e}", file=sys.stderr)
        return False
    return True


def _say_what_shares(cpu: int, who: str) -> None:
    """What else runs on the venue's CPU: the floor under its latency tail."""
    print(f"{who}: {cpu_share(cpu).describe()}", file=sys.stderr)


def _say_stalls(counters: dict, who: str, out=sys.stderr) -> None:
    """How often the machine took the fused loop's CPU: what an order caught then waited."""
    if "cpu_stalls" in counters:
        from engine.fastpath import STALL_S
        print(f"{who}: the machine took the venue loop's CPU {counters['cpu_stalls']:,} times for over "
              f"{STALL_S * 1e6:.0f} us ({counters['cpu_stalled_us'] / 1000:,.1f} ms in all, the longest "
              f"{counters['cpu_longest_stall_us']:,.0f} us): an order it caught took that much longer", file=out)


def _huge_pages(who: str) -> None:
    """--lock-memory's second half, once the venue's tables exist: onto 2 MB pages."""
    from engine.fastpath import huge_pages
    moved, refused = huge_pages()
    print(f"{who}: {moved >> 20} MB of tables on 2 MB pages" + (f" ({refused >> 20} MB the kernel would not move)"
                                                                 if refused else ""), file=sys.stderr)


def _place(venue: Venue, cpu: int, cpus: set[int]) -> None:
    """The venue's loop on ``cpu``: its own thread's where it has one, and this thread (the
    status line, telemetry, clock) then on the other CPUs, where its turns take nothing
    from the loop; else this thread's."""
    if venue.start(cpu):
        os.sched_setaffinity(0, (cpus - {cpu}) or cpus)
    else:
        os.sched_setaffinity(0, {cpu})


def _final_state(venue: Venue, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps({"book_hash": venue.book.state_hash(), "counters": venue.counters()},
                                         indent=1, default=int))


def run_venue(args) -> int:
    try:
        cfg = _config(args)
    except (OSError, ValueError) as e:
        print(f"netio-run: config: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        port = open_venue_port(args.iface, args.backend, args.queue, args.dpdk_args, args.pcap_out, args.rx_stamps,
                               args.busy_poll)
    except (PortError, OSError) as e:
        print(f"netio-run: cannot open {args.iface}: {e}", file=sys.stderr)
        return EXIT_PORT
    try:
        mac = args.mac or _iface_mac(args.iface)
        if not mac:
            print(f"netio-run: --mac is needed: {args.iface} has no MAC address to borrow", file=sys.stderr)
            return EXIT_USAGE
        print(f"netio-run: {port.info.describe()}", file=sys.stderr)
        for step in port.info.fallbacks:
            print(f"netio-run:   not faster because {step}", file=sys.stderr)
        cpus = os.sched_getaffinity(0)
        if not _prepare(args.cpu, args.lock_memory, "netio-run"):
            return EXIT_VENUE
        sync = ClockSync(SystemClock())
        try:
            venue = Venue(port, args.ip, mac, cfg, journal=args.journal, hlog=args.hlog, clock=sync.model,
                          fused=_FUSED[args.pipeline])
        except (OSError, ValueError) as e:
            print(f"netio-run: venue: {e}", file=sys.stderr)
            return EXIT_VENUE
        if args.lock_memory:
            _huge_pages("netio-run")
        stopper = Stopper()
        recovery = f", re-requests to :{cfg.recovery_port}" if cfg.recovery_port else ""
        print(f"netio-run: venue at {args.ip}:{cfg.order_port}, feed {cfg.feed_group}:{cfg.feed_port}{recovery}, "
              f"{len(cfg.symbols)} symbols, {'fused C' if venue.fused else 'Python-driven'} pipeline",
              file=sys.stderr)
        try:
            if args.cpu is not None:
                _place(venue, args.cpu, cpus)
            until = (lambda: port.exhausted) if isinstance(port, PcapReplay) else None
            serve(venue, stopper, args.duration, args.quiet, sync, until=until)
        finally:
            venue.close()
            _final_state(venue, args.final_state)
        counters = venue.counters()
        print("netio-run: " + json.dumps(counters, default=int), file=sys.stderr)
        _say_stalls(counters, "netio-run")
    finally:
        port.close()
    return {None: EXIT_OK, signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}[stopper.signum]


def run_demo(args) -> int:
    """A venue on the root end of a veth pair, the load generator in the namespace, then the report."""
    from netio import iface
    from netio.netns import VethNamespace
    duration = args.duration or 10.0
    out = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="netio-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    venue_hlog, lg_hlog = out / "venue.hlog", out / "loadgen.hlog"
    with VethNamespace("demo") as v:
        # no GRO where the load generator receives: it holds each reply for tens of microseconds
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=False, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        ip = str(v.subnet.network_address + 10)
        try:
            port = open_venue_port(v.host_if, args.backend, 0, args.dpdk_args, rx_stamps=args.rx_stamps,
                                   busy_poll=args.busy_poll)
        except PortError as e:
            print(f"netio-run: cannot open {v.host_if}: {e}", file=sys.stderr)
            return EXIT_PORT
        try:
            print(f"netio-run --demo: {v!r}\nnetio-run --demo: {port.info.describe()}", file=sys.stderr)
            for step in port.info.fallbacks:
                print(f"netio-run --demo:   not faster because {step}", file=sys.stderr)
            if not _prepare(None, args.lock_memory, "netio-run --demo"):
                return EXIT_VENUE
            sync = ClockSync(SystemClock())
            venue = Venue(port, ip, v.host_mac, _config(args), hlog=str(venue_hlog), clock=sync.model,
                          journal=args.journal, fused=_FUSED[args.pipeline])
            print(f"netio-run --demo: {'fused C' if venue.fused else 'Python-driven'} pipeline", file=sys.stderr)
            if args.lock_memory:
                _huge_pages("netio-run --demo")
            stopper = Stopper()
            # a CPU each where there are two: the busy-polling venue and its client would
            # otherwise take turns on one and time each other's stalls
            cpus = sorted(os.sched_getaffinity(0))
            pin = ["taskset", "-c", str(cpus[-1])] if len(cpus) > 1 else []
            cfg = venue.config
            loadgen = v.popen([*pin, sys.executable, "-m", "tools.loadgen", "--venue", f"{ip}:{cfg.order_port}",
                               "--feed-iface", v.ns_ip, "--recovery-port", str(cfg.recovery_port),
                               *(["--venue-config", str(Path(args.config).resolve())] if args.config else []),
                               "--rate", str(args.rate), "--duration", str(duration), "--hlog", str(lg_hlog)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
            try:
                if pin:
                    _say_what_shares(cpus[0], "netio-run --demo")
                    _place(venue, cpus[0], set(cpus))
                serve(venue, stopper, duration + 30, args.quiet, sync, until=lambda: loadgen.poll() is not None)
            finally:
                os.sched_setaffinity(0, cpus)
                venue.close()
                _final_state(venue, args.final_state)
                if loadgen.poll() is None:
                    loadgen.terminate()
                lg_out, _ = loadgen.communicate(timeout=10)
        finally:
            port.close()
    counters = venue.counters()
    print(f"\n=== venue ({port.info.backend}): {json.dumps(counters, default=int)}")
    _say_stalls(counters, "netio-run --demo", sys.stdout)
    print("\n=== load generator (round trip from intended send time, in the namespace)")
    print(lg_out)
    print("=== per-stage latency breakdown (venue.hlog + loadgen.hlog)")
    from tools.report.cli import main as report
    report([str(venue_hlog)] + ([str(lg_hlog)] if lg_hlog.exists() else []))
    print(f"\nlogs kept in {out}  (netio-report {venue_hlog} {lg_hlog})")
    if stopper.signum:
        return 128 + stopper.signum
    return EXIT_OK if loadgen.returncode == 0 else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.lock_memory is None:
        args.lock_memory = args.demo     # the demo shows the venue as a latency-minded user runs it
    if args.demo:
        return run_demo(args)
    if not args.iface or not args.ip:
        parser.print_usage(sys.stderr)
        print("netio-run: --iface and --ip are needed (or --demo)", file=sys.stderr)
        return EXIT_USAGE
    return run_venue(args)


if __name__ == "__main__":
    sys.exit(main())
