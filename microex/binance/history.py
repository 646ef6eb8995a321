"""History: every order and trade the replica has seen, per account, for the REST queries.

How it works
- The replica hands each journal frame's commands and events to `apply`, which runs
  the compiled kernel (history_kernels.py) over them: order table (a ring that never
  evicts an open order), trade table (a ring of the last `trade_cap` trades) and
  one report row per order touched, in event order (the user streams' input).
- Client order ids: orders entered through this edge keep the `newClientOrderId`
  they were given (a dict engine id -> id, and (account, id) -> engine id); any
  other order (binary gateway, seeded) is named `mx-<orderId>`, computed.
- Queries return row indices or rows of the tables; views.py turns them into
  Binance's JSON. Orders sort by (time, id); trades are in trade order.
- Seeding: when the replica starts from a snapshot, the resting orders it holds
  are entered from the engine's order pool (`seed`): their quantity before the
  snapshot is unknown, so origQty = their leaves and executedQty = 0.
"""

from __future__ import annotations

import numpy as np

from microex.binance import history_kernels as K

STATUS = {K.ST_NEW: "NEW", K.ST_PARTIAL: "PARTIALLY_FILLED", K.ST_FILLED: "FILLED", K.ST_CANCELED: "CANCELED",
          K.ST_EXPIRED: "EXPIRED", K.ST_EXPIRED_IN_MATCH: "EXPIRED_IN_MATCH"}
EXEC = {K.X_NEW: "NEW", K.X_TRADE: "TRADE", K.X_CANCELED: "CANCELED", K.X_EXPIRED: "EXPIRED",
        K.X_REPLACED: "REPLACED"}
GENERATED_PREFIX = "mx-"


