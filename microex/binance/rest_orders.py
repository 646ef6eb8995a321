"""Order entry over REST: POST/DELETE /api/v3/order, DELETE /api/v3/openOrders, POST order/test.

How it works
- POST checks the parameters as Binance does (type LIMIT, LIMIT_MAKER or MARKET;
  LIMIT needs timeInForce GTC/IOC/FOK, quantity and price; MARKET needs quantity or
  quoteOrderQty), converts decimals to lots and ticks (units.py: not a multiple of
  the step is -1013), builds one NEW command (edge.py) and waits until the replica
  has run it. The answer is then exact: a reject is -2010 with the engine's reason
  in msg; else ACK, RESULT or FULL (default FULL for LIMIT and MARKET, ACK for
  LIMIT_MAKER, as Binance), from the order's state right after its command.
- LIMIT_MAKER is a post-only limit order (microex Flag.POST_ONLY): crossing is
  -2010 "Order would immediately match and take.". selfTradePreventionMode
  EXPIRE_MAKER is microex's stp flag (cancel the resting order); NONE is the default.
- MARKET by quoteOrderQty: converted here to a quantity with the book as the replica
  holds it: the most whole lots whose notional (before fees, which are charged in
  the quote asset on top) stays within quoteOrderQty, walking the other side from
  its best price. The order then runs as a market order of that quantity, so if
  the book moves in between it may fill at other prices (the engine's price
  protection still applies).
- A valid new order counts against the account's ORDERS limits (limits.py) before it
  is sent; past one it is not sent: 429 -1015 "Too many new orders; ...".
- DELETE sends one CANCEL (by orderId or origClientOrderId, which must name an order
  of the caller's account on that symbol) and waits for its outcome: an order that is
  no longer open is -2011 "Unknown order sent.".
"""

from __future__ import annotations

import asyncio
import secrets
from fractions import Fraction

from microex.binance import errors as E
from microex.binance import history_kernels as K
from microex.binance import views as V
from microex.binance.limits import message
from microex.binance.params import Params
from microex.binance.rest_public import now_ms, symbol
from microex.core.records import Flag, OrdType, Reason, Side, Tif

ORDER_TIMEOUT_S = 10.0
TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
STP_MODES = ("NONE", "EXPIRE_MAKER", "EXPIRE_TAKER", "EXPIRE_BOTH", "DECREMENT")
REJECT_MSG = {int(Reason.RISK_FUNDS): "Account has insufficient balance for requested action.",
              int(Reason.WOULD_CROSS): "Order would immediately match and take."}


def reject_message(reason: int) -> str:
    if reason in REJECT_MSG:
        return REJECT_MSG[reason]
    try:
        name = Reason(reason).name.lower()
    except ValueError:
        name = str(reason)
    return f"New order rejected: {name}."


