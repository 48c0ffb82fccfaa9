"""Interface set-up: look-ups, link state, queue counts, offloads and XDP attachment.

Everything goes through netlink (pyroute2) or the ethtool ioctl, never through
parsing command output. Every function takes ``netns`` (a name under /run/netns)
for interfaces that live in another network namespace, and raises a PortError
that names the interface when it does not exist.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

from pyroute2 import IPRoute, NetNS, netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from netio.port import PortError

# <linux/if_link.h>
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
# IFLA_XDP_ATTACHED values as pyroute2 names them -> our mode names
_ATTACHED_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi"}

# <linux/ethtool.h>, <linux/sockios.h>: the one-flag get/set commands
SIOCETHTOOL = 0x8946
ETHTOOL_GCHANNELS = 0x0000003C
ETHTOOL_SCHANNELS = 0x0000003D
_ETHTOOL_FLAGS = {  # feature -> (get command, set command)
    "tx_checksum": (0x00000016, 0x00000017),   # ETHTOOL_GTXCSUM / ETHTOOL_STXCSUM
    "gro": (0x0000002B, 0x0000002C),           # ETHTOOL_GGRO / ETHTOOL_SGRO
}


@dataclasses.dataclass(frozen=True, slots=True)
class LinkState:
    """What the kernel says about a link."""

    ifname: str
    ifindex: int
    admin_up: bool          # IFF_UP: someone ran `ip link set <if> up`
    carrier: bool           # IFF_LOWER_UP: the other end (cable, veth peer) is there
    operstate: str          # "UP", "DOWN", "UNKNOWN", ...
    mtu: int
    mac: str
    kind: str = ""          # the driver's link kind for virtual links ("veth", "bridge", ...); "" otherwise


@dataclasses.dataclass(frozen=True, slots=True)
class XdpAttachment:
    """The XDP program on an interface."""

    prog_id: int
    mode: str               # "native" | "generic" | "offload" | "multi"


def _where(netns: str | None) -> str:
    return f" in network namespace {netns}" if netns else ""


@contextlib.contextmanager
def _netlink(netns: str | None) -> Iterator[IPRoute]:
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        raise PortError(f"there is no network namespace named {netns}; `ip netns list` lists them")
    ipr = NetNS(netns, flags=0) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _link(ipr: IPRoute, ifname: str, netns: str | None):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise PortError(f"there is no network interface named {ifname}{_where(netns)}; "
                        "`ip link` lists the interfaces there")
    return ipr.get_links(found[0])[0]


def ifindex(ifname: str, *, netns: str | None = None) -> int:
    """The kernel's index of ``ifname``."""
    with _netlink(netns) as ipr:
        return _link(ipr, ifname, netns)["index"]


def link_state(ifname: str, *, netns: str | None = None) -> LinkState:
    """Admin state, carrier, operstate, MTU and MAC of ``ifname``."""
    with _netlink(netns) as ipr:
        link = _link(ipr, ifname, netns)
    flags = link["flags"]
    info = link.get("IFLA_LINKINFO")
    return LinkState(ifname=ifname, ifindex=link["index"], admin_up=bool(flags & 0x1),
                     carrier=bool(flags & 0x10000), operstate=link.get("IFLA_OPERSTATE") or "UNKNOWN",
                     mtu=link.get("IFLA_MTU") or 0, mac=link.get("IFLA_ADDRESS") or "",
                     kind=(info.get("IFLA_INFO_KIND") if info else None) or "")


def _channels(sock: socket.socket, ifname: str, cmd: int = ETHTOOL_GCHANNELS,
              values: tuple[int, ...] = (0,) * 8) -> list[int]:
    """ETHTOOL_GCHANNELS (or SCHANNELS with ``values``): max_rx, max_tx, max_other, max_combined,
    rx, tx, other, combined."""
    channels = ctypes.create_string_buffer(struct.pack("9I", cmd, *values), 36)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, _ifreq(ifname, channels))
    return list(struct.unpack("9I", channels.raw)[1:])


def queue_count(ifname: str, *, netns: str | None = None) -> int:
    """How many queues ``ifname`` has in use (AF_XDP binds one socket per queue)."""
    with _netlink(netns) as ipr:
        allocated = _link(ipr, ifname, netns).get("IFLA_NUM_RX_QUEUES") or 1
    try:
        with _ethtool_socket(netns) as sock:
            _, _, _, _, rx, tx, _, combined = _channels(sock, ifname)
    except OSError:
        return allocated  # the driver does not report channels: every allocated queue counts
    return max(rx, tx, combined) or allocated


def set_queue_count(ifname: str, count: int, *, netns: str | None = None) -> int:
    """Use ``count`` queues on ``ifname`` (combined channels, or as many RX and TX); returns the new count."""
    ifindex(ifname, netns=netns)
    with _ethtool_socket(netns) as sock:
        try:
            current = _channels(sock, ifname)
        except OSError as e:
            raise PortError(f"{ifname}{_where(netns)} does not report its queues ({os.strerror(e.errno)}); "
                            "its driver cannot change them") from e
        max_rx, max_tx, _, max_combined, rx, tx, other, combined = current
        limit = max_combined or min(max_rx, max_tx)
        if not 1 <= count <= limit:
            raise PortError(f"{ifname}{_where(netns)} takes 1 to {limit} queues, not {count}")
        wanted = (0, 0, 0, 0, *((rx, tx, other, count) if max_combined else (count, count, other, combined)))
        try:
            _channels(sock, ifname, ETHTOOL_SCHANNELS, wanted)
        except OSError as e:
            raise PortError(f"cannot set {ifname}{_where(netns)} to {count} queues: {os.strerror(e.errno)}") from e
    return queue_count(ifname, netns=netns)


