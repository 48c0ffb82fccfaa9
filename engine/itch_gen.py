"""Realistic random ITCH 5.0 streams, for benchmarks and for tests of ITCH consumers.

A stream opens the way a NASDAQ day does (system events, the stock directory, trading
actions) and then carries order lifecycles that are consistent with each other: every
execute, cancel, replace and delete refers to an order added earlier, executions and
cancels never exceed the shares left, order reference and match numbers rise in time
order, and timestamps never go backwards.  The mix is dominated by A/D/U/E/X like a
real feed, with a few hidden trades (P) and every other message type sprinkled in.
Everything is generated with numpy and encoded by the C encoder, so a million
messages take about a second.
"""
from __future__ import annotations

import numpy as np

from engine import itch

_SECOND = 1_000_000_000
_OPEN, _CLOSE = 34_200 * _SECOND, 57_600 * _SECOND     # 09:30 and 16:00, ns since midnight
_TICKERS = ("AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "META", "TSLA", "AVGO", "COST", "PEP",
            "ADBE", "CSCO", "NFLX", "AMD", "INTC", "QCOM", "TXN", "AMGN", "HON", "SBUX")
_MPIDS = ("GSCO", "MSCO", "JPMS", "VIRT", "CDRG", "NITE")
_RARE = "LYIQBNVWKJhO"     # types sprinkled through the session, a few each


def random_stream(n: int, seed: int = 0) -> bytes:
    """``n`` length-prefixed ITCH 5.0 messages (an ITCH-file / MoldUDP64-block framing)."""
    return itch.encode(_Session(n, seed).batch())


def random_batch(n: int, seed: int = 0) -> itch.ItchBatch:
    """The same messages as ``random_stream(n, seed)``, decoded."""
    return itch.decode(random_stream(n, seed))


