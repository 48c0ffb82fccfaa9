"""netio-pcap: what is in a capture of trading traffic, flow by flow and message by message.

The frames are read through netio's pcap port and taken apart by netio's stack in watch
mode (every UDP datagram, whatever its addresses); each UDP flow (source and destination
address and port) is then recognised as MoldUDP64 carrying ITCH 5.0, or as OUCH 4.2 in
SoupBinTCP packets (the venue's order entry, either direction), by decoding it with the
engine's own bulk decoders. ``summary`` counts; ``decode`` prints messages.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from engine import itch, moldudp64, ouch
from netio.pcap import PcapPort
from netio.port import PortError
from netio.stack import DATAGRAM_DTYPE, Stack

EXIT_OK, EXIT_USAGE, EXIT_FILE = 0, 2, 3
CHUNK = 4096                # frames per stack call

EXAMPLES = """
examples:
  netio-pcap summary venue.out.pcap                flows, protocols, MoldUDP64 sessions and gaps, message counts
  netio-pcap summary feed.pcap --json              the same as JSON
  netio-pcap decode feed.pcap --limit 20           the first 20 messages, one line each
  netio-pcap decode orders.pcap --flow 10.0.0.1:15000   only datagrams to (or from) that address

A flow is MoldUDP64 if its datagrams parse as MoldUDP64 packets (ITCH 5.0 inside), OUCH if
they parse as SoupBinTCP packets holding OUCH 4.2 messages (inbound from clients, or
outbound from the venue), else plain UDP. tshark decodes MoldUDP64 and OUCH too, but not
ITCH 5.0; this reads both, with the same decoders the venue uses.

exit status: 0 read, 2 usage, 3 the file cannot be read.
"""


@dataclass
class Flow:
    """One direction of one UDP conversation and what it carries."""

    src: str
    dst: str
    datagrams: np.ndarray = field(repr=False)       # DATAGRAM_DTYPE rows, in capture order
    ts: np.ndarray = field(repr=False)              # capture time of each, ns
    index: np.ndarray = field(repr=False)           # position of each among all the capture's datagrams
    protocol: str = "udp"
    counts: Counter = field(default_factory=Counter)
    detail: dict = field(default_factory=dict)


def read(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(file bytes, every UDP datagram as DATAGRAM_DTYPE with offsets into them, their capture
    times in ns, frames that were not UDP datagrams by reason)."""
    port = PcapPort(path)
    stack = Stack.monitor()
    chunks, stamps, others = [], [], Counter()
    buffer = None
    try:
        while True:
            burst = port.rx_burst(CHUNK)
            if not len(burst):
                if port.exhausted:
                    break
                continue
            buffer = burst.buffer
            result = stack.process(burst)
            chunks.append(result.datagrams.copy())
            stamps.append(burst.timestamps[result.datagrams["frame"]])
            others.update(result.drops)
        others.update({f"file_{k}": v for k, v in port.stats().drops.items()})
    finally:
        port.close()
    if buffer is None:
        return np.zeros(0, np.uint8), np.zeros(0, DATAGRAM_DTYPE), np.zeros(0, np.int64), dict(others)
    return buffer, np.concatenate(chunks), np.concatenate(stamps), dict(others)


def _address(ip: int, port: int) -> str:
    return f"{ipaddress.IPv4Address(int(ip))}:{int(port)}"


def _payload(buffer: np.ndarray, dg: np.ndarray) -> bytes:
    return b"".join(buffer[o:o + n].tobytes() for o, n in zip(dg["offset"].tolist(), dg["length"].tolist()))