def xdp_programs(ifname: str, *, netns: str | None = None) -> list[XdpAttachment]:
    """Every XDP program attached to ``ifname`` (a native and a generic one can coexist)."""
    with _netlink(netns) as ipr:
        xdp = _link(ipr, ifname, netns).get("IFLA_XDP")
    mode = xdp.get("IFLA_XDP_ATTACHED") if xdp else None
    if not mode:
        return []
    if mode != "xdpmulti":
        prog_id = xdp.get("IFLA_XDP_PROG_ID")
        return [XdpAttachment(prog_id=prog_id, mode=_ATTACHED_MODES.get(mode, str(mode)))] if prog_id else []
    per_mode = (("IFLA_XDP_DRV_PROG_ID", "native"), ("IFLA_XDP_SKB_PROG_ID", "generic"),
                ("IFLA_XDP_HW_PROG_ID", "offload"))
    return [XdpAttachment(prog_id=xdp.get(attr), mode=name) for attr, name in per_mode if xdp.get(attr)]


def xdp_program(ifname: str, *, netns: str | None = None) -> XdpAttachment | None:
    """The XDP program attached to ``ifname`` (the native one if there are two), or None."""
    attached = xdp_programs(ifname, netns=netns)
    return attached[0] if attached else None


def attach_xdp(ifname: str, prog_fd: int, *, mode: str = "native", replace: bool = False,
               netns: str | None = None) -> XdpAttachment:
    """Attach the loaded BPF program ``prog_fd`` to ``ifname`` in ``mode`` ("native"/"generic")."""
    if mode not in XDP_MODE_FLAGS:
        raise PortError(f"XDP mode must be one of {', '.join(XDP_MODE_FLAGS)}, not {mode!r}")
    flags = XDP_MODE_FLAGS[mode] | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
    with _netlink(netns) as ipr:
        index = _link(ipr, ifname, netns)["index"]
        try:
            ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags)]})
        except NetlinkError as e:
            hint = {errno.EBUSY: "another XDP program is attached; detach it first or pass replace=True",
                    errno.EEXIST: "an XDP program in another mode is attached; detach it first"}.get(e.code, "")
            raise PortError(f"cannot attach the XDP program to {ifname}{_where(netns)} in {mode} mode: "
                            f"{os.strerror(e.code)}{'; ' + hint if hint else ''}") from e
    attached = xdp_program(ifname, netns=netns)
    if attached is None:
        raise PortError(f"the kernel accepted the XDP program for {ifname} but does not report it attached")
    return attached


def detach_xdp(ifname: str, *, netns: str | None = None, prog_id: int | None = None) -> bool:
    """Detach the XDP programs from ``ifname``; with ``prog_id``, only that program.

    Returns whether a program was detached.
    """
    targets = [a for a in xdp_programs(ifname, netns=netns) if prog_id is None or a.prog_id == prog_id]
    with _netlink(netns) as ipr:
        index = _link(ipr, ifname, netns)["index"]
        for attached in targets:
            flags = XDP_MODE_FLAGS.get(attached.mode, 0)
            try:
                ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]})
            except NetlinkError as e:
                raise PortError(f"cannot detach XDP program {attached.prog_id} from {ifname}{_where(netns)}: "
                                f"{os.strerror(e.code)}") from e
    return bool(targets)


def _ethtool_socket(netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The ioctl acts on the namespace the socket was made in.
    return pyroute2_netns.create_socket(netns, socket.AF_INET, socket.SOCK_DGRAM, flags=0)


def _ifreq(ifname: str, data: ctypes.Array) -> bytes:
    return struct.pack("16sP", ifname.encode(), ctypes.addressof(data)).ljust(40, b"\0")


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, _ifreq(ifname, value))
    return struct.unpack("II", value.raw)[1]


def offloads(ifname: str, *, netns: str | None = None) -> dict[str, bool]:
    """The offloads ``set_offloads`` manages, as the kernel reports them now."""
    ifindex(ifname, netns=netns)  # a clear error for a missing interface
    with _ethtool_socket(netns) as sock:
        return {name: bool(_ethtool_value(sock, ifname, get)) for name, (get, _) in _ETHTOOL_FLAGS.items()}


def set_offloads(ifname: str, *, tx_checksum: bool | None = None, gro: bool | None = None,
                 netns: str | None = None) -> dict[str, bool]:
    """Switch TX checksum offload and/or GRO of ``ifname``; None leaves one as it is.

    Returns the resulting state. Veth ends that send to an AF_XDP socket need
    ``tx_checksum=False`` (or frames arrive with partial checksums), and in native
    XDP mode the veth peer of an AF_XDP interface needs ``gro=True``.
    """
    wanted = {"tx_checksum": tx_checksum, "gro": gro}
    ifindex(ifname, netns=netns)
    with _ethtool_socket(netns) as sock:
        for name, on in wanted.items():
            if on is None:
                continue
            try:
                _ethtool_value(sock, ifname, _ETHTOOL_FLAGS[name][1], int(on))
            except OSError as e:
                raise PortError(f"cannot switch {name.replace('_', ' ')} {'on' if on else 'off'} on "
                                f"{ifname}{_where(netns)}: {os.strerror(e.errno)}") from e
        state = {name: bool(_ethtool_value(sock, ifname, get)) for name, (get, _) in _ETHTOOL_FLAGS.items()}
    refused = [name for name, on in wanted.items() if on is not None and state[name] != on]
    if refused:
        raise PortError(f"{ifname}{_where(netns)} kept {', '.join(refused)} as it was; "
                        "the driver does not let it change")
    return state