async def _outcome(fut: asyncio.Future):
    try:
        return await asyncio.wait_for(fut, ORDER_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise E.ApiError(E.TIMEOUT, "Timeout waiting for response from backend server. Send status unknown; "
                                    "execution status unknown.", status=408) from None


def quote_qty_lots(st, m, side: int, units: Fraction) -> int:
    """The most whole lots whose notional walking the other side stays within `units` quote units."""
    _, bids, asks = st.edge.market.book(m.id, 0)
    lots, spent = 0, Fraction(0)
    for price, qty in (asks if side == Side.BUY else bids):
        per_lot = price * m.tick
        can = int((units - spent) // per_lot)
        take = min(can, qty)
        lots += take
        spent += take * per_lot
        if take < qty:
            break
    return lots


def parse_new(st, p: Params, account: int) -> dict:
    """A POST /api/v3/order's fields, checked and converted (raises ApiError)."""
    m = symbol(st, p)
    side = Side.BUY if p.enum("side", ("BUY", "SELL"), required=True) == "BUY" else Side.SELL
    typ = p.enum("type", TYPES, required=True, code=E.INVALID_ORDER_TYPE)
    if typ not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
        raise E.ApiError(E.INVALID_ORDER_TYPE, f"Unsupported order type {typ} (LIMIT, LIMIT_MAKER, MARKET).")
    for unsupported in ("stopPrice", "icebergQty", "trailingDelta", "strategyId", "strategyType", "pegPriceType"):
        if unsupported in p:
            raise E.ApiError(E.PARAM_NOT_REQUIRED, f"Parameter '{unsupported}' sent when not required.")
    stp = p.enum("selfTradePreventionMode", STP_MODES, default="NONE")
    if stp not in ("NONE", "EXPIRE_MAKER"):
        raise E.ApiError(E.INVALID_PARAMETER, "This symbol does not allow the specified self-trade prevention mode.")
    resp = p.enum("newOrderRespType", ("ACK", "RESULT", "FULL"), default="ACK" if typ == "LIMIT_MAKER" else "FULL")
    cid = p.client_id("newClientOrderId")
    if cid is None:
        cid = "mxweb_" + secrets.token_hex(8)
    elif st.edge.history.by_client_id(account, cid) is not None:
        eid = st.edge.history.by_client_id(account, cid)
        r = st.edge.history.row(eid)
        if (r is not None and st.edge.history.is_open(r)) or (r is None and eid in st.edge.new_waiters):
            raise E.ApiError(E.NEW_ORDER_REJECTED, "Duplicate order sent.")
    flags = Flag.STP if stp == "EXPIRE_MAKER" else Flag.NONE
    quote_qty = None
    if typ == "MARKET":
        has_q, has_qq = "quantity" in p, "quoteOrderQty" in p
        if has_q == has_qq:
            raise E.ApiError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, "Param 'quantity' or 'quoteOrderQty' must be "
                             "sent, but both were empty/null!" if not has_q else
                             "Parameters 'quantity' and 'quoteOrderQty' cannot be sent together.")
        if has_q:
            qty = m.qty_lots(p.str("quantity"))
        else:
            quote_qty = p.str("quoteOrderQty")
            qty = quote_qty_lots(st, m, side, m.quote_amount_units(quote_qty))
            if qty <= 0:
                raise E.ApiError(E.NEW_ORDER_REJECTED, "quoteOrderQty buys less than one lot at the book's prices.")
        return dict(m=m, side=side, ord_type=OrdType.MARKET, tif=Tif.IOC, flags=flags, price=0, qty=qty,
                    cid=cid, resp=resp, quote_qty=quote_qty)
    qty = m.qty_lots(p.str("quantity", required=True))
    price = m.price_ticks(p.str("price", required=True))
    if typ == "LIMIT_MAKER":
        tif, flags = Tif.GTC, Flag.POST_ONLY
    else:
        tif = {"GTC": Tif.GTC, "IOC": Tif.IOC, "FOK": Tif.FOK}[
            p.enum("timeInForce", ("GTC", "IOC", "FOK"), required=True, code=E.INVALID_TIF)]
    return dict(m=m, side=side, ord_type=OrdType.LIMIT, tif=tif, flags=flags, price=price, qty=qty, cid=cid,
                resp=resp, quote_qty=quote_qty)


async def new_order(st, p, key):
    o = parse_new(st, p, key.account)
    refused = st.limits.take_order(key.account)  # a valid order counts, whatever the engine says of it
    if refused is not None:
        raise E.ApiError(E.TOO_MANY_ORDERS, message(refused))
    m, edge = o["m"], st.edge
    eid, fut = edge.submit_new(key.account, m.id, o["side"], o["ord_type"], o["tif"], o["flags"], o["price"],
                               o["qty"])
    edge.history.name(eid, key.account, o["cid"], o["quote_qty"])
    out = await _outcome(fut)
    if out.rejected or out.row is None:
        raise E.ApiError(E.NEW_ORDER_REJECTED, reject_message(out.rejected))
    transact = int(out.events["ts_ns"][0]) // 1_000_000 if len(out.events) else now_ms()
    if o["resp"] == "ACK":
        from microex.binance.schemas import OrderAck

        return OrderAck(symbol=m.symbol, orderId=eid, orderListId=-1, clientOrderId=o["cid"], transactTime=transact)
    fills = [V.fill(m, r) for r in out.reports if r[K.RP_EXEC] == K.X_TRADE]
    return V.order_result(edge.history, m, out.row, fills, transact, o["resp"] == "FULL")


async def test_order(st, p, key):
    parse_new(st, p, key.account)
    from microex.binance.schemas import Empty

    return Empty()


def find_order(st, p: Params, account: int, m, missing_code: int, missing_msg: str) -> int:
    """The history row of the order named by orderId or origClientOrderId."""
    h = st.edge.history
    eid = p.int("orderId", lo=1)
    if eid is None:
        cid = p.str("origClientOrderId")
        if cid is None:
            raise E.ApiError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                             "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        eid = h.by_client_id(account, cid)
    r = h.order_row(account, m.id, eid) if eid is not None else None
    if r is None:
        raise E.ApiError(missing_code, missing_msg)
    return r


async def _cancel_row(st, account: int, m, r: int):
    edge = st.edge
    eid = int(edge.history.ot[r, K.OR_ID])
    if not edge.history.is_open(r):
        raise E.ApiError(E.CANCEL_REJECTED, "Unknown order sent.")
    out = await _outcome(edge.submit_cancel(account, eid))
    if out.rejected:
        raise E.ApiError(E.CANCEL_REJECTED, "Unknown order sent.")
    r = edge.history.row(eid)
    transact = int(out.events["ts_ns"][0]) // 1_000_000 if len(out.events) else now_ms()
    return V.cancel_result(edge.history, m, r, transact)


async def cancel_order(st, p, key):
    m = symbol(st, p)
    r = find_order(st, p, key.account, m, E.CANCEL_REJECTED, "Unknown order sent.")
    return await _cancel_row(st, key.account, m, r)


async def cancel_open_orders(st, p, key):
    m = symbol(st, p)
    rows = st.edge.history.open_rows(key.account, m.id)
    if not len(rows):
        raise E.ApiError(E.CANCEL_REJECTED, "Unknown order sent.")
    results = await asyncio.gather(*(_cancel_row(st, key.account, m, int(r)) for r in rows),
                                   return_exceptions=True)
    return [r for r in results if not isinstance(r, BaseException)]
