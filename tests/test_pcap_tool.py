"""netio-pcap: a capture's flows recognised and counted, and its messages decoded (tools/pcap.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from engine.venue import Venue
from engine.venue_config import VenueConfig
from netio.pcap import PcapPort
from netio.port import Burst
from tests.test_venue import VENUE_IP, VENUE_MAC, Client, MemoryPort, random_flow

ROOT = Path(__file__).resolve().parents[1]


def netio_pcap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.pcap", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def venue_capture(tmp_path_factory):
    """A capture of a venue's whole conversation (three clients' orders, its replies and
    feed, one ARP request), missing one feed datagram; and the venue's own counters."""
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig())
    orders = random_flow(9, 150, [Client(f"10.9.0.{40 + i}", 43000 + i) for i in range(3)])
    port.inbox = list(orders)
    while venue.poll():
        pass
    counters = venue.counters()
    venue.close()
    feed = [f for f in port.sent if f[0] & 1]
    replies = [f for f in port.sent if not f[0] & 1]
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=VENUE_IP))
    path = tmp_path_factory.mktemp("pcap") / "venue.pcap"
    with PcapPort(path, mode="w") as out:
        out.tx_burst(Burst.of(orders + [arp] + replies + feed[:2] + feed[3:]))
    return path, counters


def test_summary_finds_every_flow_and_counts_what_the_venue_counted(venue_capture):
    path, counters = venue_capture
    run = netio_pcap("summary", path, "--json")
    assert run.returncode == 0, run.stderr
    s = json.loads(run.stdout)
    by_protocol: dict[str, list] = {}
    for flow in s["flows"]:
        by_protocol.setdefault(flow["protocol"], []).append(flow)
    assert sorted(by_protocol) == ["moldudp64", "ouch-in", "ouch-out"]
    assert len(by_protocol["ouch-in"]) == len(by_protocol["ouch-out"]) == 3
    assert s["not_udp"] == {"arp_ignored": 1}

    def ouch_messages(flows):
        return sum(v for f in flows for k, v in f["counts"].items() if k.startswith("ouch "))
    assert ouch_messages(by_protocol["ouch-in"]) == counters["commands"]
    assert ouch_messages(by_protocol["ouch-out"]) == counters["replies"]

    (feed,) = by_protocol["moldudp64"]
    (session,) = feed["sessions"].values()
    itch_messages = sum(v for k, v in feed["counts"].items() if k.startswith("itch "))
    assert session["first"] == 1 and session["last"] == counters["feed_messages"]
    assert session["missing"] == counters["feed_messages"] - itch_messages > 0
    assert len(session["gaps"]) == 1 and session["gaps"][0][1] == session["missing"]


def test_decode_prints_messages_in_capture_order_and_filters_by_flow(venue_capture):
    path, counters = venue_capture
    every = netio_pcap("decode", path, "--limit", "0", "--json")
    lines = [json.loads(line) for line in every.stdout.splitlines()]
    assert lines[0]["what"] == "ouch-in" and lines[0]["type"] == "O"
    assert sum(1 for m in lines if m["what"] == "ouch-in") == counters["commands"]
    feed = netio_pcap("decode", path, "--flow", f"{VenueConfig().feed_group}:{VenueConfig().feed_port}", "--limit", "5")
    assert feed.returncode == 0
    text = feed.stdout.splitlines()
    assert len(text) == 5 and all(" itch #" in line for line in text)
    assert "message_type=S" in text[0] and "message_type=R" in text[1]


def test_a_file_that_is_not_a_capture_is_refused_with_its_name(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    run = netio_pcap("summary", junk)
    assert run.returncode == 3 and "junk.pcap" in run.stderr
    assert netio_pcap("summary").returncode == 2
