"""netio-feed: follow an ITCH 5.0 feed in MoldUDP64, rebuild its books, show the top of each.

The work is engine.feed.FeedHandler's; this is the program around it: where the datagrams
come from (a kernel UDP socket joined to the group, a kernel-bypass port with netio's
stack, or a capture file), a status line each second, and a summary at the end.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time

import numpy as np

from engine.feed import FeedHandler
from engine.venue_config import VenueConfig
from netio import iface as netio_iface
from netio.pcap import PcapPort
from netio.port import Burst, Port, PortError, open_port
from netio.stack import Stack
from netio.udp_socket import UdpSocketPort
from tools.run import Stopper

EXIT_OK, EXIT_STALE, EXIT_USAGE, EXIT_PORT = 0, 1, 2, 3

EXAMPLES = """
examples:
  netio-feed --iface eth0                                  the default group on eth0 (kernel socket)
  netio-feed --iface eth0 --group 233.54.12.1 --port 26400 --session NASDAQ01 --duration 60
  sudo netio-feed --iface eth0 --backend xdp --ip 10.0.0.7 the same from AF_XDP, netio's stack answering
  netio-feed --iface eth0 --recovery 10.0.0.1:15002        ask a re-request server (netio-run's) to fill gaps
  netio-feed --pcap feed.pcap --json                       books rebuilt from a capture, as JSON
  netio-feed --pcap feed.pcap --venue-config engine/venue.example.toml --depth 5

The book of every stock locate below --symbols is rebuilt from Add/Execute/Cancel/Delete/
Replace messages; names come from the feed's Stock Directory messages. Messages are
taken in MoldUDP64 sequence order: duplicates are dropped, and a gap (a sequence number
skipped, or announced by a heartbeat) is counted as lost and reported, after which the
books may be wrong ("stale"). A status line goes to stderr every second.

exit status: 0 the books are whole, 1 messages were lost or did not apply (stale),
2 usage, 3 the source could not be opened, 130/143 SIGINT/SIGTERM.
"""


def _parser() -> argparse.ArgumentParser:
    d = VenueConfig()
    p = argparse.ArgumentParser(prog="netio-feed", description="Follow an ITCH 5.0 feed in MoldUDP64 and "
                                "rebuild its order books.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--iface", help="interface to receive the feed on")
    src.add_argument("--pcap", help="a capture (pcap or pcapng) to read instead")
    p.add_argument("--backend", default="socket", choices=["socket", "xdp", "dpdk", "auto"],
                   help="socket: a kernel UDP socket joined to the group (default); xdp/dpdk/auto: netio's "
                        "stack on a kernel-bypass port (needs --ip)")
    p.add_argument("--ip", help="our IPv4 address on --iface (kernel-bypass backends: IGMP reports, ARP)")
    p.add_argument("--group", default=d.feed_group, help=f"multicast group (default {d.feed_group})")
    p.add_argument("--port", type=int, default=d.feed_port, help=f"UDP port (default {d.feed_port})")
    p.add_argument("--session", help="MoldUDP64 session to follow (default: the first one seen)")
    p.add_argument("--recovery", metavar="HOST:PORT", help="MoldUDP64 retransmission server: gaps are asked for "
                   "there and later messages held until the answer fills them (default: gaps are lost at once)")
    p.add_argument("--gap-timeout", type=float, default=1.0, help="with --recovery: give a gap up after this "
                   "many seconds (default 1)")
    p.add_argument("--venue-config", help="venue TOML: group, port, session and symbols (size and bands of the books)")
    p.add_argument("--symbols", type=int, default=1024, help="stock locates 0..N-1 to keep books for (default 1024)")
    p.add_argument("--orders", type=int, default=1 << 20, help="most resting orders (default 1048576)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C, "
                   "the end of the capture, or End of Session)")
    p.add_argument("--depth", type=int, default=1, help="price levels per side to show (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no status line")
    return p


def _local_ipv4(ifname: str) -> str | None:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for a in ipr.get_addr(family=2, index=netio_iface.ifindex(ifname)):
            return a.get_attr("IFA_ADDRESS")
    return None


def _open(args) -> tuple[Port, Stack | None]:
    """The port and, where frames arrive whole, the stack that takes the datagrams out."""
    if args.pcap:
        stack = Stack("02:00:00:00:00:00", "0.0.0.0")
    elif args.backend == "socket":
        local = _local_ipv4(args.iface)
        if local is None:
            raise PortError(f"{args.iface} has no IPv4 address to join {args.group} on")
        port = UdpSocketPort(f"{args.group}:{args.port}", groups=[args.group], multicast_if=local,
                             rcvbuf=1 << 24)
        return port, None
    else:
        stack = Stack(netio_iface.link_state(args.iface).mac, args.ip)
    stack.join(args.group)
    stack.bind(args.port)
    port = PcapPort(args.pcap) if args.pcap else open_port(args.iface, args.backend)
    if not args.pcap:
        port.tx_burst(stack.join(args.group))
    return port, stack


def _datagrams(port: Port, stack: Stack | None, handler: FeedHandler, port_no: int) -> int:
    """One burst into the handler; returns the frames received."""
    burst = port.rx_burst(256)
    n = len(burst)
    if n:
        if stack is None:
            handler.process(burst.buffer, burst.offsets, burst.lengths)
        else:
            result = stack.process(burst)
            if len(result.replies):
                port.tx_burst(result.replies)
            dg = result.datagrams[result.datagrams["dst_port"] == port_no]
            handler.process(result.buffer, dg["offset"], dg["length"])
        port.release(burst)
    return n


def _status(handler: FeedHandler, rate: float) -> str:
    s = handler.stats()
    drops = sum(handler.drops().values())
    return (f"\rnetio-feed: {s.get('packets', 0):>10,} packets  {rate:>10,.0f} msgs/s  "
            f"next seq {handler.expected or 0:,}  gaps {s.get('gaps', 0)} (lost {s.get('lost', 0)})  "
            f"drops {drops}   ")


def _summary(handler: FeedHandler, depth: int) -> dict:
    book = handler.book
    live = np.flatnonzero(book.count.reshape(-1, 2).sum(axis=1))
    named = np.flatnonzero(handler.names != b"")
    symbols = {}
    for locate in np.union1d(live, named).tolist():
        top = handler.top(locate)
        entry = {"locate": locate, "bid": top.bid, "bid_qty": top.bid_qty, "ask": top.ask, "ask_qty": top.ask_qty,
                 "orders": int(book.count[2 * locate] + book.count[2 * locate + 1])}
        if depth > 1:
            entry.update(handler.depth(locate, depth))
        symbols[handler.names[locate].decode().strip() or f"#{locate}"] = entry
    return {"session": (handler.session or b"").decode(errors="replace").strip(), "next_sequence": handler.expected,
            "end_of_session": handler.ended, "stale": handler.stale, "stats": handler.stats(),
            "gaps": [[g.first, g.count] for g in handler.gaps], "symbols": symbols}


def _price(p: int | None) -> str:
    return "-" if p is None else f"{p / 10_000:.4f}"


def _print(summary: dict, out=sys.stdout) -> None:
    print(f"session {summary['session']!r}  next sequence {summary['next_sequence']}  "
          f"{'END OF SESSION  ' if summary['end_of_session'] else ''}{'STALE' if summary['stale'] else 'whole'}",
          file=out)
    print(f"{'symbol':<10}{'bid qty':>10}{'bid':>12}{'ask':>12}{'ask qty':>10}{'orders':>9}", file=out)
    for name, s in summary["symbols"].items():
        print(f"{name:<10}{s['bid_qty']:>10,}{_price(s['bid']):>12}{_price(s['ask']):>12}{s['ask_qty']:>10,}"
              f"{s['orders']:>9,}", file=out)
        for (bp, bq), (ap, aq) in zip(s.get("bids", [])[1:], s.get("asks", [])[1:]):
            print(f"{'':<10}{bq:>10,}{_price(bp):>12}{_price(ap):>12}{aq:>10,}", file=out)
    print("counts: " + ", ".join(f"{k} {v:,}" for k, v in summary["stats"].items()), file=out)
    if summary["gaps"]:
        print("gaps (first sequence, messages): " + ", ".join(f"{a}+{n}" for a, n in summary["gaps"][:10]), file=out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.recovery and args.pcap:
        print("netio-feed: --recovery asks a live server; a capture cannot answer", file=sys.stderr)
        return EXIT_USAGE
    if args.backend not in ("socket",) and args.iface and not args.ip:
        print(f"netio-feed: --ip is needed with --backend {args.backend}: netio's stack answers for it", file=sys.stderr)
        return EXIT_USAGE
    symbols, refs = args.symbols, 10_000
    if args.venue_config:
        cfg = VenueConfig.load(args.venue_config)
        args.group, args.port, args.session = cfg.feed_group, cfg.feed_port, args.session or cfg.feed_session
        symbols, refs = len(cfg.symbols), np.array([s.reference for s in cfg.symbols])
    try:
        ipaddress.IPv4Address(args.group)
        recovery = UdpSocketPort("0.0.0.0:0", peer=args.recovery) if args.recovery else None
    except (ValueError, PortError) as e:
        print(f"netio-feed: {e}", file=sys.stderr)
        return EXIT_USAGE
    handler = FeedHandler(symbols, session=args.session, pool_size=args.orders, band_ticks=256, ref_price=refs,
                          request=recovery and (lambda r: recovery.tx_burst(Burst.of([r]))),
                          gap_timeout_s=args.gap_timeout)
    try:
        port, stack = _open(args)
    except (PortError, OSError) as e:
        print(f"netio-feed: cannot open {args.pcap or args.iface}: {e}", file=sys.stderr)
        return EXIT_PORT
    stopper = Stopper()
    start = last = time.monotonic()
    last_msgs = 0
    try:
        while not stopper.stop and not handler.ended:
            now = time.monotonic()
            if args.duration is not None and now - start >= args.duration:
                break
            if not _datagrams(port, stack, handler, args.port) and getattr(port, "exhausted", False):
                break
            if recovery is not None:
                _datagrams(recovery, None, handler, args.port)
                handler.poll()
            if now - last >= 1.0 and not args.quiet:
                msgs = handler.stats().get("messages", 0)
                print(_status(handler, (msgs - last_msgs) / (now - last)), end="", file=sys.stderr, flush=True)
                last, last_msgs = now, msgs
    finally:
        port.close()
        if recovery is not None:
            recovery.close()
    if not args.quiet:
        print(file=sys.stderr)
    summary = _summary(handler, args.depth)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        _print(summary)
    if stopper.signum:
        return 128 + stopper.signum
    return EXIT_STALE if handler.stale else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
