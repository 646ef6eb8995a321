"""`microex demo` (and `make run`): the demo venue with simulated traders and the dashboard.

Wiring: the venue exactly as `microex serve` runs it (serve.py's Venue: engine,
gateway, market-data stage, HTTP edge with the dashboard), then one more child
process with the simulated participants (demo_traders.py) trading through the
SDK on demo accounts 1-7. Ctrl-C (or --duration) stops the traders first (their
orders are cancelled on disconnect), then the venue (a snapshot is taken).
"""

from __future__ import annotations

import multiprocessing as mp
import time

from microex.app.demo_traders import TradersSettings, traders_main
from microex.app.serve import Venue
from microex.app.serve_config import demo_config
from microex.pipeline.local import ReadyFlag, run_child


def add_arguments(parser) -> None:
    parser.add_argument("--data", default="microex-data", help="data directory (kept across runs)")
    parser.add_argument("--http-port", type=int, help="dashboard and Binance-compatible API (default 8080)")
    parser.add_argument("--bin-port", type=int, help="binary order entry (default 9001)")
    parser.add_argument("--md-port", type=int, help="binary market data (default 9002)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics (default 9100, 0: off)")
    parser.add_argument("--seed", type=int, default=1, help="the simulated traders' seed")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")


def main(args) -> int:
    cfg = demo_config(args.data)
    cfg.override(http_port=args.http_port, bin_port=args.bin_port, md_port=args.md_port,
                 metrics_port=args.metrics_port)
    if not cfg.md_port or not cfg.http_port:
        raise SystemExit("microex demo needs the market-data and HTTP ports (the traders and the dashboard use them)")
    venue = Venue(cfg)
    traders = None
    try:
        venue.start()
        venue.banner()
        ids = cfg.venue.instrument_ids()
        settings = TradersSettings(host=cfg.host, bin_port=cfg.bin_port, md_port=cfg.md_port,
                                   keys=[k.api_key.encode() for k in cfg.api_keys],
                                   ref_prices={ids[sym]: p for sym, p in cfg.ref_prices.items()}, seed=args.seed)
        ctx = mp.get_context("spawn")
        ready = ReadyFlag(ctx)
        traders = ctx.Process(target=run_child, args=(traders_main, settings, ready), daemon=True,
                              name="microex-traders")
        traders.start()
        deadline = time.monotonic() + 120
        while not ready.wait(0.05):
            venue._drain()
            if not traders.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated traders did not start")
        venue.console.print(f"simulated traders running (seed {args.seed}): 3 market makers, 3 noise takers, "
                            f"1 momentum trader. Open [bold]http://{cfg.host}:{cfg.http_port}/dashboard/[/]")
        venue.console.file.flush()
        venue.serve_forever(duration_s=args.duration)
    finally:
        if traders is not None and traders.is_alive():
            traders.terminate()
            t_end = time.monotonic() + 15
            while traders.is_alive() and time.monotonic() < t_end:
                venue._drain()  # their last cancels must not find the engine blocked
                traders.join(0.05)
            if traders.is_alive():
                traders.kill()
        venue.close()
    venue.console.print(f"stopped: {venue.commands:,} commands this run")
    return 0
