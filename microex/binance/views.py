"""The edge's integer rows as Binance's JSON: orders, fills, trades, execution reports.

How it works: pure functions from a history row (history_kernels.py field layout) or a
report row and the instrument's `Market` (units.py) to a schemas.py Struct or a
stream payload dict. Names of enums follow Binance: type LIMIT / LIMIT_MAKER (a
post-only limit order) / MARKET; timeInForce GTC / IOC / FOK (GTC for market and
LIMIT_MAKER orders, as Binance reports them); selfTradePreventionMode EXPIRE_MAKER
for orders with microex's `stp` flag (cancel the resting order), else NONE.
"""

from __future__ import annotations

import numpy as np

from microex.binance import history_kernels as K
from microex.binance import schemas as S
from microex.binance.history import EXEC, STATUS, History
from microex.binance.units import Market
from microex.core.records import Flag, OrdType, Side, Tif

MS = 1_000_000
SIDES = {int(Side.BUY): "BUY", int(Side.SELL): "SELL"}
TIFS = {int(Tif.GTC): "GTC", int(Tif.IOC): "IOC", int(Tif.FOK): "FOK"}
ZERO = "0.00000000"


def order_type(ord_type: int, flags: int) -> str:
    if ord_type == OrdType.MARKET:
        return "MARKET"
    return "LIMIT_MAKER" if flags == Flag.POST_ONLY else "LIMIT"


def tif_name(ord_type: int, tif: int, flags: int) -> str:
    if ord_type == OrdType.MARKET or flags == Flag.POST_ONLY:
        return "GTC"
    return TIFS.get(tif, "GTC")


def stp_mode(flags: int) -> str:
    return "EXPIRE_MAKER" if flags == Flag.STP else "NONE"


def order(h: History, m: Market, r: int) -> S.Order:
    o = [int(x) for x in h.ot[r]]
    eid, ot_, fl = o[K.OR_ID], o[K.OR_TYPE], o[K.OR_FLAGS]
    return S.Order(
        symbol=m.symbol, orderId=eid, orderListId=-1, clientOrderId=h.client_id(eid), price=m.price(o[K.OR_PRICE]),
        origQty=m.qty(o[K.OR_QTY]), executedQty=m.qty(o[K.OR_EXEC]), cummulativeQuoteQty=m.quote_amount(o[K.OR_CUMQ]),
        status=STATUS[o[K.OR_STATUS]], timeInForce=tif_name(ot_, o[K.OR_TIF], fl), type=order_type(ot_, fl),
        side=SIDES.get(o[K.OR_SIDE], "BUY"), stopPrice=ZERO, icebergQty=ZERO, time=o[K.OR_TIME] // MS,
        updateTime=o[K.OR_UPDATE] // MS, isWorking=o[K.OR_TYPE] == OrdType.LIMIT, workingTime=o[K.OR_WORKING] // MS,
        origQuoteOrderQty=h.quote_qty.get(eid, ZERO), selfTradePreventionMode=stp_mode(fl))


def order_result(h: History, m: Market, o: list[int], fills: list[S.Fill], transact_ms: int,
                 full: bool) -> S.OrderResult:
    """POST /api/v3/order's RESULT / FULL from the order's row as it stood right after its command."""
    eid, ot_, fl = o[K.OR_ID], o[K.OR_TYPE], o[K.OR_FLAGS]
    return S.OrderResult(
        symbol=m.symbol, orderId=eid, orderListId=-1, clientOrderId=h.client_id(eid), transactTime=transact_ms,
        price=m.price(o[K.OR_PRICE]), origQty=m.qty(o[K.OR_QTY]), executedQty=m.qty(o[K.OR_EXEC]),
        origQuoteOrderQty=h.quote_qty.get(eid, ZERO), cummulativeQuoteQty=m.quote_amount(o[K.OR_CUMQ]),
        status=STATUS[o[K.OR_STATUS]], timeInForce=tif_name(ot_, o[K.OR_TIF], fl), type=order_type(ot_, fl),
        side=SIDES.get(o[K.OR_SIDE], "BUY"), workingTime=o[K.OR_WORKING] // MS if ot_ == OrdType.LIMIT else -1,
        selfTradePreventionMode=stp_mode(fl), fills=fills if full else [])


def cancel_result(h: History, m: Market, r: int, transact_ms: int) -> S.CancelResult:
    o = order(h, m, r)
    return S.CancelResult(
        symbol=o.symbol, origClientOrderId=o.clientOrderId, orderId=o.orderId, orderListId=-1,
        clientOrderId=o.clientOrderId, transactTime=transact_ms, price=o.price, origQty=o.origQty,
        executedQty=o.executedQty, origQuoteOrderQty=o.origQuoteOrderQty, cummulativeQuoteQty=o.cummulativeQuoteQty,
        status=o.status, timeInForce=o.timeInForce, type=o.type, side=o.side,
        selfTradePreventionMode=o.selfTradePreventionMode)


