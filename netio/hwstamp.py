"""NIC and kernel packet timestamps: what an interface can stamp, turning stamping on, and
reading the stamps (SO_TIMESTAMPING on sockets, TX stamps from the error queue).

Every stamp read here comes back with its TimestampSource; netio.clock puts them on
the calibrated timeline.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

from netio.port import TimestampSource

SO_TIMESTAMPING = 37            # SO_TIMESTAMPING_OLD on x86-64 (asm-generic/socket.h)
SCM_TIMESTAMPING = SO_TIMESTAMPING
SIOCETHTOOL = 0x8946
SIOCSHWTSTAMP = 0x89B0
ETHTOOL_GET_TS_INFO = 0x41
HWTSTAMP_TX_ON = 1
HWTSTAMP_FILTER_ALL = 1
IP_RECVERR = 11
SO_EE_ORIGIN_TIMESTAMPING = 4

# SOF_TIMESTAMPING_* bits (linux/net_tstamp.h)
TX_HARDWARE, TX_SOFTWARE, RX_HARDWARE, RX_SOFTWARE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
SOFTWARE, RAW_HARDWARE, OPT_ID, OPT_TSONLY = 1 << 4, 1 << 6, 1 << 7, 1 << 11
FLAG_NAMES = {TX_HARDWARE: "tx-hardware", TX_SOFTWARE: "tx-software", RX_HARDWARE: "rx-hardware",
              RX_SOFTWARE: "rx-software", SOFTWARE: "software", RAW_HARDWARE: "raw-hardware"}


class _ifreq(ctypes.Structure):
    _fields_ = [("ifr_name", ctypes.c_char * 16), ("ifr_data", ctypes.c_void_p), ("pad", ctypes.c_char * 16)]


@dataclasses.dataclass(frozen=True)
class TsInfo:
    """An interface's timestamping capabilities (ETHTOOL_GET_TS_INFO)."""

    iface: str
    capabilities: frozenset[str]     # FLAG_NAMES values
    phc_index: int                   # -1: no PTP hardware clock
    tx_types: int
    rx_filters: int

    @property
    def phc_path(self) -> str | None:
        return f"/dev/ptp{self.phc_index}" if self.phc_index >= 0 else None

    @property
    def hardware(self) -> bool:
        return {"rx-hardware", "raw-hardware"} <= self.capabilities


def _ioctl_ifreq(iface: str, request: int, payload: ctypes.Array) -> None:
    ifr = _ifreq(iface.encode(), ctypes.addressof(payload))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), request, ifr)


def ts_info(iface: str) -> TsInfo:
    """What ``iface`` can stamp and which PHC it has."""
    if not Path(f"/sys/class/net/{iface}").exists():
        raise OSError(errno.ENODEV, f"no interface {iface!r} (ip link lists them)")
    buf = (ctypes.c_uint32 * 11)(ETHTOOL_GET_TS_INFO)
    _ioctl_ifreq(iface, SIOCETHTOOL, buf)
    so, phc, tx_types, rx_filters = buf[1], ctypes.c_int32(buf[2]).value, buf[3], buf[7]
    caps = frozenset(name for bit, name in FLAG_NAMES.items() if so & bit)
    return TsInfo(iface, caps, phc, tx_types, rx_filters)


def enable_hardware_stamping(iface: str) -> str | None:
    """Ask the NIC to stamp every RX frame and TX on request (SIOCSHWTSTAMP).

    Returns None on success, else one sentence saying why not (the caller falls back to
    kernel software stamps and records the reason).
    """
    config = (ctypes.c_int32 * 3)(0, HWTSTAMP_TX_ON, HWTSTAMP_FILTER_ALL)
    try:
        _ioctl_ifreq(iface, SIOCSHWTSTAMP, config)
    except PermissionError:
        return f"enabling hardware timestamps on {iface} needs CAP_NET_ADMIN: run as root"
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ERANGE):
            return (f"{iface} has no hardware timestamping (SIOCSHWTSTAMP: {os.strerror(e.errno)}); "
                    "using kernel software timestamps")
        raise
    return None


def enable_socket_stamping(sock: socket.socket, *, rx: bool = True, tx: bool = False,
                           hardware: bool = False) -> None:
    """SO_TIMESTAMPING on ``sock``: RX stamps in each recvmsg's ancillary data, TX stamps
    on the error queue numbered by OPT_ID (one per send, counting from 0)."""
    flags = SOFTWARE | (RAW_HARDWARE if hardware else 0)
    if rx:
        flags |= RX_SOFTWARE | (RX_HARDWARE if hardware else 0)
    if tx:
        flags |= TX_SOFTWARE | (TX_HARDWARE if hardware else 0) | OPT_ID | OPT_TSONLY
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)


def parse_stamp(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, TimestampSource]:
    """The stamp in a recvmsg's ancillary data: hardware if present, else software, else none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING and len(data) >= 48:
            sw_s, sw_ns, _, _, hw_s, hw_ns = struct.unpack("6q", data[:48])
            if hw_s or hw_ns:
                return hw_s * 1_000_000_000 + hw_ns, TimestampSource.NIC
            if sw_s or sw_ns:
                return sw_s * 1_000_000_000 + sw_ns, TimestampSource.KERNEL
    return 0, TimestampSource.NONE


def read_tx_stamps(sock: socket.socket) -> list[tuple[int, int, TimestampSource]]:
    """Drain TX stamps from ``sock``'s error queue: (OPT_ID counter, ns, source) each."""
    stamps = []
    while True:
        try:
            _, ancdata, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return stamps
        ns, source, ident = 0, TimestampSource.NONE, None
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING:
                ns, source = parse_stamp([(level, kind, data)])
            elif len(data) >= 16:
                # struct sock_extended_err: errno u32, origin u8, type u8, code u8, pad u8, info u32, data u32
                _, origin, _, _, _, _, ee_data = struct.unpack("IBBBBII", data[:16])
                if origin == SO_EE_ORIGIN_TIMESTAMPING:
                    ident = ee_data
        if ident is not None:
            stamps.append((ident, ns, source))


