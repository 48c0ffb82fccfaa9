"""Test-bench wire helpers shared by the backend tests: frames made by scapy, sent from
inside a VethNamespace and captured there with plain AF_PACKET sockets (independent of
the backend under test)."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

from pyroute2 import netns as pyroute2_netns
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from netio.netns import VethNamespace

# Sends the hex frames read from stdin, one a line, out of the interface in argv[1].
SEND = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((sys.argv[1], 0))
    for line in sys.stdin:
        s.send(bytes.fromhex(line.strip()))
""")
# Prints, as hex, the first argv[2] IPv4 frames arriving on argv[1] (or what came in 5 s).
CAPTURE = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.setsockopt(263, 23, 1)   # SOL_PACKET, PACKET_IGNORE_OUTGOING
    s.bind((sys.argv[1], 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    want, end = int(sys.argv[2]), time.monotonic() + 5
    while want and time.monotonic() < end:
        try:
            print(s.recv(65536).hex(), flush=True)
            want -= 1
        except socket.timeout:
            pass
""")


def frames_to(dst_mac: str, src_mac: str, sizes: list[int], flows: int = 1) -> list[bytes]:
    """IPv4/UDP frames made by scapy, each ``size`` bytes long with a numbered payload;
    ``flows`` different source address/port pairs (for RSS)."""
    out = []
    for i, size in enumerate(sizes):
        head = (Ether(dst=dst_mac, src=src_mac) / IP(src=f"10.9.{i % flows}.1", dst="10.9.0.2")
                / UDP(sport=4000 + i % flows, dport=5000))
        out.append(bytes(head / Raw(bytes((i + j) % 256 for j in range(size - len(head))))))
    return out


def send_from_namespace(v: VethNamespace, frames: list[bytes]) -> None:
    """Send ``frames`` out of the namespace's end of the veth, in order."""
    v.run([sys.executable, "-c", SEND, v.ns_if], input="\n".join(f.hex() for f in frames),
          text=True, check=True, timeout=30)


def capture_in_namespace(v: VethNamespace, count: int, send: Callable[[], object]) -> list[bytes]:
    """The first ``count`` IPv4 frames that arrive on the namespace's end while ``send()`` runs."""
    capture = v.popen([sys.executable, "-c", CAPTURE, v.ns_if, str(count)], stdout=subprocess.PIPE, text=True)
    try:
        assert capture.stdout.readline().strip() == "ready"
        send()
        out, _ = capture.communicate(timeout=30)
    finally:
        capture.kill()
    return [bytes.fromhex(line) for line in out.split()]


def ns_socket(v: VethNamespace, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket made inside ``v``'s namespace."""
    return pyroute2_netns.create_socket(v.ns_name, family, kind, proto, flags=0)
