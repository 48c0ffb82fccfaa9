"""A network namespace joined to the root namespace by a veth pair: the test bench wire.

    with VethNamespace("xdp") as v:
        v.run(["ping", "-c1", v.host_ip])       # runs inside the namespace
        port = open_port(v.host_if)             # the root end, for AF_XDP or sockets

Everything made here is removed on exit (also when the body raised) and on
SIGINT/SIGTERM; what a process killed outright left is removed by the next VethNamespace
any netio process opens (``reclaim_abandoned``); ``leftovers(prefix)`` lists anything that
is still there.
"""
from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import subprocess
from typing import Any

from pyroute2 import IPRoute, NetNS, netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from netio import iface, teardown

log = logging.getLogger("netio")

IFNAMSIZ = 15            # longest interface name the kernel takes
SUBNETS = 56 * 256       # /24s in 10.200.0.0 - 10.255.255.0 that we hand out
_counter = itertools.count()


def _subnet(index: int) -> ipaddress.IPv4Network:
    index %= SUBNETS
    return ipaddress.IPv4Network(f"10.{200 + index // 256}.{index % 256}.0/24")


def _subnets_in_use() -> set[ipaddress.IPv4Network]:
    with IPRoute() as ipr:
        return {ipaddress.IPv4Interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}").network
                for a in ipr.get_addr(family=2)}


