"""Binance's request weights and order-rate limits, sans I/O: the weight table and a fixed-window limiter.

How it works
- `WEIGHTS` is the REST API's weight table: (method, path) -> a weight, or a function of the
  request's parameters for the endpoints whose weight depends on them (depth by `limit`, the
  tickers and openOrders by symbol, ...). `WS_WEIGHTS` is the WebSocket API's. The values are
  Binance's documented ones (binance-sdk-spot 13's docstrings, Binance's REST docs).
- A limit is a `Rule` (rateLimitType, interval, intervalNum, limit: exchangeInfo's shape),
  counted over fixed windows as Binance counts: a 1 MINUTE window starts at every whole
  minute of the clock, a 10 SECOND one at :00, :10, ..., a 1 DAY one at 00:00 UTC. A count
  belongs to a key (an IP, an account) and starts again from zero in the next window.
- `Limiter.charge(ip, weight)` adds a request's weight to its IP's REQUEST_WEIGHT count
  unless the sum would pass the limit; `take_order(account)` adds one order to each of the
  account's ORDERS counts unless one would pass its limit. A refusal adds nothing and names
  the rule it would break; the caller answers 429 with `message(rule)` (-1003 / -1015).
- The clock (seconds, wall time) is a constructor argument: tests drive time themselves.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

UNIT_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


@dataclass(frozen=True)
class Rule:
    type: str  # REQUEST_WEIGHT or ORDERS
    interval: str  # SECOND, MINUTE, HOUR, DAY
    num: int
    limit: int

    @property
    def seconds(self) -> int:
        return self.num * UNIT_S[self.interval]

    @property
    def header(self) -> str:
        """The response header with the count: X-MBX-USED-WEIGHT-1M, X-MBX-ORDER-COUNT-10S, ..."""
        name = "X-MBX-ORDER-COUNT" if self.type == "ORDERS" else "X-MBX-USED-WEIGHT"
        return f"{name}-{self.num}{self.interval[0]}"

    def info(self) -> dict:
        return {"rateLimitType": self.type, "interval": self.interval, "intervalNum": self.num, "limit": self.limit}


def message(rule: Rule) -> str:
    """Binance's error message for passing `rule` (-1003 for weight, -1015 for orders)."""
    per = f"{rule.num} {rule.interval}"
    if rule.type == "ORDERS":
        return f"Too many new orders; current limit is {rule.limit} orders per {per}."
    return (f"Too much request weight used; current limit is {rule.limit} request weight per {per}. "
            "Please use WebSocket Streams for live updates to avoid polling the API.")