# The netdev generic-netlink family (Documentation/netlink/specs/netdev.yaml, Linux 6.3+;
# xsk-features 6.8+): what a driver offers XDP programs and AF_XDP sockets.
NETLINK_GENERIC, GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 16, 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
NETDEV_CMD_DEV_GET, NETDEV_A_DEV_IFINDEX = 1, 1
NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, NETDEV_A_DEV_XSK_FEATURES = 5, 6
RX_METADATA_NAMES = {1: "timestamp", 2: "hash", 4: "vlan-tag"}
XSK_FEATURE_NAMES = {1: "tx-timestamp", 2: "tx-checksum", 4: "tx-launch-time-fifo"}


@dataclasses.dataclass(frozen=True)
class NetdevFeatures:
    """What ``iface``'s driver offers XDP (netdev family's dev-get)."""

    xdp_rx_metadata: frozenset[str]   # kfuncs an XDP program can call: "timestamp", "hash", "vlan-tag"
    xsk: frozenset[str]               # AF_XDP TX metadata in zero-copy mode: "tx-timestamp", ...


def _genl(sock: socket.socket, family: int, cmd: int, attrs: list[tuple[int, bytes]]) -> dict[int, bytes]:
    """One generic-netlink request; the reply's attributes (type -> payload)."""
    body = b"".join(struct.pack("HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    sock.send(struct.pack("IHHII", 20 + len(body), family, 1, 1, 0) + struct.pack("BBH", cmd, 1, 0) + body)
    reply = sock.recv(65536)
    length, kind = struct.unpack_from("IH", reply)
    if kind == 2:   # NLMSG_ERROR
        code = -struct.unpack_from("i", reply, 16)[0]
        raise OSError(code, os.strerror(code))
    out, at = {}, 20
    while at + 4 <= length:
        size, t = struct.unpack_from("HH", reply, at)
        out[t & 0x3FFF] = reply[at + 4:at + size]
        at += (size + 3) & ~3
    return out


def netdev_features(iface: str) -> NetdevFeatures | None:
    """The XDP RX metadata and AF_XDP features of ``iface``'s driver; None when this kernel
    has no netdev netlink family (before Linux 6.3)."""
    index = socket.if_nametoindex(iface)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
        try:
            family = _genl(sock, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, [(CTRL_ATTR_FAMILY_NAME, b"netdev\0")])
        except FileNotFoundError:
            return None
        family_id = struct.unpack("H", family[CTRL_ATTR_FAMILY_ID][:2])[0]
        dev = _genl(sock, family_id, NETDEV_CMD_DEV_GET, [(NETDEV_A_DEV_IFINDEX, struct.pack("I", index))])

    def names(attr: int, table: dict[int, str]) -> frozenset[str]:
        bits = int.from_bytes(dev.get(attr, b"")[:8], "little")
        return frozenset(name for bit, name in table.items() if bits & bit)
    return NetdevFeatures(names(NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, RX_METADATA_NAMES),
                          names(NETDEV_A_DEV_XSK_FEATURES, XSK_FEATURE_NAMES))


def _kernel_at_least(major: int, minor: int) -> bool:
    found = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
    return found >= (major, minor)


def xdp_tx_timestamp_support(iface: str, zero_copy: bool = True) -> str | None:
    """Whether AF_XDP TX metadata (XDP_TXMD_FLAGS_TIMESTAMP) can stamp frames sent on
    ``iface``: in zero-copy mode the NIC stamps them (its driver must offer tx-timestamp),
    in copy mode the kernel stamps each at completion (CLOCK_TAI, software). None when it
    can, else why not (one clause)."""
    # TX metadata came in 6.8, but since 6.11 (and its stable backports) the kernel honours
    # tx_metadata_len only with XDP_UMEM_TX_METADATA_LEN, a flag unpatched 6.8-6.10 reject.
    if not _kernel_at_least(6, 11):
        return ("this kernel has no AF_XDP TX metadata with XDP_UMEM_TX_METADATA_LEN "
                "(Linux 6.11 or newer has it)")
    if not zero_copy:
        return None
    features = netdev_features(iface)
    if features is None or "tx-timestamp" not in features.xsk:
        return f"{iface}'s driver offers no AF_XDP TX timestamps (netdev xsk-features lacks tx-timestamp)"
    if "tx-hardware" not in ts_info(iface).capabilities:
        return f"{iface} stamps no sent frames in hardware (ethtool -T {iface})"
    return None


def xdp_rx_timestamp_support(iface: str) -> str | None:
    """Whether an XDP program can read RX timestamps on ``iface`` through the
    bpf_xdp_metadata_rx_timestamp kfunc. None when it can, else why not (one clause)."""
    btf = Path("/sys/kernel/btf/vmlinux")
    if not btf.exists() or b"bpf_xdp_metadata_rx_timestamp" not in btf.read_bytes():
        return "this kernel has no bpf_xdp_metadata_rx_timestamp kfunc (Linux 6.3 or newer with BTF has it)"
    features = netdev_features(iface)
    if features is not None and "timestamp" not in features.xdp_rx_metadata:
        return (f"{iface}'s driver does not implement the RX timestamp kfunc (netdev "
                "xdp-rx-metadata-features lacks timestamp)")
    if not ts_info(iface).hardware:
        return (f"{iface} stamps no frames in hardware (ethtool -T {iface}), so the kfunc has no NIC "
                "stamp to give")
    return None