class VethNamespace:
    """A namespace ``ns_name`` holding ``ns_if``, whose veth peer ``host_if`` is in the root namespace.

    Both ends are up with IPv4 addresses ``host_ip``/``ns_ip`` in a /24 of 10.200-255.x.0
    that no root-namespace interface uses (``subnet_index`` picks a fixed one), IPv6
    is off on both (so no neighbour discovery frames appear unasked), and the MACs
    are in ``host_mac``/``ns_mac``.
    """

    def __init__(self, prefix: str, *, subnet_index: int | None = None):
        self._serial = next(_counter)
        base = f"{prefix}{os.getpid():x}x{self._serial:x}"
        if len(base) + 1 > IFNAMSIZ:
            raise ValueError(f"prefix {prefix!r} is too long: interface names are at most {IFNAMSIZ} "
                             f"characters and {base}a is {len(base) + 1}; use a prefix of 5 or fewer")
        self.ns_name = base
        self.host_if = base + "a"
        self.ns_if = base + "b"
        self._subnet_index = subnet_index
        self.subnet: ipaddress.IPv4Network | None = None
        self.host_ip = self.ns_ip = self.host_mac = self.ns_mac = ""
        self._token: int | None = None

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> VethNamespace:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Make the namespace and the veth pair (``with`` does this for you)."""
        reclaim_abandoned()
        self._token = teardown.register(self.close)
        note = teardown.note_path("netns", self.ns_name)
        try:
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text(json.dumps({"pid": os.getpid(), "host_if": self.host_if, "ns_if": self.ns_if}))
            self.subnet = self._pick_subnet()
            hosts = list(itertools.islice(self.subnet.hosts(), 2))
            self.host_ip, self.ns_ip = str(hosts[0]), str(hosts[1])
            pyroute2_netns.create(self.ns_name)
            with IPRoute() as ipr:
                ipr.link("add", ifname=self.host_if, kind="veth",
                         peer={"ifname": self.ns_if, "net_ns_fd": self.ns_name})
                index = ipr.link_lookup(ifname=self.host_if)[0]
                _disable_ipv6(self.host_if)
                ipr.addr("add", index=index, address=self.host_ip, prefixlen=self.subnet.prefixlen)
                ipr.link("set", index=index, state="up")
                self.host_mac = ipr.get_links(index)[0].get("IFLA_ADDRESS")
            self.run(["sysctl", "-qw", f"net.ipv6.conf.{self.ns_if}.disable_ipv6=1"], check=True)
            with NetNS(self.ns_name, flags=0) as ns:
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
                index = ns.link_lookup(ifname=self.ns_if)[0]
                ns.addr("add", index=index, address=self.ns_ip, prefixlen=self.subnet.prefixlen)
                ns.link("set", index=index, state="up")
                self.ns_mac = ns.get_links(index)[0].get("IFLA_ADDRESS")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove XDP programs, the veth pair and the namespace; safe to call twice."""
        if self._token is None:
            return
        teardown.unregister(self._token)
        self._token = None
        _remove(self.ns_name, self.host_if, self.ns_if)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        in_use = _subnets_in_use()
        if self._subnet_index is not None:
            subnet = _subnet(self._subnet_index)
            if subnet in in_use:
                raise RuntimeError(f"subnet {subnet} (subnet_index={self._subnet_index}) is in use; "
                                   "pick another index or leave it to VethNamespace")
            return subnet
        start = os.getpid() * 64 + self._serial
        for step in range(SUBNETS):
            subnet = _subnet(start + step)
            if subnet not in in_use:
                return subnet
        raise RuntimeError("every 10.200-255.x.0/24 subnet is in use")

    # -- commands inside the namespace -------------------------------------------------------
    def _argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns_name, *map(str, argv)]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """``subprocess.run(argv, **kwargs)`` inside the namespace."""
        return subprocess.run(self._argv(argv), **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen(argv, **kwargs)`` inside the namespace."""
        return subprocess.Popen(self._argv(argv), **kwargs)

    def __repr__(self) -> str:
        return (f"<VethNamespace {self.ns_name}: {self.host_if} {self.host_ip} <-> "
                f"{self.ns_if} {self.ns_ip}>")


def _remove(ns_name: str, host_if: str, ns_if: str) -> None:
    """XDP programs, the veth pair, the namespace and its owner note, whichever are there."""
    # Deleting a device drops its XDP program; detach first anyway so that a
    # failure to delete still leaves no program behind.
    for name, where in ((host_if, None), (ns_if, ns_name)):
        try:
            iface.detach_xdp(name, netns=where)
        except Exception:
            pass  # not made yet, or already gone with its namespace
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=host_if):
            try:
                ipr.link("del", index=index)
            except NetlinkError:
                pass  # went with the namespace already
    if os.path.exists(f"/run/netns/{ns_name}"):
        pyroute2_netns.remove(ns_name)
    teardown.note_path("netns", ns_name).unlink(missing_ok=True)


def reclaim_abandoned() -> list[str]:
    """Remove the namespaces and veth pairs of netio processes that died without closing
    them (killed outright: SIGKILL, SIGBUS); returns the namespaces removed, each logged."""
    removed = []
    for note in sorted(teardown.STATE_DIR.glob("netns-*.json")):
        try:
            owner = json.loads(note.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if teardown.alive(int(owner.get("pid", 0))):
            continue
        ns_name = note.name[len("netns-"):-len(".json")]
        try:
            _remove(ns_name, owner["host_if"], owner["ns_if"])
        except (OSError, NetlinkError) as e:     # another process reclaiming the same at once
            log.warning("netio: could not remove namespace %s left by process %s: %s", ns_name, owner["pid"], e)
            continue
        teardown.note_path("xdp", owner["host_if"]).unlink(missing_ok=True)   # netio.xdp's, for the same link
        log.warning("netio: removed namespace %s and veth %s: left by netio process %s, which ended "
                    "without closing them", ns_name, owner["host_if"], owner["pid"])
        removed.append(ns_name)
    return removed


def _disable_ipv6(ifname: str) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")


def leftovers(prefix: str) -> list[str]:
    """Namespaces, root-namespace links and XDP programs whose names start with ``prefix``."""
    found = [f"namespace {name}" for name in pyroute2_netns.listnetns() if name.startswith(prefix)]
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get("IFLA_IFNAME") or ""
            if name.startswith(prefix):
                found.append(f"link {name}")
                found += [f"XDP program {a.prog_id} on {name}" for a in iface.xdp_programs(name)]
    return sorted(found)
