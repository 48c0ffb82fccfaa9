"""Pre-trade risk in plain Python: the specification and the oracle of ``cffi_build/risk.c``.

Written for clarity, not speed. ``ReferenceRisk`` has the same constructor, ``check`` and
``on_events`` as ``engine.risk.RiskEngine`` and must give the same verdicts and end in
the same state; the rules are listed in ``engine.risk``'s docstring.
"""
from dataclasses import dataclass

import numpy as np

from .commands import COMMAND_DTYPE, EVENT_DTYPE, EventKind, Flag, Kind, RejectReason, Side
from .risk import NO_LIMIT, Limits, RefMode

BUY, SELL = int(Side.BUY), int(Side.SELL)
NANO = 1_000_000_000      # one order's worth of token bucket


@dataclass(slots=True)
class Hold:
    """What check() reserved for one command."""

    qty: int = 0
    symbol: int = 0
    side: int = 0
    entered: bool = False     # an ENTER whose order was put in the order table


@dataclass(slots=True)
class Followed:
    symbol: int
    side: int
    leaves: int


class ReferenceRisk:
    def __init__(self, clients: int, symbols: int, limits: Limits | None = None, max_orders: int = 1 << 16):
        self.clients, self.symbols, self.max_orders = clients, symbols, max_orders
        self.limits = limits or Limits.unlimited(clients, symbols)
        self.position = np.zeros((clients, symbols), np.int64)
        self.open_buy = np.zeros((clients, symbols), np.int64)
        self.open_sell = np.zeros((clients, symbols), np.int64)
        self.last_trade = np.zeros(symbols, np.int32)
        self.bucket = [NO_LIMIT] * clients
        self.bucket_ts = [0] * clients
        self.client_kill = [False] * clients
        self.global_kill = False
        # orders by (client, token): live in the core, or pending (passed risk this batch,
        # awaiting the core's verdict); a key may be in both, see cffi_build/risk.c
        self.live: dict[tuple[int, int], Followed] = {}
        self.pending: dict[tuple[int, int], Followed] = {}
        self.untracked = 0
        self._holds: list[Hold] = []

    def update_limits(self, limits: Limits) -> None:
        self.limits = limits

    def kill_client(self, client: int, on: bool = True) -> None:
        self.client_kill[client] = on

    def kill_all(self, on: bool = True) -> None:
        self.global_kill = on

    def orders(self) -> dict[tuple[int, int], tuple[int, int, int]]:
        """Live orders, as RiskEngine.orders() gives them."""
        return {k: (o.symbol, o.side, o.leaves) for k, o in self.live.items()}

    def _followed(self) -> int:
        return len(self.live) + len(self.pending)

    # ---- checks --------------------------------------------------------------------

    def check(self, commands: np.ndarray, best_bid=None, best_ask=None) -> np.ndarray:
        assert commands.dtype == COMMAND_DTYPE
        self._bbo = (best_bid, best_ask)
        self._holds = []
        for i, row in enumerate(commands.tolist()):
            c = dict(zip(COMMAND_DTYPE.names, row))
            hold = Hold()
            verdict = 0
            if c["kind"] in (Kind.ENTER, Kind.REPLACE):
                verdict = self._check(c, hold)
            commands["risk"][i] = verdict
            self._holds.append(hold)
        return commands["risk"]

    def _reference(self, s: int) -> int:
        """Twice the reference price (a mid needs no rounding), 0 if none."""
        mode = self.limits.ref_mode[s]
        ref2 = 0
        if mode == RefMode.LAST:
            ref2 = 2 * int(self.last_trade[s])
        elif mode == RefMode.MID:
            bid, ask = self._bbo
            if bid is not None and ask is not None and bid[s] > 0 and ask[s] > 0:
                ref2 = int(bid[s]) + int(ask[s])
        return ref2 if ref2 > 0 else 2 * int(self.limits.static_ref[s])

    def _take_token(self, client: int, ts: int) -> bool:
        rate = int(self.limits.rate[client])
        if rate < 0:
            return True
        cap = int(self.limits.burst[client]) * NANO
        level = min(self.bucket[client], cap)
        if ts > self.bucket_ts[client]:
            level = min(cap, level + (ts - self.bucket_ts[client]) * rate)
            self.bucket_ts[client] = ts
        ok = level >= NANO
        self.bucket[client] = level - NANO if ok else level
        return ok

    def _check(self, c: dict, hold: Hold) -> int:
        lim, client = self.limits, c["client"]
        if client >= self.clients:
            return RejectReason.RISK_OTHER
        if self.global_kill or self.client_kill[client]:
            return RejectReason.RISK_KILL_SWITCH
        if not self._take_token(client, c["ts"]):
            return RejectReason.RISK_RATE
        key = (client, c["token"])
        if c["kind"] == Kind.ENTER:
            if c["symbol"] >= self.symbols:
                return RejectReason.RISK_OTHER
            s, side, add = c["symbol"], c["side"], c["qty"]
        else:
            followed = self.live.get(key) or self.pending.get(key)
            if followed is None:
                return 0                  # not live: the core rejects it as UNKNOWN_TOKEN
            s, side = followed.symbol, followed.side
            add = max(0, c["qty"] - followed.leaves)

        if c["qty"] > lim.max_qty[client, s]:
            return RejectReason.RISK_SIZE
        market = c["kind"] == Kind.ENTER and c["flags"] & Flag.MARKET
        ref2 = self._reference(s)
        if not market and lim.band_bps[s] >= 0 and ref2 > 0:
            if abs(2 * c["price"] - ref2) * 10_000 > int(lim.band_bps[s]) * ref2:
                return RejectReason.RISK_PRICE_BAND
        price = ref2 // 2 if market else c["price"]
        if price * c["qty"] * int(lim.lot[s]) > int(lim.max_notional[client, s]):
            return RejectReason.RISK_NOTIONAL

        if side not in (BUY, SELL):
            return 0                      # the core rejects it as INVALID_ORDER
        pos = int(self.position[client, s])
        if add > 0:
            if side == BUY and pos + int(self.open_buy[client, s]) + add > lim.long_limit[client, s]:
                return RejectReason.RISK_POSITION
            if side == SELL and pos - int(self.open_sell[client, s]) - add < -int(lim.short_limit[client, s]):
                return RejectReason.RISK_POSITION
        if c["kind"] == Kind.ENTER and key not in self.live and key not in self.pending:
            if self._followed() >= self.max_orders:
                return RejectReason.RISK_OTHER
            self.pending[key] = Followed(s, side, c["qty"])
            hold.entered = True
        self._open(side)[client, s] += add
        hold.qty, hold.symbol, hold.side = add, s, side
        return 0

    def _open(self, side: int) -> np.ndarray:
        return self.open_buy if side == BUY else self.open_sell

    # ---- settlement ----------------------------------------------------------------

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        assert commands.dtype == COMMAND_DTYPE and events.dtype == EVENT_DTYPE
        assert len(commands) == len(self._holds)
        cmds = commands.tolist()
        for row in events.tolist():
            e = dict(zip(EVENT_DTYPE.names, row))
            c = dict(zip(COMMAND_DTYPE.names, cmds[e["cmd"]]))
            h = self._holds[e["cmd"]]
            kind = e["kind"]
            if kind == EventKind.ACCEPTED and h.entered:
                self.live[(e["client"], e["token"])] = self.pending.pop((e["client"], e["token"]))
            elif kind == EventKind.ACCEPTED:
                tracked = self._insert((e["client"], e["token"]), Followed(e["symbol"], e["side"], e["qty"]))
                self._open(e["side"])[e["client"], e["symbol"]] += (e["qty"] if tracked else 0) - h.qty
            elif kind == EventKind.REJECTED:
                if h.entered:
                    del self.pending[(c["client"], c["token"])]
                if h.qty:
                    self._open(h.side)[c["client"], h.symbol] -= h.qty
            elif kind == EventKind.TRADE:
                self._reduce(e["client"], e["token"], e["qty"], e["leaves"], fill=True)
                self._reduce(e["other_client"], e["other_token"], e["qty"], e["other_leaves"], fill=True)
                if e["symbol"] < self.symbols:
                    self.last_trade[e["symbol"]] = e["price"]
            elif kind == EventKind.CANCELED:
                self._reduce(e["client"], e["token"], e["qty"], e["leaves"], fill=False)
            elif kind == EventKind.REPLACED:
                old = self.live.pop((e["client"], e["other_token"]), None)
                if old is None:
                    self.untracked += 1
                    continue
                self.live[(e["client"], e["token"])] = Followed(old.symbol, old.side, e["qty"])
                self._open(old.side)[e["client"], old.symbol] += e["qty"] - old.leaves - h.qty
        self._holds = []

    def _insert(self, key, followed: Followed) -> bool:
        if self._followed() >= self.max_orders:
            self.untracked += 1
            return False
        self.live[key] = followed
        return True

    def _reduce(self, client: int, token: int, qty: int, leaves: int, fill: bool) -> None:
        o = self.live.get((client, token))
        if o is None:
            self.untracked += 1
            return
        self._open(o.side)[client, o.symbol] -= qty
        if fill:
            self.position[client, o.symbol] += qty if o.side == BUY else -qty
        o.leaves = leaves
        if leaves == 0:
            del self.live[(client, token)]