class _Counts:
    """One rule's counts by key, for the current window only (older windows are dropped whole)."""

    def __init__(self, rule: Rule) -> None:
        if rule.limit <= 0:
            raise ValueError(f"{rule}: the limit must be positive")
        self.rule = rule
        self.window = -1
        self.counts: dict[object, int] = {}

    def get(self, key, now: float) -> int:
        w = int(now // self.rule.seconds)
        if w != self.window:
            self.window, self.counts = w, {}
        return self.counts.get(key, 0)

    def fits(self, key, n: int, now: float) -> bool:
        return self.get(key, now) + n <= self.rule.limit

    def add(self, key, n: int, now: float) -> None:
        self.counts[key] = self.get(key, now) + n

    def reset_at(self, now: float) -> float:
        """When the window holding `now` ends (seconds)."""
        return (int(now // self.rule.seconds) + 1) * self.rule.seconds


class Limiter:
    """REQUEST_WEIGHT per IP and ORDERS per account; defaults are Binance Spot's."""

    def __init__(self, weight_per_minute: int = 6000, orders_per_10s: int = 100, orders_per_day: int = 200_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.weight = _Counts(Rule("REQUEST_WEIGHT", "MINUTE", 1, weight_per_minute))
        self.orders = [_Counts(Rule("ORDERS", "SECOND", 10, orders_per_10s)),
                       _Counts(Rule("ORDERS", "DAY", 1, orders_per_day))]

    @property
    def rules(self) -> list[Rule]:
        return [self.weight.rule] + [c.rule for c in self.orders]

    # -- request weight, per IP ---------------------------------------------------------------------

    def charge(self, ip: str, weight: int) -> Rule | None:
        """Count a request's weight; the rule it would break instead (nothing counted), or None."""
        now = self.clock()
        if not self.weight.fits(ip, weight, now):
            return self.weight.rule
        self.weight.add(ip, weight, now)
        return None

    def used(self, ip: str) -> int:
        return self.weight.get(ip, self.clock())

    def retry_after(self) -> int:
        """Whole seconds until the weight window resets (Retry-After), at least 1."""
        now = self.clock()
        return max(1, math.ceil(self.weight.reset_at(now) - now))

    def reset_ms(self) -> int:
        """When the weight window resets, ms since the epoch (the WebSocket API's retryAfter)."""
        return int(self.weight.reset_at(self.clock()) * 1000)

    def weight_headers(self, ip: str) -> dict[str, str]:
        return {self.weight.rule.header: str(self.used(ip))}

    def weight_status(self, ip: str) -> list[dict]:
        """The WebSocket API's `rateLimits`: the weight rule with this IP's count."""
        return [{**self.weight.rule.info(), "count": self.used(ip)}]

    # -- new orders, per account --------------------------------------------------------------------

    def take_order(self, account: int) -> Rule | None:
        """Count one new order; the first rule it would break instead (nothing counted), or None."""
        now = self.clock()
        for c in self.orders:
            if not c.fits(account, 1, now):
                return c.rule
        for c in self.orders:
            c.add(account, 1, now)
        return None

    def order_headers(self, account: int) -> dict[str, str]:
        now = self.clock()
        return {c.rule.header: str(c.get(account, now)) for c in self.orders}


# -- the weight table --------------------------------------------------------------------------------

def _int(v: str | None, default: int) -> int:
    try:
        return int(v) if v else default
    except ValueError:  # a malformed value is the handler's -1100; weigh it as the default
        return default


def _count(symbols: str | None) -> int | None:
    """How many symbols a `symbols` JSON array names (None: not given, so all symbols)."""
    if not symbols:
        return None
    try:
        names = json.loads(symbols)
    except (ValueError, RecursionError):  # the handler answers -1100; weigh it as one symbol
        return 1
    return len(names) if isinstance(names, list) else 1


def _depth(p: Mapping[str, str]) -> int:
    """limit 1-100: 5, 101-500: 25, 501-1000: 50, 1001-5000: 250"""
    n = _int(p.get("limit"), 100)
    return 5 if n <= 100 else 25 if n <= 500 else 50 if n <= 1000 else 250


def _ticker_24hr(p: Mapping[str, str]) -> int:
    """symbol: 2; symbols 1-20: 2, 21-100: 40, 101 or more: 80; neither (all symbols): 80"""
    if p.get("symbol"):
        return 2
    n = _count(p.get("symbols"))
    return 80 if n is None or n > 100 else 40 if n > 20 else 2


def _one_or_more(p: Mapping[str, str]) -> int:
    """symbol: 2; symbols, or neither (all symbols): 4"""
    return 2 if p.get("symbol") else 4


def _test_order(p: Mapping[str, str]) -> int:
    """1; with computeCommissionRates=true: 20"""
    return 20 if (p.get("computeCommissionRates") or "").lower() == "true" else 1


def _open_orders(p: Mapping[str, str]) -> int:
    """symbol: 6; without (all symbols): 80"""
    return 6 if p.get("symbol") else 80


def _my_trades(p: Mapping[str, str]) -> int:
    """20; with orderId: 5"""
    return 5 if p.get("orderId") else 20


Weight = int | Callable[[Mapping[str, str]], int]

WEIGHTS: dict[tuple[str, str], Weight] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/depth"): _depth,
    ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/historicalTrades"): 25,
    ("GET", "/api/v3/aggTrades"): 4,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/uiKlines"): 2,
    ("GET", "/api/v3/avgPrice"): 2,
    ("GET", "/api/v3/ticker/24hr"): _ticker_24hr,
    ("GET", "/api/v3/ticker/price"): _one_or_more,
    ("GET", "/api/v3/ticker/bookTicker"): _one_or_more,
    ("POST", "/api/v3/order"): 1,
    ("POST", "/api/v3/order/test"): _test_order,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): _open_orders,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): _my_trades,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
}

# the routes that place an order (counted against ORDERS; order/test places none)
ORDER_ROUTES = frozenset({("POST", "/api/v3/order")})

WS_WEIGHTS = {"ping": 1, "time": 1, "session.logon": 2, "session.status": 2, "session.logout": 2,
              "userDataStream.subscribe": 2, "userDataStream.subscribe.signature": 2,
              "userDataStream.unsubscribe": 2, "userDataStream.subscription.list": 2}
WS_DEFAULT_WEIGHT = 1  # a malformed request or an unknown method


def weight(method: str, path: str, params: Mapping[str, str]) -> int:
    """A REST request's weight (0 for a route the API does not have: it is answered 404/405)."""
    w = WEIGHTS.get((method, path), 0)
    return w(params) if callable(w) else w


def describe(method: str, path: str) -> str:
    """A route's weight in words, for the OpenAPI document."""
    w = WEIGHTS[(method, path)]
    return w.__doc__ if callable(w) else str(w)
