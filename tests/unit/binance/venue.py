"""A demo venue's data directory written without an engine process: journal frames of commands
(deposits, prices, orders that trade), for the HTTP edge's in-process tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microex.app.serve_config import demo_config
from microex.binance.edge import Edge
from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, OrdType, Side, Tif
from microex.gateway.inprocess import deposit_commands
from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import Journal

BTCUSDT, ETHUSDT = 1, 2


def orders(rows) -> np.ndarray:
    """(order id, account, instrument, side, price, qty[, tif, type]) rows -> NEW commands."""
    cmds = np.zeros(len(rows), dtype=COMMAND)
    for c, r in zip(cmds, rows):
        oid, acc, inst, side, price, qty = r[:6]
        c["order_id"], c["account"], c["instrument"], c["side"], c["price_ticks"], c["qty_lots"] = r[:6]
        c["action"] = Action.NEW
        c["tif"] = r[6] if len(r) > 6 else Tif.GTC
        c["ord_type"] = r[7] if len(r) > 7 else OrdType.LIMIT
        c["ts_ns"] = 1_700_000_000_000_000_000 + 1_000_000 * int(oid)
    return cmds


class JournalVenue:
    def __init__(self, root: Path, segment_bytes: int = 64 << 20) -> None:
        self.cfg = demo_config(str(root))
        self.data = DataDir(root)
        self.data.create(self.cfg.venue.engine_config(EngineConfig()), self.cfg.venue_data)
        self.journal = Journal.open(self.data.journal, "none", segment_bytes=segment_bytes)
        self.seq = 0
        ids = self.cfg.venue.instrument_ids()
        prices = np.zeros(len(self.cfg.ref_prices), dtype=COMMAND)
        prices["action"] = Action.SET_PRICE
        prices["instrument"] = [ids[s] for s in self.cfg.ref_prices]
        prices["price_ticks"] = list(self.cfg.ref_prices.values())
        self.append(prices)
        self.append(deposit_commands(self.cfg.deposit_triples()))

    def append(self, cmds: np.ndarray) -> None:
        cmds = cmds.copy()
        cmds["seq"] = np.arange(self.seq + 1, self.seq + len(cmds) + 1)
        cmds["ts_ns"][cmds["ts_ns"] == 0] = 1_700_000_000_000_000_000
        self.journal.append(cmds)
        self.seq += len(cmds)

    def engine(self) -> MatchingEngine:
        """The engine's state after every journaled command (what `microex replay` rebuilds)."""
        e = self.data.new_engine()
        for batch in Journal.read(self.data.journal):
            e.process(batch)
        return e

    def edge(self, **kw) -> Edge:
        return Edge(str(self.data.root), self.cfg.decimals, **kw)

    def keys(self):
        from microex.binance.auth import Key

        return [Key(k.api_key, k.secret, k.account) for k in self.cfg.api_keys]

    def close(self) -> None:
        self.journal.close()


def trading_rows():
    return [
        (11, 1, BTCUSDT, Side.BUY, 5_990_000, 10),
        (12, 2, BTCUSDT, Side.SELL, 5_990_000, 4, Tif.IOC),
        (13, 2, BTCUSDT, Side.SELL, 6_010_000, 7),
        (14, 3, BTCUSDT, Side.BUY, 0, 2, Tif.IOC, OrdType.MARKET),
        (15, 3, ETHUSDT, Side.BUY, 299_000, 5),
    ]
