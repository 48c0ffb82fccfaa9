"""AF_XDP zero-copy and native mode on a real NIC driver (skip without NETIO_HW_IFACE)."""
from netio.xdp import XdpPort


def test_zero_copy_native_socket_opens_without_falling_back(hw_iface):
    with XdpPort(hw_iface, queue=0, xdp_mode="native", zero_copy=True) as port:
        assert port.info.zero_copy is True
        assert port.info.xdp_mode == "native"
        assert port.info.fallbacks == []


def test_auto_prefers_zero_copy_where_the_driver_has_it(hw_iface):
    with XdpPort(hw_iface, queue=0) as port:
        assert port.info.zero_copy, f"fell back to copy mode: {port.info.fallbacks}"
