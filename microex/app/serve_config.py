"""`microex serve` configuration: the venue, its accounts and keys, ports, data dir, fsync.

One TOML file (examples/serve.toml) holds everything; every [serve] key has a
default, and with no file at all `microex serve` runs the demo venue below.
The venue part ([venue], [[instrument]], [[account]]) is the schema of
`microex match --config` (docs/risk.md) plus serve-only keys that stay at the
edge: an instrument's `ref_price` (ticks; its price band starts around it), an
account's `api_key`, `secret` and `deposit` (asset -> amount in the asset's
units, credited when the data directory is first created), and [assets]
(asset -> decimals, how many decimals one unit of the asset has, for display).
Command-line flags override [serve] keys.
"""

from __future__ import annotations

import json
import secrets
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from microex.core.venue import VenueConfig
from microex.marketdata.multicast import check_groups, parse_endpoint

_SERVE_KEYS = {"host", "http_port", "bin_port", "data", "fsync", "gateways", "heartbeat_ms", "rate_per_s", "burst",
               "snapshot_every", "md_port", "md_record", "grpc_port",
               "md_multicast", "md_multicast_interface", "md_multicast_ttl",
               "http_weight_per_minute", "http_orders_per_10s", "http_orders_per_day",
               "engine_spin_us", "ack_spin_us", "engine_cpu", "gateway_cpus", "busy_poll",
               "metrics_port", "colocated", "expected_orders"}
_ACCOUNT_EDGE_KEYS = ("api_key", "secret", "deposit")
_INSTRUMENT_EDGE_KEYS = ("ref_price",)
DEMO_ACCOUNTS = 10


@dataclass
class ApiKey:
    account: int
    api_key: str
    secret: str


