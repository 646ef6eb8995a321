"""`microex serve`: the venue, wired in one place, stage by stage.

    gateway process 1..N  --inbound ring k-->  engine process  --outbound ring-->  gateways (consumer k)
    (asyncio on uvloop,                        (sequencer, journal,                 supervisor (consumer 0)
     binary TCP port, SO_REUSEPORT)             matching core, snapshots)

    colocated = true: no gateway process; the engine process serves the binary port
    from its own loop (gateway/colocated.py), with gateway 0's id ranges.

The supervisor (this process) owns the rings and the child processes:
1. Data directory: created on first use with the venue config (engine.json fixes
   the engine's identity); a later start recovers from it and keeps its venue.
2. Engine process, with inbound ring 0 for the supervisor's own commands and one
   inbound ring per gateway; outbound consumer 0 is the supervisor.
3. First start only: the config's deposits and reference prices, as commands
   through ring 0 (journaled like any order, so they survive restarts).
4. Gateway processes (each with its disjoint engine order-id range for this run), or,
   colocated, none: the engine listened on the binary port before it said it was ready.
5. Until SIGINT/SIGTERM: drain consumer 0 (it must keep up or it would gate the
   engine), count commands and events, print a status line.
6. Stop: gateways first (LOGOUT SHUTDOWN; cancel-on-disconnect cancels reach the
   engine), then the engine (finishes its batch, syncs the journal, snapshots),
   then the rings are removed. Colocated, the engine is the gateway: it stops
   before the market-data stage, which so still publishes its last cancels.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from microex.app.serve_config import ServeConfig, demo_config
from microex.binance.process import HttpSettings, http_main
from microex.core.config import EngineConfig
from microex.core.records import COMMAND, Action, EventKind
from microex.gateway.inprocess import deposit_commands
from microex.gateway.process import GatewaySettings, gateway_main
from microex.marketdata.server import MdSettings, md_main
from microex.pipeline.datadir import DataDir, write_atomic
from microex.pipeline.local import LocalPipeline, ReadyFlag, run_child
from microex.pipeline.logs import setup_logging
from microex.pipeline.metrics import MetricsBlock, MetricsCollector, serve_metrics

STATUS_EVERY_S = 5.0
log = logging.getLogger(__name__)
# The outbound ring holds 2^18 events: ~50 ms at the highest rates. A drain that found little
# sleeps longer: each wake-up of this process takes a core from a spinning engine or client
# for tens of µs, which shows in a latency-minded venue's p99.
DRAIN_EVERY_S = 0.005
QUIET_DRAIN_EVERY_S = 0.025
QUIET_EVENTS = 4096


class Venue:
    def __init__(self, cfg: ServeConfig, console: Console | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console()
        self.stop = False
        self.pipe: LocalPipeline | None = None
        self.gateways: list[mp.Process] = []
        self.md: mp.Process | None = None  # the market-data stage
        self.http: mp.Process | None = None  # the Binance-compatible HTTP edge
        self.commands = self.events = 0
        self.rejects: dict[int, int] = {}
        self.metrics: MetricsBlock | None = None
        self.metrics_server = None

    def _on_signal(self, *_) -> None:
        self.stop = True

    # -- start -------------------------------------------------------------------------------------

    def start(self) -> None:
        # From the first moment: a SIGTERM while the stages start (a client may already be
        # trading on a port that is open) is a clean stop once they are up, not a kill.
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        cfg = self.cfg
        data = DataDir(cfg.data)
        first = not data.exists()
        if first:
            data.create(cfg.venue.engine_config(EngineConfig()), cfg.venue_data)
        else:
            _, _, stored = data.load()
            if stored != cfg.venue_data:
                self.console.print(f"[yellow]{data.root} was created with another venue config; "
                                   "serving the one in its engine.json[/]")
        run = self._next_run(data)
        setup_logging(data.root, "supervisor")
        log.info("venue starting", extra={"run": run, "data": str(data.root), "bin_port": cfg.bin_port,
                                          "gateways": cfg.gateways, "fsync": cfg.fsync, "first_start": first})
        self.console.print(f"starting the engine on {data.root} (run {run}) ...")
        self.metrics = MetricsBlock.create(f"mxm{os.getpid()}x{time.monotonic_ns() % 10**9}")
        procs = 0 if cfg.colocated else cfg.gateways  # gateway processes, each a ring producer and consumer
        self.pipe = LocalPipeline(str(data.root), fsync=cfg.fsync, snapshot_every=cfg.snapshot_every,
                                  producers=1 + procs + (1 if cfg.http_port else 0),
                                  consumers=1 + procs + (1 if cfg.md_port else 0),
                                  idle_spin_us=-1 if cfg.busy_poll else cfg.engine_spin_us,
                                  cpu=cfg.engine_cpu, metrics=self.metrics.name, expected_orders=cfg.expected_orders,
                                  gateway=self._gateway_settings(0, run, str(data.root)) if cfg.colocated else None)
        if first:
            self._bootstrap()
        ctx = mp.get_context("spawn")
        ready = [ReadyFlag(ctx) for _ in range(procs)]
        for k in range(procs):
            gs = self._gateway_settings(k, run, str(data.root))
            p = ctx.Process(target=run_child, args=(gateway_main, gs, ready[k]), daemon=True, name=f"microex-gateway-{k}")
            p.start()
            self.gateways.append(p)
        if cfg.metrics_port:
            rings = [("inbound.supervisor", self.pipe.inbounds[0]), ("outbound", self.pipe.outbound)]
            rings += [(f"inbound.gateway{k}", r) for k, r in enumerate(self.pipe.inbounds[1 : 1 + procs])]
            self.metrics_server = serve_metrics(MetricsCollector(self.metrics, rings, cfg.gateways), cfg.metrics_port,
                                                cfg.host)
        md_ready = ReadyFlag(ctx)
        if cfg.md_port:  # the market-data stage: the outbound ring's last consumer
            ms = MdSettings(data=str(data.root), outbound=self.pipe.outbound.name, consumer_index=1 + procs,
                            host=cfg.host, md_port=cfg.md_port, grpc_port=cfg.grpc_port,
                            record=cfg.md_record or None, multicast=cfg.md_multicast,
                            multicast_interface=cfg.md_multicast_interface, multicast_ttl=cfg.md_multicast_ttl)
            self.md = ctx.Process(target=run_child, args=(md_main, ms, md_ready), daemon=True, name="microex-md")
            self.md.start()
        http_ready = ReadyFlag(ctx)
        if cfg.http_port:  # the Binance-compatible HTTP edge: the last inbound ring, tails the journal
            hs = HttpSettings(data=str(data.root), inbound=self.pipe.inbounds[1 + procs].name,
                              keys=[(k.api_key, k.secret, k.account) for k in cfg.api_keys], decimals=cfg.decimals,
                              host=cfg.host, http_port=cfg.http_port, run=run, metrics=self.metrics.name,
                              rings=self._ring_names(), gateways=cfg.gateways,
                              limits=(cfg.http_weight_per_minute, cfg.http_orders_per_10s, cfg.http_orders_per_day))
            self.http = ctx.Process(target=run_child, args=(http_main, hs, http_ready), daemon=True,
                                    name="microex-http")
            self.http.start()
        deadline = time.monotonic() + 60
        for k, ev in enumerate(ready):
            while not ev.wait(0.05):
                self._drain()
                if not self.gateways[k].is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway {k} did not start (is port {cfg.bin_port} in use?)")
        deadline = time.monotonic() + 300  # the stage first rebuilds its books from the journal
        while self.md is not None and not md_ready.wait(0.05):
            self._drain()
            if not self.md.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the market-data stage did not start (is port {cfg.md_port}"
                                   + (f" or {cfg.grpc_port}" if cfg.grpc_port else "") + " in use?)")
        deadline = time.monotonic() + 300  # the edge's replica first catches up with the journal
        while self.http is not None and not http_ready.wait(0.05):
            self._drain()
            if not self.http.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP edge did not start (is port {cfg.http_port} in use?)")

    def _gateway_settings(self, k: int, run: int, data: str) -> GatewaySettings:
        """Gateway k's settings; colocated, gateway 0's are the engine's (its rings unused)."""
        cfg = self.cfg
        colocated = cfg.colocated
        return GatewaySettings(gateway_no=k, inbound="" if colocated else self.pipe.inbounds[1 + k].name,
                               outbound="" if colocated else self.pipe.outbound.name, consumer_index=1 + k,
                               api_keys=cfg.key_map(), host=cfg.host, bin_port=cfg.bin_port,
                               heartbeat_ms=cfg.heartbeat_ms, rate_per_s=cfg.rate_per_s, burst=cfg.burst, run=run,
                               ack_spin_us=cfg.ack_spin_us, busy_poll=cfg.busy_poll, metrics=self.metrics.name,
                               data=data, cpu=cfg.gateway_cpus[k % len(cfg.gateway_cpus)] if cfg.gateway_cpus else None,
                               expected_orders=cfg.expected_orders)

    def _ring_names(self) -> list[tuple[str, str]]:
        """(label, shared-memory name) of every ring, for metrics and the dashboard."""
        names = [("inbound.supervisor", self.pipe.inbounds[0].name), ("outbound", self.pipe.outbound.name)]
        return names + [(f"inbound.{k}", r.name) for k, r in enumerate(self.pipe.inbounds[1:])]

    def _next_run(self, data: DataDir) -> int:
        path = data.root / "serve.json"
        doc = json.loads(path.read_text()) if path.exists() else {"runs": 0}
        doc["runs"] += 1
        write_atomic(path, json.dumps(doc).encode())
        return doc["runs"]

    def _bootstrap(self) -> None:
        """First start: deposits and reference prices through ring 0, waited for."""
        cfg = self.cfg
        ids = cfg.venue.instrument_ids()
        prices = np.zeros(len(cfg.ref_prices), dtype=COMMAND)
        prices["ts_ns"] = time.time_ns()
        prices["action"] = Action.SET_PRICE
        prices["instrument"] = [ids[s] for s in cfg.ref_prices]
        prices["price_ticks"] = list(cfg.ref_prices.values())
        cmds = np.zeros(len(prices) + len(cfg.deposits), dtype=COMMAND)  # zeroed: padding stays zero
        cmds[: len(prices)] = prices
        cmds[len(prices):] = deposit_commands(cfg.deposit_triples())
        if not len(cmds):
            return
        target = self.pipe.published + len(cmds)
        self.pipe.inbound.write(cmds, timeout=30)
        self.pipe.wait_for(target, on_events=self._count)
        if self.rejects:
            raise RuntimeError(f"the engine rejected start-up commands: reasons {self.rejects}")

    # -- run ---------------------------------------------------------------------------------------

    def _count(self, events: np.ndarray) -> None:
        kinds = events["kind"]
        batch = kinds == EventKind.BATCH
        self.commands += int(events["qty_lots"][batch].sum())
        self.events += len(events) - int(batch.sum())
        for r in events["reason"][kinds == EventKind.REJECTED].tolist():
            self.rejects[r] = self.rejects.get(r, 0) + 1

    def _drain(self) -> None:
        # Polled on a timer, never armed: a blocked consumer would make the engine write to
        # its wake-up FIFO after every batch, and each wake-up costs tens of µs of CPU.
        before = self.events
        self.pipe.drain(on_events=self._count)
        time.sleep(DRAIN_EVERY_S if self.events - before > QUIET_EVENTS else QUIET_DRAIN_EVERY_S)

    def serve_forever(self, duration_s: float | None = None) -> None:
        """Until SIGINT/SIGTERM (or `duration_s`)."""
        last_t, last_c, last_e = time.monotonic(), self.commands, self.events
        end = None if duration_s is None else last_t + duration_s
        while not self.stop and (end is None or time.monotonic() < end):
            self._drain()
            self.pipe.check_alive()
            for k, g in enumerate(self.gateways):
                if not g.is_alive():
                    raise RuntimeError(f"gateway {k} exited (code {g.exitcode})")
            if self.http is not None and not self.http.is_alive():
                raise RuntimeError(f"the HTTP edge exited (code {self.http.exitcode})")
            if self.md is not None and not self.md.is_alive():
                raise RuntimeError(f"the market-data stage exited (code {self.md.exitcode})")
            now = time.monotonic()
            if now - last_t >= STATUS_EVERY_S:
                dt = now - last_t
                self.console.print(f"seq {self.pipe.published:,}  commands {(self.commands - last_c) / dt:,.0f}/s  "
                                   f"events {(self.events - last_e) / dt:,.0f}/s")
                self.console.file.flush()
                last_t, last_c, last_e = now, self.commands, self.events

    def close(self) -> None:
        for g in self.gateways:
            if g.is_alive():
                g.terminate()
        deadline = time.monotonic() + 10
        for g in self.gateways:
            while g.is_alive() and time.monotonic() < deadline:
                if self.pipe is not None:
                    self._drain()  # keep the engine unblocked while gateways send their last cancels
                g.join(0.01)
            if g.is_alive():
                g.kill()
        if self.http is not None:  # with the gateways: its cancels are order entry too
            self.http.terminate()
            self.http.join(10)
            if self.http.is_alive():
                self.http.kill()
            self.http = None
        if self.pipe is not None and self.cfg.colocated:
            # the engine is the gateway: it sends LOGOUT SHUTDOWN and runs the cancel-on-disconnect
            # cancels in a last batch, which the market-data stage must still see
            self.pipe.stop_engine(on_events=self._count)
        if self.md is not None:  # after the gateways: it publishes their last cancels
            self.md.terminate()
            self.md.join(10)
            if self.md.is_alive():
                self.md.kill()
            self.md = None
        if self.pipe is not None:
            self._drain()
            self.pipe.close()  # the engine snapshots on SIGTERM
            self.pipe = None
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        log.info("venue stopped", extra={"commands": self.commands})

    def banner(self) -> None:
        cfg, c = self.cfg, self.console
        venue = cfg.venue
        where = ("served by the engine process (colocated)" if cfg.colocated
                 else f"{cfg.gateways} gateway process{'es' if cfg.gateways > 1 else ''}")
        c.print(f"[bold]microex venue[/] on {cfg.host}: binary order entry on port {cfg.bin_port} "
                f"({where}), data in {cfg.data}, "
                f"fsync={cfg.fsync}")
        if cfg.md_port:
            c.print(f"market data: binary feed on port {cfg.md_port}"
                    + (f", gRPC (microex.MarketData) on port {cfg.grpc_port}" if cfg.grpc_port else "")
                    + (f", recorded in {cfg.md_record}" if cfg.md_record else ""))
            if cfg.md_multicast:
                c.print(f"market data by UDP multicast: instrument i to group {cfg.md_multicast.rpartition(':')[0]}+i, "
                        f"port {cfg.md_multicast.rpartition(':')[2]} (TTL {cfg.md_multicast_ttl}); recovery over "
                        f"port {cfg.md_port}")
        if cfg.http_port:
            c.print(f"Binance-compatible API: http://{cfg.host}:{cfg.http_port}/api/v3, "
                    f"ws://{cfg.host}:{cfg.http_port}/ws, /stream, /ws-api/v3 (docs/binance-api.md)")
        if cfg.http_port:
            c.print(f"[bold]dashboard: http://{cfg.host}:{cfg.http_port}/dashboard/[/]")
        c.print("instruments: " + ", ".join(f"{i}={s}" for s, i in venue.instrument_ids().items()))
        if cfg.demo:
            c.print(f"demo accounts (also in {Path(cfg.data) / 'demo-keys.json'}):")
            for k in cfg.api_keys:
                c.print(f"  account {k.account:2d}  api_key {k.api_key}  secret {k.secret}")
        if cfg.metrics_port:
            c.print(f"Prometheus metrics: http://{cfg.host}:{cfg.metrics_port}/metrics")
        c.print("Ctrl-C stops the venue (a snapshot is taken).")
        c.file.flush()  # a log file sees the keys at once, not when a buffer fills


def main(args) -> int:
    if args.config:
        cfg = ServeConfig.load(args.config)
    else:
        cfg = demo_config(args.data or "microex-data")
    cfg.override(data=args.data, host=args.host, bin_port=args.bin_port, http_port=args.http_port,
                 gateways=args.gateways, fsync=args.fsync, colocated=getattr(args, "colocated", None), metrics_port=getattr(args, "metrics_port", None))
    cfg.override(md_port=getattr(args, "md_port", None), md_record=getattr(args, "md_record", None),
                 md_multicast=getattr(args, "md_multicast", None),
                 grpc_port=getattr(args, "grpc_port", None))
    venue = Venue(cfg)
    try:
        venue.start()
        venue.banner()
        venue.serve_forever()
    finally:
        venue.close()
    venue.console.print(f"stopped: {venue.commands:,} commands this run")
    return 0
