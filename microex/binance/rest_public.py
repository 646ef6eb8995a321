"""Public REST endpoints (no key): time, exchangeInfo, depth, trades, aggTrades, klines, tickers.

How it works: each handler takes (state, params, key) and returns a schemas.py Struct
(or a list of them) that app.py encodes. Market data comes from the edge's market
view (market.py: books, candles, 24h windows from the stage's MarketState) and its
trade history (history.py: trade ids, taker side); decimals via the instrument's
Market (units.py). The 24h ticker's firstId/lastId and lastQty come from the kept
trades (the last 2^19 of the venue).
"""

from __future__ import annotations

import json
import time
from fractions import Fraction

from microex.binance import errors as E
from microex.binance import history_kernels as K
from microex.binance import schemas as S
from microex.binance import views as V
from microex.binance.market import INTERVALS, M1
from microex.binance.params import Params
from microex.binance.units import Market, fmt_fraction

DAY_MS = 86_400_000
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def symbol(st, p: Params, required: bool = True) -> Market | None:
    name = p.str("symbol", required=required)
    if name is None:
        return None
    m = st.edge.markets.get(name)
    if m is None:
        raise E.invalid_symbol()
    return m


def symbols(st, p: Params) -> list[Market] | None:
    """`symbol` or `symbols` (a JSON array of names); None when neither is given (all symbols)."""
    if "symbol" in p and "symbols" in p:
        raise E.ApiError(E.OPTIONAL_PARAMS_BAD_COMBO, "Parameter 'symbol' and 'symbols' cannot be sent together.")
    if "symbol" in p:
        return [symbol(st, p)]
    raw = p.str("symbols")
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        raise E.illegal("symbols", "expected a JSON array of symbols.") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise E.illegal("symbols", "expected a JSON array of symbols.")
    out = []
    for n in names:
        m = st.edge.markets.get(n)
        if m is None:
            raise E.invalid_symbol()
        out.append(m)
    return out


async def ping(st, p, key):
    return S.Empty()


async def server_time(st, p, key):
    return S.ServerTime(serverTime=now_ms())


def symbol_info(m: Market) -> S.SymbolInfo:
    return S.SymbolInfo(
        symbol=m.symbol, status="TRADING", baseAsset=m.base, baseAssetPrecision=m.base_dec, quoteAsset=m.quote,
        quotePrecision=m.quote_dec, quoteAssetPrecision=m.quote_dec, baseCommissionPrecision=m.base_dec,
        quoteCommissionPrecision=m.quote_dec, orderTypes=ORDER_TYPES, icebergAllowed=False, ocoAllowed=False,
        otoAllowed=False, quoteOrderQtyMarketAllowed=True, allowTrailingStop=False, cancelReplaceAllowed=False,
        amendAllowed=False, isSpotTradingAllowed=True, isMarginTradingAllowed=False, filters=m.filters(),
        permissions=[], permissionSets=[["SPOT"]], defaultSelfTradePreventionMode="NONE",
        allowedSelfTradePreventionModes=["NONE", "EXPIRE_MAKER"])


async def exchange_info(st, p, key):
    wanted = symbols(st, p)
    markets = wanted if wanted is not None else list(st.edge.markets.values())
    return S.ExchangeInfo(timezone="UTC", serverTime=now_ms(),
                          rateLimits=[S.RateLimit(**r.info()) for r in st.limits.rules], exchangeFilters=[],
                          symbols=[symbol_info(m) for m in markets])


async def depth(st, p, key):
    m = symbol(st, p)
    limit = p.limit(100, 5000)
    last, bids, asks = st.edge.market.book(m.id, limit)
    return S.Depth(lastUpdateId=last, bids=[[m.price(px), m.qty(q)] for px, q in bids],
                   asks=[[m.price(px), m.qty(q)] for px, q in asks])


async def trades(st, p, key):
    m = symbol(st, p)
    rows = st.edge.history.public_trades(m.id, p.limit(500, 1000))
    return [V.public_trade(m, t) for t in rows.tolist()]


async def historical_trades(st, p, key):
    m = symbol(st, p)
    rows = st.edge.history.public_trades(m.id, p.limit(500, 1000), p.int("fromId", lo=0))
    return [V.public_trade(m, t) for t in rows.tolist()]


