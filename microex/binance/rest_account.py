"""Account endpoints (signed): account, order (GET), openOrders, allOrders, myTrades; listenKeys.

How it works: balances are read from the replica's engine state (exact: the same
bits as the engine's after the same commands); orders and trades from the history
(history.py). listenKeys (POST/PUT/DELETE /api/v3/userDataStream) take the API key
only, as Binance's USER_STREAM endpoints, and are kept by user_stream.py.
"""

from __future__ import annotations

from microex.binance import errors as E
from microex.binance import history_kernels as K
from microex.binance import schemas as S
from microex.binance import views as V
from microex.binance.rest_orders import find_order
from microex.binance.rest_public import now_ms, symbol

MS = 1_000_000


def balances(st, account: int, omit_zero: bool = False) -> list[S.Balance]:
    out = []
    for asset, free, held in st.edge.balances(account):
        if omit_zero and not free and not held:
            continue
        out.append(S.Balance(asset=st.edge.assets.names[asset], free=st.edge.assets.amount(asset, free),
                             locked=st.edge.assets.amount(asset, held)))
    return out


async def account(st, p, key):
    markets = list(st.edge.markets.values())
    maker = max((m.maker_bps for m in markets), default=0)
    taker = max((m.taker_bps for m in markets), default=0)
    rates = S.CommissionRates(maker=f"{maker / 10000:.8f}", taker=f"{taker / 10000:.8f}", buyer="0.00000000",
                              seller="0.00000000")
    return S.Account(makerCommission=maker, takerCommission=taker, buyerCommission=0, sellerCommission=0,
                     commissionRates=rates, canTrade=True, canWithdraw=False, canDeposit=False, brokered=False,
                     requireSelfTradePrevention=False, preventSor=False, updateTime=now_ms(), accountType="SPOT",
                     balances=balances(st, key.account, p.bool("omitZeroBalances")), permissions=["SPOT"],
                     uid=key.account)


async def get_order(st, p, key):
    m = symbol(st, p)
    r = find_order(st, p, key.account, m, E.NO_SUCH_ORDER, "Order does not exist.")
    return V.order(st.edge.history, m, r)


async def open_orders(st, p, key):
    m = symbol(st, p, required=False)
    h = st.edge.history
    rows = h.open_rows(key.account, m.id if m else None)
    return [V.order(h, m or st.edge.by_id[int(h.ot[r, K.OR_INST])], int(r)) for r in rows]


def _time_range(p, max_ms: int | None = None) -> tuple[int | None, int | None]:
    start, end = p.int("startTime", lo=0), p.int("endTime", lo=0)
    if start is not None and end is not None:
        if end < start:
            raise E.ApiError(E.INVALID_PARAMETER, "startTime is after endTime.")
        if max_ms is not None and end - start > max_ms:
            raise E.ApiError(E.MORE_THAN_XX_HOURS, "More than 24 hours between startTime and endTime.")
    return start, end


async def all_orders(st, p, key):
    m = symbol(st, p)
    start, end = _time_range(p, 24 * 3_600_000)
    h = st.edge.history
    rows = h.order_rows(key.account, m.id, p.int("orderId", lo=0), None if start is None else start * MS,
                        None if end is None else end * MS + MS - 1, p.limit(500, 1000))
    return [V.order(h, m, int(r)) for r in rows]


async def my_trades(st, p, key):
    m = symbol(st, p)
    start, end = _time_range(p, 24 * 3_600_000)
    order_id, from_id, limit = p.int("orderId", lo=0), p.int("fromId", lo=0), p.limit(500, 1000)
    if from_id is not None and (start is not None or end is not None):
        raise E.ApiError(E.OPTIONAL_PARAMS_BAD_COMBO, "Combination of optional parameters invalid.")
    h = st.edge.history
    rows, makers = h.account_trades(key.account, m.id)
    keep = []
    for t, mk in zip(rows.tolist(), makers.tolist()):
        eid = t[K.TR_MAKER] if mk else t[K.TR_TAKER]
        ms = t[K.TR_TS] // MS
        if order_id is not None and eid != order_id:
            continue
        if from_id is not None and t[K.TR_ID] < from_id:
            continue
        if (start is not None and ms < start) or (end is not None and ms > end):
            continue
        keep.append((t, mk))
    keep = keep[:limit] if from_id is not None or start is not None else keep[-limit:]
    return [V.my_trade(h, m, t, mk) for t, mk in keep]


async def new_listen_key(st, p, key):
    return S.ListenKey(listenKey=st.users.new_listen_key(key.account))


async def keep_listen_key(st, p, key):
    st.users.keep_alive(p.str("listenKey", required=True), key.account)
    return S.Empty()


async def close_listen_key(st, p, key):
    st.users.close_listen_key(p.str("listenKey", required=True), key.account)
    return S.Empty()