def fill(m: Market, rep: np.ndarray) -> S.Fill:
    return S.Fill(price=m.price(int(rep[K.RP_LAST_PRICE])), qty=m.qty(int(rep[K.RP_LAST_QTY])),
                  commission=m.quote_amount(int(rep[K.RP_FEE])), commissionAsset=m.quote,
                  tradeId=int(rep[K.RP_TRADE_ID]))


def public_trade(m: Market, t: list[int]) -> S.Trade:
    return S.Trade(id=t[K.TR_ID], price=m.price(t[K.TR_PRICE]), qty=m.qty(t[K.TR_QTY]),
                   quoteQty=m.quote_amount(t[K.TR_PRICE] * t[K.TR_QTY] * m.tick), time=t[K.TR_TS] // MS,
                   isBuyerMaker=t[K.TR_SIDE] == Side.SELL, isBestMatch=True)


def agg_trades(trades: np.ndarray) -> list[list[int]]:
    """Trades of one taker order at one price, in a row, become one aggregate:
    [first id, last id, price, qty, ts, taker side]."""
    out: list[list[int]] = []
    for t in trades.tolist():
        if out and out[-1][6] == t[K.TR_TAKER] and out[-1][2] == t[K.TR_PRICE]:
            a = out[-1]
            a[1] = t[K.TR_ID]
            a[3] += t[K.TR_QTY]
        else:
            out.append([t[K.TR_ID], t[K.TR_ID], t[K.TR_PRICE], t[K.TR_QTY], t[K.TR_TS], t[K.TR_SIDE], t[K.TR_TAKER]])
    return out


def agg_trade(m: Market, a: list[int]) -> S.AggTrade:
    return S.AggTrade(a=a[0], p=m.price(a[2]), q=m.qty(a[3]), f=a[0], l=a[1], T=a[4] // MS, m=a[5] == Side.SELL,
                      M=True)


def my_trade(h: History, m: Market, t: list[int], is_maker: bool) -> S.MyTrade:
    eid = t[K.TR_MAKER] if is_maker else t[K.TR_TAKER]
    taker_buys = t[K.TR_SIDE] == Side.BUY
    return S.MyTrade(symbol=m.symbol, id=t[K.TR_ID], orderId=eid, orderListId=-1, price=m.price(t[K.TR_PRICE]),
                     qty=m.qty(t[K.TR_QTY]), quoteQty=m.quote_amount(t[K.TR_PRICE] * t[K.TR_QTY] * m.tick),
                     commission=m.quote_amount(t[K.TR_MAKER_FEE] if is_maker else t[K.TR_TAKER_FEE]),
                     commissionAsset=m.quote, time=t[K.TR_TS] // MS, isBuyer=taker_buys != is_maker,
                     isMaker=is_maker, isBestMatch=True)


def execution_report(h: History, m: Market, rep: list[int], now_ms: int) -> dict:
    """The user stream's executionReport for one report row."""
    eid, ot_, fl = rep[K.RP_ORDER], rep[K.RP_TYPE], rep[K.RP_FLAGS]
    x = rep[K.RP_EXEC]
    trade = x == K.X_TRADE
    cid = h.client_id(eid)
    return {
        "e": "executionReport", "E": now_ms, "s": m.symbol, "c": cid, "S": SIDES.get(rep[K.RP_SIDE], "BUY"),
        "o": order_type(ot_, fl), "f": tif_name(ot_, rep[K.RP_TIF], fl), "q": m.qty(rep[K.RP_QTY]),
        "p": m.price(rep[K.RP_PRICE]), "P": ZERO, "F": ZERO, "g": -1, "C": cid if x == K.X_CANCELED else "",
        "x": EXEC[x], "X": STATUS.get(rep[K.RP_STATUS], "NEW"), "r": "NONE", "i": eid,
        "l": m.qty(rep[K.RP_LAST_QTY]), "z": m.qty(rep[K.RP_CUM]), "L": m.price(rep[K.RP_LAST_PRICE]),
        "n": m.quote_amount(rep[K.RP_FEE]), "N": m.quote if trade else None, "T": rep[K.RP_TS] // MS,
        "t": rep[K.RP_TRADE_ID] if trade else -1, "I": rep[K.RP_SEQ], "w": x in (K.X_NEW, K.X_REPLACED)
        and ot_ == OrdType.LIMIT, "m": bool(rep[K.RP_MAKER]), "M": False, "O": rep[K.RP_TIME] // MS,
        "Z": m.quote_amount(rep[K.RP_CUMQ]),
        "Y": m.quote_amount(rep[K.RP_LAST_PRICE] * rep[K.RP_LAST_QTY] * m.tick), "Q": h.quote_qty.get(eid, ZERO),
        "W": rep[K.RP_TIME] // MS, "V": stp_mode(fl),
    }
