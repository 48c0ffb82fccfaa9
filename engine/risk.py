"""Pre-trade risk: every ENTER and REPLACE is checked in C before the batch is matched.

``RiskEngine.check(commands)`` writes a verdict into each command's ``risk`` field
(0 = pass, else a ``RejectReason``); the matching core then rejects the marked
commands in order and touches nothing for them. After matching,
``RiskEngine.on_events(commands, events)`` settles the batch from the core's events
(accepts, fills, cancels, replaces, rejects), so risk never needs the book's layout.
CANCEL and mass cancels always pass: they only reduce risk.

The checks, in this order (the first that fails is the verdict)::

    client id outside the configured clients      RISK_OTHER         'O' other
    global kill switch on                         RISK_KILL_SWITCH   'a' reject all enabled
    client kill switch on                         RISK_KILL_SWITCH   'a' reject all enabled
    client's order rate: token bucket empty       RISK_RATE          'O' other
    ENTER symbol outside the configured symbols   RISK_OTHER         'O' other
    qty > max order qty                           RISK_SIZE          'Z' shares exceed safety threshold
    |price - reference| > band                    RISK_PRICE_BAND    'X' invalid price
    price * qty * lot > max notional              RISK_NOTIONAL      'n' exceeded dollar value limit
    position + open buys + qty > long limit       RISK_POSITION      'm' exceeded shares limit
    position - open sells - qty < -short limit    RISK_POSITION      'm' exceeded shares limit
    no room left to follow one more live order    RISK_OTHER         'O' other

OUCH 4.2 codes: the letters are ``engine.commands.OUCH_REJECT_CODE``, the one map the
OUCH encoder uses. OUCH 4.2 has no throttling code, so the rate limit is 'O' other.

Rule details:

* The token bucket runs on the command's own timestamp (``ts``, ns), so a replay or a
  test gets the same verdicts: ``orders_per_second`` refill, ``burst`` depth, one order
  per ENTER/REPLACE, charged even when a later check rejects it; a timestamp going
  backwards refills nothing. Integer arithmetic in nano-orders, no rounding drift.
* The price band is ``price_band_bps`` basis points either side of the symbol's
  reference: the last trade (``last``), the mid of the best bid and offer at the start
  of the batch (``mid``, both sides needed), or ``static_price`` (``static``). Without
  the chosen reference the static price stands in; without that, no band applies.
  Market orders have no band; their notional is valued at the reference (0 if none).
* Position limits count open orders: a buy passes if position + open buy shares + its
  shares stays at or under ``long_limit``; a sell if position - open sell shares - its
  shares stays at or over ``-short_limit``. A REPLACE counts only the shares it adds
  to the order's open size (none when it shrinks). Orders that pass are reserved
  straight away, so later commands of the same batch see them.
* A REPLACE is checked with the symbol and side of the order it replaces (risk follows
  every live order by (client, token)); one for a token that is not live passes on to
  the core, which rejects it as UNKNOWN_TOKEN.
* Limits swap whole between batches (``load``, ``update_limits``); kill switches are
  read per command, so a toggle applies from the next command checked.

A venue's batch: ``check`` -> journal the checked commands -> match -> ``on_events`` ->
replies. Recovery replays the journal through the core and ``follow``s its events.

Per (client, symbol) limits resolve as: the client's ``[clients.N.symbols.M]`` entry,
else the tighter of ``[clients.N]`` and ``[symbols.M]``, else ``[defaults]``, else no
limit. See ``engine/limits.example.toml``.
"""
from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
from pathlib import Path

import numpy as np

from engine._risk import ffi, lib
from engine.commands import COMMAND_DTYPE, EVENT_DTYPE, RejectReason

NO_LIMIT = np.iinfo(np.int64).max

#: What check() reserved per command, for on_events(); mirrors struct risk_hold.
HOLD_DTYPE = np.dtype([("qty", "<i8"), ("symbol", "<u2"), ("side", "u1"), ("entered", "u1"),
                       ("pad", "<u4")], align=True)