def flows(buffer: np.ndarray, datagrams: np.ndarray, ts: np.ndarray) -> list[Flow]:
    """The datagrams split into flows, each recognised and counted (busiest flow first)."""
    key = (datagrams["src_ip"].astype(np.uint64) << 16 | datagrams["src_port"]) << 48 \
        | (datagrams["dst_ip"].astype(np.uint64) << 16 | datagrams["dst_port"])
    _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
    out = []
    for k in np.argsort(-sizes, kind="stable").tolist():
        index = np.flatnonzero(inverse == k)
        dg = datagrams[index]
        flow = Flow(_address(dg["src_ip"][0], dg["src_port"][0]), _address(dg["dst_ip"][0], dg["dst_port"][0]),
                    dg, ts[index], index)
        flow.counts["datagrams"], flow.counts["bytes"] = len(dg), int(dg["length"].sum())
        _recognise(buffer, flow)
        out.append(flow)
    return out


def _recognise(buffer: np.ndarray, flow: Flow) -> None:
    dg = flow.datagrams
    mold = moldudp64.decode_views(buffer, dg["offset"], dg["length"])
    if np.count_nonzero(mold.status == 0) * 10 >= len(dg) * 9:
        flow.protocol = "moldudp64"
        _moldudp64(flow, mold)
        return
    data = _payload(buffer, dg)
    for direction, decode in (("in", ouch.decode_inbound), ("out", ouch.decode_outbound)):
        decoded = decode(data, final=True)
        if len(decoded.order_type) and sum(decoded.rejects.values()) * 10 <= len(decoded.order_type):
            flow.protocol, flow.detail["direction"] = f"ouch-{direction}", direction
            flow.counts.update({f"ouch {chr(t)} ({ouch.spec(chr(t), direction).name})": int(n)
                                for t, n in Counter(decoded.order_type.tolist()).items()})
            flow.counts.update({f"dropped: {k}": v for k, v in decoded.rejects.items() if v})
            return


def _moldudp64(flow: Flow, mold: moldudp64.Decoded) -> None:
    good = mold.status == 0
    flow.counts.update({f"dropped: moldudp64 {k}": v for k, v in mold.rejects.items() if v})
    count = mold.headers["count"]
    flow.counts["heartbeats"] = int(np.count_nonzero(good & (count == 0)))
    flow.counts["end_of_session"] = int(np.count_nonzero(good & (count == moldudp64.END_OF_SESSION_COUNT)))
    sessions = {}
    for session in np.unique(mold.headers["session"][good]).tolist():
        seq = mold.sequence[mold.headers["session"][mold.packet] == session].astype(np.int64)
        unique = np.unique(seq)
        holes = np.flatnonzero(np.diff(unique) > 1)
        sessions[session.decode(errors="replace").strip()] = {
            "first": int(unique[0]) if len(unique) else None, "last": int(unique[-1]) if len(unique) else None,
            "messages": len(seq), "duplicates": len(seq) - len(unique),
            "gaps": [[int(unique[h] + 1), int(unique[h + 1] - unique[h] - 1)] for h in holes[:20].tolist()],
            "missing": int((np.diff(unique) - 1).sum()) if len(unique) else 0}
    flow.detail["sessions"] = sessions
    batch = itch.decode_views(mold.buffer, mold.offset, mold.length)
    flow.counts.update({f"itch {chr(t)} ({itch.NAMES[chr(t)]})": int(n)
                        for t, n in Counter(batch.order["type"].tolist()).items()})
    flow.counts.update({f"dropped: itch {k}": v for k, v in batch.rejects.items() if v})


