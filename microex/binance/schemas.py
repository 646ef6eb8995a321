"""Binance Spot's JSON shapes as msgspec Structs: Binance's field names, used only at the edge.

How it works: handlers build these Structs (views.py converts the edge's integer
rows into them) and the app encodes them with msgspec (`encode`), so a response
has exactly Binance's fields in Binance's order. openapi.py derives the OpenAPI
components from the same Structs (msgspec.json.schema_components), so the
published spec and the responses cannot drift apart. Decimals are strings, ids and
times integers (milliseconds), as in Binance's API.
"""

from __future__ import annotations

import msgspec


class S(msgspec.Struct):
    pass


class Error(S):
    code: int
    msg: str


class ServerTime(S):
    serverTime: int


class RateLimit(S):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class SymbolInfo(S):
    symbol: str
    status: str
    baseAsset: str
    baseAssetPrecision: int
    quoteAsset: str
    quotePrecision: int
    quoteAssetPrecision: int
    baseCommissionPrecision: int
    quoteCommissionPrecision: int
    orderTypes: list[str]
    icebergAllowed: bool
    ocoAllowed: bool
    otoAllowed: bool
    quoteOrderQtyMarketAllowed: bool
    allowTrailingStop: bool
    cancelReplaceAllowed: bool
    amendAllowed: bool
    isSpotTradingAllowed: bool
    isMarginTradingAllowed: bool
    filters: list[dict]
    permissions: list[str]
    permissionSets: list[list[str]]
    defaultSelfTradePreventionMode: str
    allowedSelfTradePreventionModes: list[str]


class ExchangeInfo(S):
    timezone: str
    serverTime: int
    rateLimits: list[RateLimit]
    exchangeFilters: list[dict]
    symbols: list[SymbolInfo]


class Depth(S):
    lastUpdateId: int
    bids: list[list[str]]
    asks: list[list[str]]


class Trade(S):
    id: int
    price: str
    qty: str
    quoteQty: str
    time: int
    isBuyerMaker: bool
    isBestMatch: bool


class AggTrade(S):
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 (Binance's name)
    T: int
    m: bool
    M: bool


class Ticker24hr(S):
    symbol: str
    priceChange: str
    priceChangePercent: str
    weightedAvgPrice: str
    prevClosePrice: str
    lastPrice: str
    lastQty: str
    bidPrice: str
    bidQty: str
    askPrice: str
    askQty: str
    openPrice: str
    highPrice: str
    lowPrice: str
    volume: str
    quoteVolume: str
    openTime: int
    closeTime: int
    firstId: int
    lastId: int
    count: int


class PriceTicker(S):
    symbol: str
    price: str


class BookTicker(S):
    symbol: str
    bidPrice: str
    bidQty: str
    askPrice: str
    askQty: str


class AvgPrice(S):
    mins: int
    price: str
    closeTime: int


class Fill(S):
    price: str
    qty: str
    commission: str
    commissionAsset: str
    tradeId: int


class OrderAck(S):
    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    transactTime: int


class OrderResult(S):
    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    transactTime: int
    price: str
    origQty: str
    executedQty: str
    origQuoteOrderQty: str
    cummulativeQuoteQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    workingTime: int
    selfTradePreventionMode: str
    fills: list[Fill] = []


class Order(S):
    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    price: str
    origQty: str
    executedQty: str
    cummulativeQuoteQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    stopPrice: str
    icebergQty: str
    time: int
    updateTime: int
    isWorking: bool
    workingTime: int
    origQuoteOrderQty: str
    selfTradePreventionMode: str


class CancelResult(S):
    symbol: str
    origClientOrderId: str
    orderId: int
    orderListId: int
    clientOrderId: str
    transactTime: int
    price: str
    origQty: str
    executedQty: str
    origQuoteOrderQty: str
    cummulativeQuoteQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    selfTradePreventionMode: str


class MyTrade(S):
    symbol: str
    id: int
    orderId: int
    orderListId: int
    price: str
    qty: str
    quoteQty: str
    commission: str
    commissionAsset: str
    time: int
    isBuyer: bool
    isMaker: bool
    isBestMatch: bool


class Balance(S):
    asset: str
    free: str
    locked: str


class CommissionRates(S):
    maker: str
    taker: str
    buyer: str
    seller: str


class Account(S):
    makerCommission: int
    takerCommission: int
    buyerCommission: int
    sellerCommission: int
    commissionRates: CommissionRates
    canTrade: bool
    canWithdraw: bool
    canDeposit: bool
    brokered: bool
    requireSelfTradePrevention: bool
    preventSor: bool
    updateTime: int
    accountType: str
    balances: list[Balance]
    permissions: list[str]
    uid: int


class ListenKey(S):
    listenKey: str


class Empty(S):
    pass


_encoder = msgspec.json.Encoder()


def encode(obj) -> bytes:
    return _encoder.encode(obj)