#: One slot of risk's (client, token) order table; mirrors struct risk_order.
ORDER_SLOT_DTYPE = np.dtype([("token", "<u8"), ("client", "<u4"), ("leaves", "<u4"), ("symbol", "<u2"),
                             ("side", "u1"), ("state", "u1"), ("pad", "<u4")], align=True)

_CTR_LIVE, _CTR_MAX_ORDERS, _CTR_UNTRACKED = range(3)     # risk.c RISK_CTR_*
_LIVE, _PENDING = 1, 2                                     # risk.c order table states


class RefMode(enum.IntEnum):
    """Reference price of a symbol's price band."""

    LAST = 0      # last trade price
    MID = 1       # (best bid + best offer) / 2 at the start of the batch
    STATIC = 2    # the configured static price


# TOML key -> Limits field, by where the key may appear.
_CELL_KEYS = {"max_order_qty": "max_qty", "max_notional": "max_notional",
              "long_limit": "long_limit", "short_limit": "short_limit"}
_SYMBOL_KEYS = {"price_band_bps", "reference", "static_price", "lot"}
_CLIENT_KEYS = {"orders_per_second", "burst"}


@dataclasses.dataclass(frozen=True, eq=False)
class Limits:
    """Every limit as read-only numpy arrays; replaced whole, never edited in place."""

    max_qty: np.ndarray        # int64 [client, symbol] shares
    max_notional: np.ndarray   # int64 [client, symbol] price ticks * shares * lot
    long_limit: np.ndarray     # int64 [client, symbol] shares
    short_limit: np.ndarray    # int64 [client, symbol] shares (a magnitude)
    lot: np.ndarray            # int64 [symbol]
    band_bps: np.ndarray       # int32 [symbol], -1 = no band
    static_ref: np.ndarray     # int32 [symbol] ticks, 0 = none
    ref_mode: np.ndarray       # uint8 [symbol] RefMode
    rate: np.ndarray           # int64 [client] orders per second, -1 = unlimited
    burst: np.ndarray          # int64 [client] orders

    def __post_init__(self):
        for f in dataclasses.fields(self):
            getattr(self, f.name).flags.writeable = False

    @property
    def shape(self) -> tuple[int, int]:
        """(clients, symbols)"""
        return self.max_qty.shape

    @classmethod
    def unlimited(cls, clients: int, symbols: int) -> Limits:
        """No limit at all: every check passes."""
        cell = np.full((clients, symbols), NO_LIMIT, np.int64)
        return cls(cell, cell.copy(), cell.copy(), cell.copy(), np.ones(symbols, np.int64),
                   np.full(symbols, -1, np.int32), np.zeros(symbols, np.int32),
                   np.zeros(symbols, np.uint8), np.full(clients, -1, np.int64), np.zeros(clients, np.int64))

    @classmethod
    def from_config(cls, config: dict, clients: int, symbols: int) -> Limits:
        """Limits from a parsed TOML document (see engine/limits.example.toml)."""
        unknown = set(config) - {"defaults", "symbols", "clients"}
        if unknown:
            raise ValueError(f"risk limits: unknown section(s) {sorted(unknown)}")
        defaults = config.get("defaults", {})
        _check_keys("[defaults]", defaults, set(_CELL_KEYS) | _SYMBOL_KEYS | _CLIENT_KEYS)
        sym_cfg = _by_id("symbols", config.get("symbols", {}), symbols)
        cli_cfg = _by_id("clients", config.get("clients", {}), clients)
        for s, t in sym_cfg.items():
            _check_keys(f"[symbols.{s}]", t, set(_CELL_KEYS) | _SYMBOL_KEYS)
        cell_cfg = {}
        for c, t in cli_cfg.items():
            _check_keys(f"[clients.{c}]", t, set(_CELL_KEYS) | _CLIENT_KEYS | {"symbols"})
            for s, cell in _by_id(f"clients.{c}.symbols", t.get("symbols", {}), symbols).items():
                _check_keys(f"[clients.{c}.symbols.{s}]", cell, set(_CELL_KEYS))
                cell_cfg[c, s] = cell

        lim = cls.unlimited(clients, symbols)
        arrays = {f.name: getattr(lim, f.name).copy() for f in dataclasses.fields(lim)}
        for key, name in _CELL_KEYS.items():
            a = arrays[name]
            if key in defaults:
                a[:] = _int(key, defaults[key])
            given = np.zeros((clients, symbols), bool)
            tight = np.full((clients, symbols), NO_LIMIT, np.int64)
            for s, t in sym_cfg.items():
                if key in t:
                    tight[:, s] = np.minimum(tight[:, s], _int(key, t[key]))
                    given[:, s] = True
            for c, t in cli_cfg.items():
                if key in t:
                    tight[c, :] = np.minimum(tight[c, :], _int(key, t[key]))
                    given[c, :] = True
            a[given] = tight[given]
            for (c, s), cell in cell_cfg.items():
                if key in cell:
                    a[c, s] = _int(key, cell[key])
        for s in range(symbols):
            t = {**defaults, **sym_cfg.get(s, {})}
            arrays["lot"][s] = _int("lot", t.get("lot", 1), low=1)
            arrays["band_bps"][s] = _int("price_band_bps", t.get("price_band_bps", -1), low=-1)
            arrays["static_ref"][s] = _int("static_price", t.get("static_price", 0), high=2**31 - 1)
            mode = t.get("reference", "last")
            try:
                arrays["ref_mode"][s] = RefMode[str(mode).upper()]
            except KeyError:
                raise ValueError(f"risk limits: reference {mode!r} is not one of last, mid, static") from None
        for c in range(clients):
            t = {**defaults, **cli_cfg.get(c, {})}
            if "orders_per_second" in t:
                rate = _int("orders_per_second", t["orders_per_second"])
                arrays["rate"][c] = rate
                arrays["burst"][c] = _int("burst", t.get("burst", max(1, rate)), low=1, high=10**9)
        return cls(**arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, clients: int, symbols: int) -> Limits:
        """Limits from a TOML file."""
        with open(path, "rb") as f:
            return cls.from_config(tomllib.load(f), clients, symbols)

    def with_changes(self, client: int | None = None, symbol: int | None = None, **values) -> Limits:
        """A copy with some limits changed, e.g. ``with_changes(client=3, long_limit=100)``.

        ``values`` are Limits field names; per-(client, symbol) fields change the
        client's row, the symbol's column, or one cell; per-symbol fields need ``symbol``
        (or change all symbols), per-client fields ``client`` (or all clients).
        """
        arrays = {f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)}
        for name, value in values.items():
            if name not in arrays:
                raise ValueError(f"no limit named {name!r}; choose from {sorted(arrays)}")
            a = arrays[name]
            if a.ndim == 2:
                a[slice(None) if client is None else client, slice(None) if symbol is None else symbol] = value
            elif name in ("rate", "burst"):
                a[slice(None) if client is None else client] = value
            else:
                a[slice(None) if symbol is None else symbol] = value
        return Limits(**arrays)


