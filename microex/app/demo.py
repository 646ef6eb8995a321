"""`microex run` (for now): a seeded order stream through the engine, then the book
and a trade summary. Later issues turn this into the live demo venue."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from microex.core.engine import MatchingEngine
from microex.core.records import EventKind, Reason, Side
from microex.perf.workload import match_mix


class TradeTape:
    """Running trade statistics, fed one event chunk at a time (vectorised)."""

    def __init__(self) -> None:
        self.trades = self.volume = self.notional = self.rejects = self.events = 0
        self.high, self.low, self.last = 0, 1 << 62, 0
        self.cancels: dict[str, int] = {}

    def __call__(self, events: np.ndarray) -> None:
        self.events += len(events)
        t = events[events["kind"] == EventKind.TRADE]
        if len(t):
            price, qty = t["price_ticks"], t["qty_lots"]
            self.trades += len(t)
            self.volume += int(qty.sum())
            self.notional += int((price * qty).sum())
            self.high = max(self.high, int(price.max()))
            self.low = min(self.low, int(price.min()))
            self.last = int(price[-1])
        self.rejects += int((events["kind"] == EventKind.REJECTED).sum())
        c = events[events["kind"] == EventKind.CANCELLED]
        for code, count in zip(*np.unique(c["reason"], return_counts=True)):
            name = Reason(int(code)).name.lower()
            self.cancels[name] = self.cancels.get(name, 0) + int(count)


def main(args) -> int:
    console = Console()
    with console.status("generating the order stream"):
        w = match_mix(args.commands, seed=args.seed)
    engine = MatchingEngine(w.config())
    with console.status("compiling / loading the engine"):
        engine.warm_up()
    engine.process(w.setup)
    tape = TradeTape()
    step = 1 << 16
    elapsed = 0.0
    with Progress(console=console) as progress:
        task = progress.add_task("matching", total=len(w.cmds))
        for start in range(0, len(w.cmds), step):
            chunk = w.cmds[start : start + step]
            t0 = time.perf_counter()
            engine.run(chunk, tape)
            elapsed += time.perf_counter() - t0
            progress.advance(task, len(chunk))

    console.print(f"[bold]{w.description}[/bold]")
    console.print(f"{len(w.cmds):,} commands in {elapsed:.2f} s "
                  f"({len(w.cmds) / elapsed / 1e6:.1f}M commands/s, events tallied as they came)")
    book = Table(title="instrument 1: top of book")
    for col in ("bid orders", "bid qty", "bid", "ask", "ask qty", "ask orders"):
        book.add_column(col, justify="right")
    bids = engine.depth(1, Side.BUY)
    asks = engine.depth(1, Side.SELL)
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else ("", "", "")
        a = asks[i] if i < len(asks) else ("", "", "")
        book.add_row(str(b[2]), str(b[1]), str(b[0]), str(a[0]), str(a[1]), str(a[2]))
    console.print(book)
    summary = Table(title="trade summary")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    vwap = tape.notional / tape.volume if tape.volume else 0
    for name, value in (
        ("trades", f"{tape.trades:,}"), ("volume (lots)", f"{tape.volume:,}"), ("VWAP (ticks)", f"{vwap:,.2f}"),
        ("high / low / last", f"{tape.high} / {tape.low} / {tape.last}"),
        ("resting orders", f"{engine.live_orders:,}"), ("rejects", f"{tape.rejects:,}"),
        *((f"cancelled ({k})", f"{v:,}") for k, v in sorted(tape.cancels.items())),
        ("events", f"{tape.events:,}"),
    ):
        summary.add_row(name, value)
    console.print(summary)
    return 0