class History:
    def __init__(self, minfo: np.ndarray, max_orders: int, trade_cap: int = 1 << 19,
                 order_cap: int | None = None) -> None:
        cap = order_cap or max(2 * max_orders, 1 << 12)
        self.ot, self.tt = K.new_tables(cap, trade_cap)
        self.ids = K.new_id_map()
        self.head = np.zeros(1, np.int64)
        self.thead = np.zeros(1, np.int64)
        self.minfo = np.ascontiguousarray(minfo, np.int64)
        self.trade_bits = max(int(max_orders).bit_length(), 1)
        self.client: dict[int, str] = {}
        self.by_client: dict[tuple[int, str], int] = {}
        self.quote_qty: dict[int, str] = {}  # engine id -> origQuoteOrderQty of a quoteOrderQty market order
        self._rp = np.zeros((1024, K.RP_FIELDS), np.int64)

    # -- feeding ---------------------------------------------------------------------------------

    def seed(self, open_rows: np.ndarray, ts_ns: int) -> None:
        if len(open_rows):
            K.seed_open(self.ids, self.ot, self.head, np.ascontiguousarray(open_rows, np.int64), ts_ns)

    def apply(self, cmds: np.ndarray, events: np.ndarray) -> np.ndarray:
        """Run one frame's events; the report rows it produced (a view, valid until the next call)."""
        if not len(events):
            return self._rp[:0]
        need = 2 * len(events)
        if need > len(self._rp):
            self._rp = np.zeros((max(need, 2 * len(self._rp)), K.RP_FIELDS), np.int64)
        k = K.apply_history(cmds, events, self.ids, self.ot, self.head, self.tt, self.thead, self.minfo, self._rp,
                            self.trade_bits)
        return self._rp[:k]

    # -- client order ids ------------------------------------------------------------------------

    def name(self, eid: int, account: int, client_id: str, quote_qty: str | None = None) -> None:
        """An order this edge is about to send: remember its client id."""
        self.client[eid] = client_id
        self.by_client[(account, client_id)] = eid
        if quote_qty is not None:
            self.quote_qty[eid] = quote_qty

    def client_id(self, eid: int) -> str:
        return self.client.get(eid) or f"{GENERATED_PREFIX}{eid}"

    def by_client_id(self, account: int, client_id: str) -> int | None:
        eid = self.by_client.get((account, client_id))
        if eid is None and client_id.startswith(GENERATED_PREFIX) and client_id[3:].isdigit():
            eid = int(client_id[3:])
        return eid

    # -- orders ------------------------------------------------------------------------------------

    def row(self, eid: int) -> int | None:
        r = self.ids.get(eid, -1)
        return None if r < 0 else r

    def order_row(self, account: int, inst: int, eid: int) -> int | None:
        r = self.row(eid)
        if r is None or self.ot[r, K.OR_ACCOUNT] != account or self.ot[r, K.OR_INST] != inst:
            return None
        return r

    def is_open(self, r: int) -> bool:
        return int(self.ot[r, K.OR_STATUS]) in (K.ST_NEW, K.ST_PARTIAL)

    def _sorted(self, mask: np.ndarray) -> np.ndarray:
        rows = np.nonzero(mask)[0]
        ot = self.ot
        return rows[np.lexsort((ot[rows, K.OR_ID], ot[rows, K.OR_TIME]))]

    def open_rows(self, account: int, inst: int | None = None) -> np.ndarray:
        ot = self.ot
        st = ot[:, K.OR_STATUS]
        mask = (ot[:, K.OR_ACCOUNT] == account) & ((st == K.ST_NEW) | (st == K.ST_PARTIAL)) & (ot[:, K.OR_ID] != 0)
        if inst is not None:
            mask &= ot[:, K.OR_INST] == inst
        return self._sorted(mask)

    def order_rows(self, account: int, inst: int, from_id: int | None = None, start_ns: int | None = None,
                   end_ns: int | None = None, limit: int = 500) -> np.ndarray:
        ot = self.ot
        mask = (ot[:, K.OR_ACCOUNT] == account) & (ot[:, K.OR_INST] == inst) & (ot[:, K.OR_ID] != 0)
        if start_ns is not None:
            mask &= ot[:, K.OR_TIME] >= start_ns
        if end_ns is not None:
            mask &= ot[:, K.OR_TIME] <= end_ns
        rows = self._sorted(mask)
        if from_id is not None:
            rows = rows[ot[rows, K.OR_ID] >= from_id]
            return rows[:limit]
        return rows[-limit:] if limit else rows[:0]

    # -- trades ------------------------------------------------------------------------------------

    def trades(self) -> np.ndarray:
        """Every kept trade row, oldest first (a copy)."""
        n = int(min(self.thead[0], len(self.tt)))
        return self.tt[np.arange(self.thead[0] - n, self.thead[0]) % len(self.tt)]

    def public_trades(self, inst: int, limit: int | None = 500, from_id: int | None = None) -> np.ndarray:
        """One instrument's kept trades, oldest first: the last `limit` (None: all), or from an id on."""
        t = self.trades()
        t = t[t[:, K.TR_INST] == inst]
        if limit is None:
            return t
        if from_id is not None:
            return t[t[:, K.TR_ID] >= from_id][:limit]
        return t[-limit:] if limit else t[:0]

    def account_trades(self, account: int, inst: int) -> tuple[np.ndarray, np.ndarray]:
        """(trade rows, is_maker) of one account on one instrument, oldest first; a self-trade counts twice."""
        t = self.trades()
        t = t[t[:, K.TR_INST] == inst]
        taker = t[:, K.TR_TAKER_ACC] == account
        maker = t[:, K.TR_MAKER_ACC] == account
        rows = np.concatenate([t[taker], t[maker]])
        is_maker = np.concatenate([np.zeros(int(taker.sum()), bool), np.ones(int(maker.sum()), bool)])
        order = np.lexsort((is_maker, rows[:, K.TR_ID])) if len(rows) else np.zeros(0, np.int64)
        return rows[order], is_maker[order]