def _messages(data: bytes, flow: Flow):
    """(label, fields) per message of one datagram of ``flow`` (per message: for display)."""
    if flow.protocol == "moldudp64":
        try:
            packet = moldudp64.decode(data)
        except moldudp64.MoldError as e:
            yield "moldudp64", {"error": str(e)}
            return
        if not packet.messages:
            kind = "end of session" if packet.end_of_session else "heartbeat"
            yield f"moldudp64 {kind}", {"session": packet.session, "next_sequence": packet.sequence}
        for i, m in enumerate(packet.messages):
            try:
                yield f"itch #{packet.sequence + i}", itch.unpack(m)
            except itch.ItchError as e:
                yield f"itch #{packet.sequence + i}", {"error": str(e)}
    elif flow.protocol.startswith("ouch"):
        direction = flow.detail["direction"]
        d = (ouch.decode_inbound if direction == "in" else ouch.decode_outbound)(data, final=True)
        for t, i in zip(d.order_type.tolist(), d.order_index.tolist()):
            yield f"ouch-{direction}", ouch.unpack(d.messages[chr(t)][i].tobytes(), direction)
    else:
        yield "udp", {"bytes": len(data)}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip()
    if hasattr(value, "value"):
        return _jsonable(value.value)
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netio-pcap", description="What is in a capture of trading traffic: "
                                "UDP flows, MoldUDP64/ITCH 5.0 and OUCH 4.2.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="flows, protocols, sessions, sequence gaps, message counts")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    d = sub.add_parser("decode", help="one line per message")
    d.add_argument("file")
    d.add_argument("--flow", help="only datagrams from or to this ip:port")
    d.add_argument("--limit", type=int, default=100, help="stop after this many messages (default 100; 0: all)")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def _summary(path: str, buffer, datagrams, ts, others, as_json: bool) -> None:
    fl = flows(buffer, datagrams, ts)
    span = (int(ts.max() - ts.min()) / 1e9) if len(ts) else 0.0
    if as_json:
        json.dump({"file": path, "udp_datagrams": len(datagrams), "seconds": span, "not_udp": others,
                   "flows": [{"src": f.src, "dst": f.dst, "protocol": f.protocol, **f.detail, "counts": dict(f.counts)}
                             for f in fl]}, sys.stdout, indent=1)
        print()
        return
    print(f"{path}: {len(datagrams):,} UDP datagrams over {span:.3f} s"
          + ("; not UDP datagrams: " + ", ".join(f"{k} {v:,}" for k, v in others.items()) if others else ""))
    for f in fl:
        print(f"\n{f.src} -> {f.dst}  {f.protocol}  {f.counts['datagrams']:,} datagrams, {f.counts['bytes']:,} bytes")
        for name, s in f.detail.get("sessions", {}).items():
            print(f"  session {name!r}: sequence {s['first']}..{s['last']}, {s['messages']:,} messages, "
                  f"{s['duplicates']:,} duplicates, {s['missing']:,} missing"
                  + ("  gaps: " + ", ".join(f"{a}+{n}" for a, n in s["gaps"]) if s["gaps"] else ""))
        for k, v in sorted(f.counts.items()):
            if k not in ("datagrams", "bytes") and v:
                print(f"  {k:<48}{v:>12,}")


def _decode(buffer, datagrams, ts, flow: str | None, limit: int, as_json: bool) -> None:
    """Every message, in capture order."""
    fl = [f for f in flows(buffer, datagrams, ts) if not flow or flow in (f.src, f.dst)]
    rows = sorted((i, k, j) for k, f in enumerate(fl) for j, i in enumerate(f.index.tolist()))
    t0 = int(ts.min()) if len(ts) else 0
    shown = 0
    for _, k, j in rows:
        f, row, t = fl[k], fl[k].datagrams[j], int(fl[k].ts[j])
        for label, fields in _messages(buffer[row["offset"]:row["offset"] + row["length"]].tobytes(), f):
            if limit and shown >= limit:
                return
            shown += 1
            if as_json:
                print(json.dumps({"t_ns": t, "src": f.src, "dst": f.dst, "what": label,
                                  **{name: _jsonable(v) for name, v in fields.items()}}))
            else:
                text = " ".join(f"{name}={_jsonable(v)}" for name, v in fields.items())
                print(f"{(t - t0) / 1e9:12.6f} {f.src} > {f.dst} {label}: {text}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        buffer, datagrams, ts, others = read(args.file)
    except (PortError, OSError) as e:
        print(f"netio-pcap: cannot read {args.file}: {e}", file=sys.stderr)
        return EXIT_FILE
    try:
        if args.command == "summary":
            _summary(args.file, buffer, datagrams, ts, others, args.json)
        else:
            _decode(buffer, datagrams, ts, args.flow, args.limit, args.json)
    except BrokenPipeError:         # | head
        sys.stderr.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