async def agg_trades(st, p, key):
    m = symbol(st, p)
    limit = p.limit(500, 1000)
    from_id, start, end = p.int("fromId", lo=0), p.int("startTime", lo=0), p.int("endTime", lo=0)
    if start is not None and end is not None and end - start > 3_600_000:
        raise E.ApiError(E.MORE_THAN_XX_HOURS, "More than 1 hours between startTime and endTime.")
    aggs = V.agg_trades(st.edge.history.public_trades(m.id, None))
    if from_id is not None:
        aggs = [a for a in aggs if a[0] >= from_id][:limit]
    elif start is not None or end is not None:
        aggs = [a for a in aggs if (start is None or a[4] // 1_000_000 >= start)
                and (end is None or a[4] // 1_000_000 <= end)][:limit]
    else:
        aggs = aggs[-limit:]
    return [V.agg_trade(m, a) for a in aggs]


def interval(p: Params) -> str:
    iv = p.str("interval", required=True)
    if iv not in INTERVALS:
        raise E.ApiError(E.BAD_INTERVAL, "Invalid interval.")
    return iv


async def klines(st, p, key):
    m = symbol(st, p)
    iv = interval(p)
    rows = st.edge.market.klines(m.id, iv, p.int("startTime", lo=0), p.int("endTime", lo=0), p.limit(500, 1000))
    z = m.qty(0)
    return [[t, m.price(o), m.price(h), m.price(lo), m.price(c), m.qty(v), ct, m.quote_amount(q * m.tick), n, z,
             m.quote_amount(0), "0"] for t, o, h, lo, c, v, ct, q, n in rows]


async def avg_price(st, p, key):
    m = symbol(st, p)
    now = now_ms()
    rows = st.edge.market.klines(m.id, "1m", start_ms=now - 5 * M1)
    vol = sum(r[5] for r in rows)
    if vol:
        price = fmt_fraction(Fraction(sum(r[7] for r in rows), vol) * m.tick_size, m.prices.digits)
    else:
        price = m.price(int(st.edge.market.tickers(time.time_ns())[m.id - 1]["last"]))
    return S.AvgPrice(mins=5, price=price, closeTime=rows[-1][6] if rows else now)


def ticker_24hr(st, m: Market, t, now: int) -> S.Ticker24hr:
    h = st.edge.history
    tr = h.public_trades(m.id, None)
    recent = tr[tr[:, K.TR_TS] >= (now - DAY_MS) * 1_000_000]
    o, hi, lo, last = (int(t[f]) for f in ("open", "high", "low", "last"))
    vol, quote, count = int(t["volume"]), int(t["quote_volume"]), int(t["trades"])
    change = last - o
    pct = fmt_fraction(Fraction(change * 100, o), 3) if o else "0.000"
    wavg = fmt_fraction(Fraction(quote, vol) * m.tick_size, m.prices.digits) if vol else m.price(0)
    bp, bq, ap, aq = st.edge.market.bbo(m.id)
    return S.Ticker24hr(
        symbol=m.symbol, priceChange=m.price(change), priceChangePercent=pct, weightedAvgPrice=wavg,
        prevClosePrice=m.price(o), lastPrice=m.price(last), lastQty=m.qty(int(tr[-1, K.TR_QTY]) if len(tr) else 0),
        bidPrice=m.price(bp), bidQty=m.qty(bq), askPrice=m.price(ap), askQty=m.qty(aq), openPrice=m.price(o),
        highPrice=m.price(hi), lowPrice=m.price(lo), volume=m.qty(vol), quoteVolume=m.quote_amount(quote * m.tick),
        openTime=now - DAY_MS, closeTime=now, firstId=int(recent[0, K.TR_ID]) if len(recent) else -1,
        lastId=int(recent[-1, K.TR_ID]) if len(recent) else -1, count=count)


async def ticker_24hr_handler(st, p, key):
    wanted = symbols(st, p)
    now = now_ms()
    tickers = st.edge.market.tickers(now * 1_000_000)
    markets = wanted if wanted is not None else list(st.edge.markets.values())
    out = [ticker_24hr(st, m, tickers[m.id - 1], now) for m in markets]
    return out[0] if "symbol" in p else out


async def ticker_price(st, p, key):
    wanted = symbols(st, p)
    tickers = st.edge.market.tickers(time.time_ns())
    markets = wanted if wanted is not None else list(st.edge.markets.values())
    out = [S.PriceTicker(symbol=m.symbol, price=m.price(int(tickers[m.id - 1]["last"]))) for m in markets]
    return out[0] if "symbol" in p else out


async def book_ticker(st, p, key):
    wanted = symbols(st, p)
    markets = wanted if wanted is not None else list(st.edge.markets.values())
    out = []
    for m in markets:
        bp, bq, ap, aq = st.edge.market.bbo(m.id)
        out.append(S.BookTicker(symbol=m.symbol, bidPrice=m.price(bp), bidQty=m.qty(bq), askPrice=m.price(ap),
                                askQty=m.qty(aq)))
    return out[0] if "symbol" in p else out
