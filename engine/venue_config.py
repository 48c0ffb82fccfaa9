"""What a venue and its clients agree on: addresses, ports, feed session and symbols.

Order entry is OUCH 4.2 over UDP: every datagram to ``order_port`` on the venue's address
carries one or more SoupBinTCP 'U' (unsequenced data) packets, each holding exactly one
OUCH inbound message. A client is its source IP:port (its order tokens are its own);
the OUCH Firm of its Enter Orders must be one of ``firms``; replies go back unicast to
that source IP:port as SoupBinTCP 'S' (sequenced data) packets, several per datagram. The market-data feed is ITCH 5.0 in
MoldUDP64 to ``feed_group:feed_port``, session ``feed_session``, at most
``feed_max_payload`` bytes of MoldUDP64 payload per datagram. Its re-request server
(engine.recovery) answers MoldUDP64 requests to ``recovery_port`` (0: none) from the
feed's latest ``recovery_messages`` messages, at most ``recovery_answers_per_s`` a second
to each asking address and ``recovery_total_answers_per_s`` to all of them (0: no
limit), a tenth of a second's worth at once.

Prices on the wire are OUCH/ITCH Price(4) integers (1/10000 dollar); the matching core
works in ticks: ``ticks = price // tick_size``. A symbol's stock locate (ITCH) is its
index in ``symbols`` and its book number in the matching core.

``VenueConfig.load(path)`` reads a TOML file (see ``engine/venue.example.toml``); every
key is optional and defaults to the values below.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from engine.itch import LENGTHS
from engine.moldudp64 import BLOCK_HEADER_LEN, HEADER_LEN, MAX_PAYLOAD

ORDER_PORT = 15000
FEED_GROUP = "239.192.0.1"
FEED_PORT = 15001
FEED_SESSION = "NETIO00001"
FEED_MAX_PAYLOAD = 1400
RECOVERY_PORT = 15002
# a MoldUDP64 header and ITCH 5.0's longest message in its block
MIN_FEED_PAYLOAD = HEADER_LEN + BLOCK_HEADER_LEN + max(LENGTHS.values())
RECOVERY_MESSAGES = 1 << 18
RECOVERY_ANSWERS_PER_S = 1000
RECOVERY_TOTAL_ANSWERS_PER_S = 20_000   # at most some 28 MB/s of answers in 1,400-byte packets


@dataclasses.dataclass(frozen=True)
class Symbol:
    """One instrument: ``name`` (ITCH/OUCH stock, up to 8 characters), reference price
    and tick size in Price(4) units (the reference is a multiple of the tick)."""

    name: str
    reference: int
    tick: int = 100

    def __post_init__(self):
        if not (0 < len(self.name) <= 8 and self.name.isascii()):
            raise ValueError(f"symbol name {self.name!r}: 1..8 ASCII characters")
        if self.tick <= 0 or self.reference <= 0 or self.reference % self.tick:
            raise ValueError(f"symbol {self.name}: reference {self.reference} must be a positive "
                             f"multiple of tick {self.tick}")


DEFAULT_SYMBOLS: tuple[Symbol, ...] = (
    Symbol("AAPL", 1_900_000), Symbol("MSFT", 4_200_000), Symbol("AMZN", 1_800_000),
    Symbol("NVDA", 1_200_000), Symbol("GOOG", 1_700_000), Symbol("META", 5_000_000),
    Symbol("TSLA", 2_500_000), Symbol("INTC", 300_000),
)


@dataclasses.dataclass(frozen=True)
class VenueConfig:
    """Everything a venue and its load generator must agree on (defaults = the house ones).

    ``firms`` lists the OUCH Firm identifiers the venue accepts on Enter Order (others
    are rejected). ``limits`` names a risk limits TOML (``engine/limits.example.toml``
    format: symbols by stock locate, clients by the venue's client id, 1.. in order of
    first appearance); none means no pre-trade limits. ``pool_size`` and ``band_ticks``
    size the books.
    """

    symbols: tuple[Symbol, ...] = DEFAULT_SYMBOLS
    order_port: int = ORDER_PORT
    feed_group: str = FEED_GROUP
    feed_port: int = FEED_PORT
    feed_session: str = FEED_SESSION
    feed_max_payload: int = FEED_MAX_PAYLOAD
    recovery_port: int = RECOVERY_PORT
    recovery_messages: int = RECOVERY_MESSAGES
    recovery_answers_per_s: int = RECOVERY_ANSWERS_PER_S
    recovery_total_answers_per_s: int = RECOVERY_TOTAL_ANSWERS_PER_S
    firms: tuple[str, ...] = ("FIRM", "LOAD", "TEST", "DEMO")
    limits: str | None = None
    pool_size: int = 1 << 16
    band_ticks: int = 4096

    def __post_init__(self):
        if not self.symbols:
            raise ValueError("a venue needs at least one symbol")
        if len({s.name for s in self.symbols}) != len(self.symbols):
            raise ValueError("symbol names must be unique")
        if not 0 <= self.recovery_port <= 65535 or self.recovery_port in (self.order_port, self.feed_port):
            raise ValueError("recovery_port: 0 (no re-request server) or a UDP port of its own")
        if self.recovery_messages < 1 or self.recovery_messages & (self.recovery_messages - 1):
            raise ValueError("recovery_messages: a power of two")
        for key, whom in (("recovery_answers_per_s", "to each asker"), ("recovery_total_answers_per_s", "in all")):
            value = getattr(self, key)
            if type(value) is not int or not 0 <= value <= 10**9:
                raise ValueError(f"{key}: a whole number of answers a second {whom}, at most 1,000,000,000, "
                                 "or 0 for no limit")
        if not MIN_FEED_PAYLOAD <= self.feed_max_payload <= MAX_PAYLOAD:
            raise ValueError(f"feed_max_payload: {MIN_FEED_PAYLOAD}..{MAX_PAYLOAD} bytes (a MoldUDP64 header and "
                             "the longest ITCH message must fit, in one UDP datagram)")
        if len(self.feed_session.encode()) > 10:
            raise ValueError("feed_session: at most 10 characters")
        if any(not (0 < len(f) <= 4 and f.isascii()) for f in self.firms):
            raise ValueError("firms: 1..4 ASCII characters each")

    def locate(self, name: str) -> int:
        """Stock locate of symbol ``name``."""
        for i, s in enumerate(self.symbols):
            if s.name == name:
                return i
        raise KeyError(name)

    @classmethod
    def load(cls, path: str | Path) -> VenueConfig:
        """Read a venue TOML: top-level keys as the fields, ``[[symbols]]`` tables with
        name, reference, tick. A relative ``limits`` path is taken from the file's folder."""
        path = Path(path)
        data = tomllib.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        if "symbols" in data:
            data["symbols"] = tuple(Symbol(**s) for s in data["symbols"])
        if "firms" in data:
            data["firms"] = tuple(data["firms"])
        if data.get("limits"):
            data["limits"] = str(path.parent / data["limits"])
        return cls(**data)