@dataclass
class ServeConfig:
    venue_data: dict  # the engine's part: what VenueConfig.from_dict reads (and engine.json keeps)
    api_keys: list[ApiKey] = field(default_factory=list)
    deposits: list[tuple[int, str, int]] = field(default_factory=list)  # (account, asset, amount)
    ref_prices: dict[str, int] = field(default_factory=dict)  # symbol -> ticks
    decimals: dict[str, int] = field(default_factory=dict)  # asset -> decimals of its unit
    host: str = "127.0.0.1"
    http_port: int = 8080
    bin_port: int = 9001
    md_port: int = 9002  # binary market-data feed (0: no market-data stage)
    md_record: str = ""  # directory for feed recordings ("": none)
    md_multicast: str = ""  # "GROUP:PORT" (e.g. 239.77.0.0:9003): the feed by UDP multicast too ("": off)
    md_multicast_interface: str = "127.0.0.1"  # where the datagrams go out
    md_multicast_ttl: int = 0  # 0: this host only; 1: the local network
    http_weight_per_minute: int = 6000  # the HTTP edge's REQUEST_WEIGHT limit per IP (Binance's)
    http_orders_per_10s: int = 100  # its ORDERS limits per account (Binance's)
    http_orders_per_day: int = 200_000
    grpc_port: int = 0  # the feed over gRPC streaming, in the market-data stage (0: off; needs md_port)
    metrics_port: int = 9100  # Prometheus /metrics (0: off)
    data: str = "microex-data"
    fsync: str = "batch"
    gateways: int = 1
    # colocated: the engine process serves the binary port itself (no gateway process, no ring
    # hops between a session and the core: gateway/colocated.py); one gateway's worth of sessions
    colocated: bool = False
    # Order ids a run is sized for: the engine's id map and each gateway's id tables are built
    # for this many at start. Past it a table doubles, rehashing every id of the run with the
    # order path stopped (milliseconds at a million ids), so size it for the trading day.
    expected_orders: int = 1 << 16
    heartbeat_ms: int = 1000
    rate_per_s: float = 100_000.0  # per session: the fast path is for programs
    burst: float | None = None
    snapshot_every: int = 1_000_000
    # Latency against CPU: how long the engine polls for more commands after a batch, and a
    # gateway for its reports after sending commands, before sleeping in the kernel
    # (a wake-up costs tens of µs on a VM; a poll under one).
    engine_spin_us: int = 500
    ack_spin_us: int = 0
    # Pinning (None: the OS places them). On a VM waking an idle vCPU costs ~100 µs, so a
    # latency-minded setup gives the engine its own core and spins it.
    # busy_poll: the engine and the gateways never sleep (they poll, yielding their core to any
    # runnable process): the lowest latency, a core each. Overrides engine_spin_us.
    busy_poll: bool = False
    engine_cpu: int | None = None
    gateway_cpus: list[int] | None = None  # gateway k runs on gateway_cpus[k % len]
    demo: bool = False

    @property
    def venue(self) -> VenueConfig:
        return VenueConfig.from_dict(self.venue_data)

    def key_map(self) -> dict[bytes, int]:
        return {k.api_key.encode(): k.account for k in self.api_keys}

    def deposit_triples(self) -> list[tuple[int, int, int]]:
        """(account, asset id, amount) for the engine."""
        ids = self.venue.asset_ids()
        return [(acc, ids[asset], amount) for acc, asset, amount in self.deposits]

    @classmethod
    def load(cls, path: str | Path) -> ServeConfig:
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    @classmethod
    def from_dict(cls, doc: dict) -> ServeConfig:
        serve = dict(doc.get("serve", {}))
        unknown = set(serve) - _SERVE_KEYS
        if unknown:
            raise ValueError(f"unknown [serve] keys: {sorted(unknown)}")
        venue_data = {"venue": dict(doc.get("venue", {})), "instrument": [], "account": []}
        ref_prices: dict[str, int] = {}
        for inst in doc.get("instrument", []):
            inst = dict(inst)
            if "ref_price" in inst:
                ref_prices[inst["symbol"]] = _positive_int(inst.pop("ref_price"), f"{inst.get('symbol')}.ref_price")
            venue_data["instrument"].append(inst)
        api_keys, deposits = [], []
        for acc in doc.get("account", []):
            acc = dict(acc)
            edge = {k: acc.pop(k) for k in _ACCOUNT_EDGE_KEYS if k in acc}
            venue_data["account"].append(acc)
            if "api_key" in edge:
                api_keys.append(ApiKey(int(acc["id"]), str(edge["api_key"]), str(edge.get("secret", ""))))
            for asset, amount in edge.get("deposit", {}).items():
                deposits.append((int(acc["id"]), asset, _positive_int(amount, f"account {acc['id']} deposit")))
        cfg = cls(venue_data=venue_data, api_keys=api_keys, deposits=deposits, ref_prices=ref_prices,
                  decimals={k: int(v) for k, v in doc.get("assets", {}).items()}, **serve)
        cfg.check()
        return cfg

    def check(self) -> None:
        venue = self.venue  # raises ValueError naming the field
        assets = set(venue.assets)
        for _, asset, _ in self.deposits:
            if asset not in assets:
                raise ValueError(f"deposit in unknown asset {asset!r} (assets: {sorted(assets)})")
        for sym in self.ref_prices:
            if sym not in venue.instrument_ids():
                raise ValueError(f"ref_price for unknown instrument {sym!r}")
        keys = [k.api_key for k in self.api_keys]
        if len(set(keys)) != len(keys) or any(not 8 <= len(k.encode()) <= 32 for k in keys):
            raise ValueError("api_key values must be unique and 8..32 bytes long (they travel in LOGIN's 32 bytes)")
        if not 1 <= self.gateways <= 16:
            raise ValueError("gateways must be 1..16")
        if not isinstance(self.expected_orders, int) or not 1 <= self.expected_orders <= 1 << 30:
            raise ValueError("expected_orders must be an integer in 1..2^30")
        if self.colocated and self.gateways != 1:
            raise ValueError("colocated serves the binary port from the engine process: gateways must be 1")
        if self.grpc_port and not self.md_port:
            raise ValueError("grpc_port needs the market-data stage (md_port 0 turns it off)")
        if self.md_multicast:
            if not self.md_port:
                raise ValueError("md_multicast needs the market-data stage (its port is the recovery line)")
            base, _ = parse_endpoint(self.md_multicast)  # raises ValueError with the reason
            check_groups(base, len(venue.instrument_ids()))
            try:
                socket.inet_aton(self.md_multicast_interface)
            except OSError:
                raise ValueError(f"md_multicast_interface {self.md_multicast_interface!r} must be an IPv4 "
                                 f"address (the interface's own)") from None
            if not 0 <= self.md_multicast_ttl <= 255:
                raise ValueError("md_multicast_ttl must be 0..255")
        for name in ("http_weight_per_minute", "http_orders_per_10s", "http_orders_per_day"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer")

    def override(self, **flags) -> ServeConfig:
        names = {f.name for f in fields(self)}
        for k, v in flags.items():
            if v is not None and k in names:
                setattr(self, k, v)
        self.check()
        return self


# -- the demo venue -------------------------------------------------------------------------------
# Units: USDT has 6 decimals, BTC and ETH 8 (the smallest unit is 1e-8). Prices move by
# 0.01 USDT (BTCUSDT, ETHUSDT) and 0.00001 BTC (ETHBTC); quantities by 0.001 BTC / 0.01 ETH.

DEMO_VENUE = {
    "venue": {"max_accounts": 1000, "default_max_open_orders": 10_000},
    "assets": {"USDT": 6, "BTC": 8, "ETH": 8},
    "instrument": [
        {"symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick": 10, "lot": 100_000, "min_qty": 1,
         "max_qty": 100_000, "max_notional": 10_000_000_000_000, "price_band_pct": 10,
         "maker_fee_bps": 2, "taker_fee_bps": 5, "ref_price": 6_000_000},
        {"symbol": "ETHUSDT", "base": "ETH", "quote": "USDT", "tick": 100, "lot": 1_000_000, "min_qty": 1,
         "max_qty": 100_000, "max_notional": 10_000_000_000_000, "price_band_pct": 10,
         "maker_fee_bps": 2, "taker_fee_bps": 5, "ref_price": 300_000},
        {"symbol": "ETHBTC", "base": "ETH", "quote": "BTC", "tick": 10, "lot": 1_000_000, "min_qty": 1,
         "max_qty": 100_000, "max_notional": 100_000_000_000, "price_band_pct": 10,
         "maker_fee_bps": 2, "taker_fee_bps": 5, "ref_price": 5_000},
    ],
}
DEMO_DEPOSIT = {"USDT": 1_000_000 * 10**6, "BTC": 10 * 10**8, "ETH": 100 * 10**8}


def demo_keys(data: str | Path) -> list[ApiKey]:
    """The demo accounts' keys: kept in <data>/demo-keys.json so a restart keeps them."""
    path = Path(data) / "demo-keys.json"
    if path.exists():
        return [ApiKey(**k) for k in json.loads(path.read_text())]
    keys = [ApiKey(i, f"demo{i:02d}-{secrets.token_hex(8)}", secrets.token_hex(32)) for i in range(1, DEMO_ACCOUNTS + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([k.__dict__ for k in keys], indent=1) + "\n")
    return keys


def demo_config(data: str) -> ServeConfig:
    doc = json.loads(json.dumps(DEMO_VENUE))
    doc["serve"] = {"data": data}
    doc["account"] = [{"id": k.account, "max_open_orders": 10_000, "api_key": k.api_key, "secret": k.secret,
                       "deposit": dict(DEMO_DEPOSIT)} for k in demo_keys(data)]
    cfg = ServeConfig.from_dict(doc)
    cfg.demo = True
    return cfg


def _positive_int(v, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{what} must be a positive integer")
    return v