class _Session:
    """Builds events per type with a time and order identities, then sorts and numbers them."""

    def __init__(self, n: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.n = n
        n_stocks = int(np.clip(n // 200, 1, 64))
        self.stocks = np.array([(_TICKERS[i] if i < len(_TICKERS) else f"ZX{i:02d}").ljust(8)
                                for i in range(n_stocks)], "S8")
        self.ref_price = self.rng.integers(5, 500, n_stocks) * 10_000      # Price(4) ticks
        weights = 1.0 / np.arange(1, n_stocks + 1)                          # a few names dominate
        self.stock_weights = weights / weights.sum()
        self.groups: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.next_oid = 0

    # ---------------------------------------------------------------- building events

    def add(self, msg_type: str, times, ref_oid=None, new_oid=None, **fields) -> np.ndarray:
        """Append a group of events of one type; returns its records for further filling."""
        times = np.asarray(times, np.int64)
        rec = itch.new_array(msg_type, len(times))
        for name, value in fields.items():
            rec[name] = value
        rec["tracking_number"] = self.rng.integers(0, 4, len(times))
        none = np.full(len(times), -1, np.int64)
        self.groups.append((msg_type, rec, times,
                            none if ref_oid is None else np.asarray(ref_oid, np.int64),
                            none if new_oid is None else np.asarray(new_oid, np.int64)))
        return rec

    def oids(self, k: int) -> np.ndarray:
        out = np.arange(self.next_oid, self.next_oid + k)
        self.next_oid += k
        return out

    def opening(self) -> None:
        k = len(self.stocks)
        locate = np.arange(1, k + 1)
        self.add("S", [3 * 3600 * _SECOND], event_code=b"O")
        self.add("R", 3 * 3600 * _SECOND + 1000 + np.arange(k) * 1000, stock_locate=locate, stock=self.stocks,
                 market_category=b"Q", financial_status_indicator=b"N", round_lot_size=100,
                 round_lots_only=b"N", issue_classification=b"C", issue_sub_type=b"Z", authenticity=b"P",
                 short_sale_threshold_indicator=b"N", ipo_flag=b"N", luld_reference_price_tier=b"1",
                 etp_flag=b"N", etp_leverage_factor=0, inverse_indicator=b"N")
        self.add("S", [4 * 3600 * _SECOND], event_code=b"S")
        self.add("H", 4 * 3600 * _SECOND + 1000 + np.arange(k) * 1000, stock_locate=locate, stock=self.stocks,
                 trading_state=b"T")
        self.add("S", [_OPEN - 1], event_code=b"Q")

    def lifecycles(self, n_orders: int) -> None:
        rng = self.rng
        oid = self.oids(n_orders)
        stock = rng.choice(len(self.stocks), n_orders, p=self.stock_weights)
        side = np.where(rng.random(n_orders) < 0.5, b"B", b"S")
        price = np.maximum(self.ref_price[stock] + rng.integers(-50, 51, n_orders) * 100, 100)
        shares = np.where(rng.random(n_orders) < 0.9, rng.integers(1, 11, n_orders) * 100,
                          rng.integers(1, 100, n_orders))
        t = rng.integers(_OPEN, _CLOSE, n_orders)
        locate = stock + 1

        attributed = rng.random(n_orders) < 0.08
        for msg_type, m in (("A", ~attributed), ("F", attributed)):
            extra = {"attribution": rng.choice(np.array(_MPIDS, "S4"), m.sum())} if msg_type == "F" else {}
            self.add(msg_type, t[m], new_oid=oid[m], stock_locate=locate[m],
                     buy_sell_indicator=side[m], shares=shares[m], stock=self.stocks[stock[m]],
                     price=price[m], **extra)

        left = shares.copy()
        # Partial or full executions, a few reported at a different price (C).
        m = rng.random(n_orders) < 0.25
        t = t + self._delay(n_orders)
        executed = np.minimum(rng.integers(1, left + 1), left)
        with_price = m & (rng.random(n_orders) < 0.05)
        plain = m & ~with_price
        self.add("E", t[plain], ref_oid=oid[plain], stock_locate=locate[plain],
                 executed_shares=executed[plain])
        self.add("C", t[with_price], ref_oid=oid[with_price], stock_locate=locate[with_price],
                 executed_shares=executed[with_price], printable=b"Y", execution_price=price[with_price] - 100)
        left = np.where(m, left - executed, left)

        # Partial cancels of what is left.
        m = (rng.random(n_orders) < 0.12) & (left > 1)
        t = t + self._delay(n_orders)
        canceled = rng.integers(1, np.maximum(left, 2))
        self.add("X", t[m], ref_oid=oid[m], stock_locate=locate[m], canceled_shares=canceled[m])
        left = np.where(m, left - canceled, left)

        # The end of a live order: replaced (the new order is deleted later), deleted, or left open.
        live = left > 0
        fate = rng.random(n_orders)
        replaced = live & (fate < 0.18)
        deleted = live & (fate >= 0.18) & (fate < 0.96)
        t = t + self._delay(n_orders)
        new = self.oids(int(replaced.sum()))
        self.add("U", t[replaced], ref_oid=oid[replaced], new_oid=new,
                 stock_locate=locate[replaced], shares=shares[replaced],
                 price=np.maximum(price[replaced] + rng.integers(-5, 6, replaced.sum()) * 100, 100))
        self.add("D", t[deleted], ref_oid=oid[deleted], stock_locate=locate[deleted])
        t_rep = t[replaced] + self._delay(int(replaced.sum()))
        self.add("D", t_rep, ref_oid=new, stock_locate=locate[replaced])

    def hidden_trades(self, k: int) -> None:
        rng = self.rng
        stock = rng.choice(len(self.stocks), k, p=self.stock_weights)
        self.add("P", rng.integers(_OPEN, _CLOSE, k), stock_locate=stock + 1, order_reference_number=0,
                 buy_sell_indicator=np.where(rng.random(k) < 0.5, b"B", b"S"),
                 shares=rng.integers(1, 50, k) * 100, stock=self.stocks[stock],
                 price=self.ref_price[stock] + rng.integers(-20, 21, k) * 100)

    def sprinkle(self, k: int) -> None:
        """A few of every remaining type at random times, fields valid per the spec."""
        rng = self.rng
        for msg_type in _RARE:
            stock = rng.choice(len(self.stocks), k, p=self.stock_weights)
            t = rng.integers(_OPEN, _CLOSE, k)
            rec = self.add(msg_type, t, stock_locate=stock + 1 if msg_type not in "VW" else 0)
            ref = self.ref_price[stock]
            if "stock" in rec.dtype.names:
                rec["stock"] = self.stocks[stock]
            if msg_type == "L":
                rec["mpid"] = rng.choice(np.array(_MPIDS, "S4"), k)
                rec["primary_market_maker"], rec["market_maker_mode"], rec["market_participant_state"] = b"N", b"N", b"A"
            elif msg_type == "Y":
                rec["reg_sho_action"] = rng.choice(np.array([b"0", b"1", b"2"]), k)
            elif msg_type == "I":
                rec["paired_shares"] = rng.integers(0, 100_000, k)
                rec["imbalance_shares"] = rng.integers(0, 10_000, k)
                rec["imbalance_direction"] = rng.choice(np.array([b"B", b"S", b"N", b"O"]), k)
                rec["far_price"], rec["near_price"], rec["current_reference_price"] = ref, ref, ref
                rec["cross_type"], rec["price_variation_indicator"] = b"O", b"L"
            elif msg_type == "Q":
                rec["shares"] = rng.integers(1, 1_000_000, k)
                rec["cross_price"], rec["cross_type"] = ref, b"O"
            elif msg_type == "N":
                rec["interest_flag"] = rng.choice(np.array([b"B", b"S", b"A", b"N"]), k)
            elif msg_type == "V":
                rec["level_1"], rec["level_2"], rec["level_3"] = 3_500_00000000, 3_250_00000000, 2_900_00000000
            elif msg_type == "W":
                rec["breached_level"] = rng.choice(np.array([b"1", b"2", b"3"]), k)
            elif msg_type == "K":
                rec["ipo_quotation_release_time"] = rng.integers(_OPEN // _SECOND, _CLOSE // _SECOND, k)
                rec["ipo_quotation_release_qualifier"], rec["ipo_price"] = b"A", ref
            elif msg_type == "J":
                rec["auction_collar_reference_price"] = ref
                rec["upper_auction_collar_price"], rec["lower_auction_collar_price"] = ref * 11 // 10, ref * 9 // 10
                rec["auction_collar_extension"] = rng.integers(0, 4, k)
            elif msg_type == "h":
                rec["market_code"] = rng.choice(np.array([b"Q", b"B", b"X"]), k)
                rec["operational_halt_action"] = rng.choice(np.array([b"H", b"T"]), k)
            elif msg_type == "O":
                rec["open_eligibility_status"] = b"Y"
                rec["minimum_allowable_price"], rec["maximum_allowable_price"] = ref * 4 // 5, ref * 6 // 5
                rec["near_execution_price"], rec["near_execution_time"] = ref, t
                rec["lower_price_range_collar"], rec["upper_price_range_collar"] = ref * 9 // 10, ref * 11 // 10
            # B's match_number is chosen once trades are numbered.

    def _delay(self, k: int) -> np.ndarray:
        """Time to an order's next event: mostly milliseconds, a long tail, always >= 1 ns."""
        return (self.rng.exponential(0.05 * _SECOND, k)).astype(np.int64) + 1

    # ----------------------------------------------------------- sorting and numbering

    def batch(self) -> itch.ItchBatch:
        self.opening()
        body = max(self.n - 3 - 2 * len(self.stocks), 0)
        # Generate ~10% more body than needed; the tail of the day is cut off below,
        # which keeps every lifecycle causal (follow-ups always come after their add).
        budget = int(body * 1.1) + 16
        self.lifecycles(budget * 10 // 24)
        self.hidden_trades(budget // 50)
        self.sprinkle(max(1, budget // 2000))

        types = np.concatenate([np.full(len(g[1]), ord(g[0]), np.uint8) for g in self.groups])
        times = np.concatenate([g[2] for g in self.groups])
        ref_oid = np.concatenate([g[3] for g in self.groups])
        new_oid = np.concatenate([g[4] for g in self.groups])
        messages = {t: np.concatenate([g[1] for g in self.groups if g[0] == t] or [itch.new_array(t, 0)],
                                      dtype=itch.DTYPES[t]) for t in itch.LENGTHS}
        fill, row_parts = dict.fromkeys(itch.LENGTHS, 0), []
        for t, rec, *_ in self.groups:
            row_parts.append(np.arange(fill[t], fill[t] + len(rec), dtype=np.uint32))
            fill[t] += len(rec)
        rows = np.concatenate(row_parts)

        keep = np.argsort(times, kind="stable")[: self.n]
        types, times, rows, ref_oid, new_oid = types[keep], times[keep], rows[keep], ref_oid[keep], new_oid[keep]

        # Order reference numbers rise in the order orders appear.
        ref = np.zeros(self.next_oid, np.uint64)
        created = new_oid >= 0
        ref[new_oid[created]] = 1000 + 4 * np.arange(created.sum(), dtype=np.uint64)
        # Match numbers rise in the order trades print; a broken trade names an earlier one.
        trades = np.isin(types, np.frombuffer(b"ECPQ", np.uint8))
        match = np.cumsum(trades).astype(np.uint64)
        for t in itch.LENGTHS:
            sel = types == ord(t)
            if not sel.any():
                continue
            arr, r = messages[t], rows[sel]
            if t in "AF":
                arr["order_reference_number"][r] = ref[new_oid[sel]]
            elif t in "ECXD":
                arr["order_reference_number"][r] = ref[ref_oid[sel]]
            elif t == "U":
                arr["original_order_reference_number"][r] = ref[ref_oid[sel]]
                arr["new_order_reference_number"][r] = ref[new_oid[sel]]
            if t in "ECPQ":
                arr["match_number"][r] = match[sel]
            elif t == "B":
                arr["match_number"][r] = np.maximum(1, self.rng.integers(0, match[sel] + 1))
            ns = times[sel].astype(np.uint64)
            arr["timestamp"]["high"][r] = ns >> np.uint64(32)
            arr["timestamp"]["low"][r] = ns & np.uint64(0xFFFFFFFF)

        order = np.empty(len(types), itch.ORDER_DTYPE)
        order["type"], order["index"] = types, rows
        return itch.ItchBatch(messages, order)