def _by_id(where: str, table: dict, count: int) -> dict[int, dict]:
    out = {}
    for key, value in table.items():
        try:
            i = int(key)
        except ValueError:
            raise ValueError(f"risk limits: [{where}.{key}]: ids are integers") from None
        if not 0 <= i < count:
            raise ValueError(f"risk limits: [{where}.{key}]: id outside 0..{count - 1}")
        out[i] = value
    return out


def _check_keys(where: str, table: dict, allowed: set[str]) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"risk limits: {where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _int(key: str, value, low: int = 0, high: int = NO_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"risk limits: {key} = {value!r} is not an integer in {low}..{high}")
    return value


def _ptr(ctype: str, a: np.ndarray):
    return ffi.cast(ctype, ffi.from_buffer(a))


class RiskEngine:
    """Risk state (positions, open quantities, buckets, live orders) and its checks.

    Per batch: ``check(commands)``, match, ``on_events(commands, events)``; every
    checked batch must be settled before the next is checked.
    """

    def __init__(self, clients: int, symbols: int, limits: Limits | None = None, max_orders: int = 1 << 16):
        self.clients, self.symbols = clients, symbols
        self.max_orders = max_orders
        self.position = np.zeros((clients, symbols), np.int64)
        self.open_buy = np.zeros((clients, symbols), np.int64)
        self.open_sell = np.zeros((clients, symbols), np.int64)
        self.last_trade = np.zeros(symbols, np.int32)
        self.bucket = np.full(clients, NO_LIMIT, np.int64)     # full; clamped to each burst
        self.bucket_ts = np.zeros(clients, np.uint64)
        self.client_kill = np.zeros(clients, np.uint8)
        self.global_kill = np.zeros(1, np.uint8)
        self.rejects = np.zeros(256, np.int64)                 # by RejectReason
        size = 1 << max(4, (2 * max_orders - 1).bit_length())
        self._table = np.zeros(size, ORDER_SLOT_DTYPE)
        self._counters = np.zeros(3, np.int64)
        self._counters[_CTR_MAX_ORDERS] = max_orders
        st = ffi.new("struct risk_state *")
        st.n_clients, st.n_symbols, st.mask = clients, symbols, size - 1
        for name, ctype in (("position", "int64_t *"), ("open_buy", "int64_t *"), ("open_sell", "int64_t *"),
                            ("last_trade", "int32_t *"), ("bucket", "int64_t *"), ("bucket_ts", "uint64_t *"),
                            ("client_kill", "uint8_t *"), ("global_kill", "uint8_t *")):
            setattr(st, name, _ptr(ctype, getattr(self, name)))
        st.table = _ptr("struct risk_order *", self._table)
        st.counters = _ptr("int64_t *", self._counters)
        self._state = st
        self._holds = np.zeros(0, HOLD_DTYPE)
        self.update_limits(limits or Limits.unlimited(clients, symbols))

    @classmethod
    def from_file(cls, path: str | os.PathLike, clients: int, symbols: int, **kw) -> RiskEngine:
        return cls(clients, symbols, Limits.load(path, clients, symbols), **kw)

    # ---- limits and switches -------------------------------------------------------

    @property
    def limits(self) -> Limits:
        return self._active[0]

    def load(self, path: str | os.PathLike) -> Limits:
        """Read a TOML limits file and swap it in for the next batch."""
        limits = Limits.load(Path(path), self.clients, self.symbols)
        self.update_limits(limits)
        return limits

    def update_limits(self, limits: Limits | None = None, *, client: int | None = None,
                      symbol: int | None = None, **values) -> None:
        """Swap in ``limits``, or the current ones with ``values`` changed (see Limits.with_changes)."""
        if limits is None:
            limits = self.limits.with_changes(client, symbol, **values)
        elif values or client is not None or symbol is not None:
            raise TypeError("give either a Limits or changes, not both")
        if limits.shape != (self.clients, self.symbols):
            raise ValueError(f"limits are for {limits.shape} (clients, symbols), engine has "
                             f"{(self.clients, self.symbols)}")
        c = ffi.new("struct risk_limits *")
        c.n_clients, c.n_symbols = self.clients, self.symbols
        for f in dataclasses.fields(limits):
            a = getattr(limits, f.name)
            setattr(c, f.name, _ptr(ffi.typeof(getattr(c, f.name)), a))
        self._active = (limits, c)        # one assignment: a batch sees old or new, never a mix

    def kill_client(self, client: int, on: bool = True) -> None:
        """Reject every new order and replace of ``client`` from the next command on."""
        self.client_kill[client] = on

    def kill_all(self, on: bool = True) -> None:
        """Reject every new order and replace of every client from the next command on."""
        self.global_kill[0] = on

    # ---- the batch -----------------------------------------------------------------

    def check(self, commands: np.ndarray, best_bid: np.ndarray | None = None,
              best_ask: np.ndarray | None = None) -> np.ndarray:
        """Check a batch in place; return its verdicts (a view of ``commands["risk"]``).

        ``best_bid``/``best_ask``: best prices per symbol now (0 = none), needed only for
        symbols whose band reference is the mid.
        """
        _need(commands, COMMAND_DTYPE, "commands")
        _, c_limits = self._active
        bid = ask = ffi.NULL
        if best_bid is not None and best_ask is not None:
            best_bid = np.ascontiguousarray(best_bid, np.int32)
            best_ask = np.ascontiguousarray(best_ask, np.int32)
            if len(best_bid) < self.symbols or len(best_ask) < self.symbols:
                raise ValueError(f"best_bid/best_ask need {self.symbols} symbols")
            bid, ask = _ptr("int32_t *", best_bid), _ptr("int32_t *", best_ask)
        self._holds = np.zeros(len(commands), HOLD_DTYPE)
        lib.risk_check(c_limits, self._state, ffi.from_buffer(commands), len(commands), bid, ask,
                       _ptr("struct risk_hold *", self._holds))
        self.rejects += np.bincount(commands["risk"], minlength=256)
        return commands["risk"]

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Settle the batch last checked from the matching core's events for it."""
        _need(commands, COMMAND_DTYPE, "commands")
        _need(events, EVENT_DTYPE, "events")
        if len(commands) != len(self._holds):
            raise ValueError("on_events() needs the batch that check() last saw")
        if len(events) and int(events["cmd"].max()) >= len(commands):
            raise ValueError("an event refers to a command outside the batch")
        lib.risk_apply(self._state, ffi.from_buffer(commands), _ptr("struct risk_hold *", self._holds),
                       ffi.from_buffer(events), len(events))
        self._holds = np.zeros(0, HOLD_DTYPE)

    def follow(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Settle a batch that was not checked here, e.g. replayed from the journal.

        The events alone carry what the state needs (accepts, fills, cancels,
        replaces); token buckets are not replayed.
        """
        self._holds = np.zeros(len(commands), HOLD_DTYPE)
        self.on_events(commands, events)

    # ---- inspection ----------------------------------------------------------------

    @property
    def live_orders(self) -> int:
        """Orders risk follows right now (live, or passed and not yet settled)."""
        return int(self._counters[_CTR_LIVE])

    @property
    def untracked(self) -> int:
        """Events about orders risk could not follow (should stay 0)."""
        return int(self._counters[_CTR_UNTRACKED])

    @property
    def pending_orders(self) -> int:
        """Orders passed by check() that the core has not yet accepted or rejected."""
        return int(np.count_nonzero(self._table["state"] == _PENDING))

    def orders(self) -> dict[tuple[int, int], tuple[int, int, int]]:
        """Live orders: (client, token) -> (symbol, side, open shares). For tests and tools."""
        live = self._table[self._table["state"] == _LIVE]
        return {(int(o["client"]), int(o["token"])): (int(o["symbol"]), int(o["side"]), int(o["leaves"]))
                for o in live}

    def reject_counts(self) -> dict[RejectReason, int]:
        """Risk rejects so far by reason."""
        return {r: int(self.rejects[r]) for r in RejectReason if r >= RejectReason.RISK_SIZE and self.rejects[r]}


def _need(a: np.ndarray, dtype: np.dtype, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
        raise TypeError(f"{what} must be a contiguous {what[:-1]} array ({dtype})")
