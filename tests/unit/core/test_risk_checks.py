"""Each pre-trade check at its boundary, holds and fees by hand, in risk mode.

Venue: XY (base X, quote Y), tick 2 (quote units per tick per lot), lot 10 (base
units per lot), fees maker 10 bps / taker 30 bps, so a buy holds per lot
price*2 + ceil(price*2*30/10000).
"""

import pytest

from microex.core.engine import MatchingEngine
from microex.core.positions import PositionBook
from microex.core.reference import ReferenceMatcher
from microex.core.venue import AccountSpec, InstrumentSpec, VenueConfig
from microex.protocol.conformance_csv import CommandCsvDecoder, EventCsvEncoder

XY = dict(symbol="XY", base="X", quote="Y", tick=2, lot=10, min_qty=2, max_qty=50, max_notional=20_000,
          price_band_pct=10, maker_fee_bps=10, taker_fee_bps=30)


def venue(**changes) -> VenueConfig:
    return VenueConfig(instruments=(InstrumentSpec(**{**XY, **changes}),), accounts=(AccountSpec(1, 2),),
                       max_accounts=3, default_max_open_orders=0)


class Session:
    def __init__(self, engine_kind, v: VenueConfig) -> None:
        self.venue = v
        self.m = MatchingEngine(venue=v) if engine_kind == "numba" else ReferenceMatcher(venue=v)
        self.dec = CommandCsvDecoder(self.m.config.max_instruments, v)
        self.enc = EventCsvEncoder(self.dec)
        self.positions = PositionBook(self.m.config.max_accounts, self.m.config.max_instruments)

    def send(self, *rows: str) -> list[str]:
        events = self.m.process(self.dec.decode(list(rows)))
        self.positions.apply(events)
        return self.enc.encode(events)

    def bal(self, acc: int, asset: str) -> tuple[int, int]:
        aid = self.venue.asset_ids()[asset]
        for a, s, avail, held in self.m.balance_rows():
            if (a, s) == (acc, aid):
                return avail, held
        return 0, 0


@pytest.fixture(params=["numba", "reference"])
def kind(request):
    return request.param


def buy_unit(price: int) -> int:
    pt = price * 2
    return pt + -(-pt * 30 // 10_000)


def test_exactly_enough_funds_and_one_unit_short(kind):
    s = Session(kind, venue())
    need = 5 * buy_unit(100)  # 5 lots at 100: 1000 + ceil(3.0) = 1003 per... see buy_unit
    assert s.send(f"deposit,,1,Y,,,,,{need}") == []
    assert s.send("new,1,1,XY,buy,limit,gtc,100,5,") == ["accepted,1,XY,buy,100,5,5,,"]
    assert s.bal(1, "Y") == (0, need)
    s.send(f"deposit,,2,Y,,,,,{need - 1}")
    assert s.send("new,2,2,XY,buy,limit,gtc,100,5,") == ["rejected,2,,,,,,,risk_funds"]
    assert s.bal(2, "Y") == (need - 1, 0)


def test_sell_holds_base_lots(kind):
    s = Session(kind, venue())
    s.send("deposit,,1,X,,,,,30")
    assert s.send("new,1,1,XY,sell,limit,gtc,100,3,") == ["accepted,1,XY,sell,100,3,3,,"]
    assert s.bal(1, "X") == (0, 30)
    assert s.send("new,2,1,XY,sell,limit,gtc,100,2,")[0] == "rejected,2,,,,,,,risk_funds"
    s.send("cancel,1")
    assert s.bal(1, "X") == (30, 0)


def test_fill_settles_fees_rounded_up_against_the_account(kind):
    s = Session(kind, venue())
    s.send("deposit,,1,X,,,,,1000", "deposit,,2,Y,,,,,100000")
    s.send("new,1,1,XY,sell,limit,gtc,101,7,")  # maker: 10 bps
    out = s.send("new,2,2,XY,buy,limit,gtc,103,3,")  # taker: 30 bps, fills 3 @ 101
    assert out[1] == "trade,2,XY,buy,101,3,0,1,"
    notional = 101 * 3 * 2  # 606
    fee_taker = -(-notional * 30 // 10_000)  # 1.818 -> 2
    fee_maker = -(-notional * 10 // 10_000)  # 0.606 -> 1
    assert (fee_taker, fee_maker) == (2, 1)
    assert s.bal(2, "Y") == (100000 - notional - fee_taker, 0)  # unused hold at 103 came back
    assert s.bal(2, "X") == (30, 0)
    assert s.bal(1, "Y") == (notional - fee_maker, 0)
    assert s.bal(1, "X") == (1000 - 70, 40)  # 4 lots still held
    assert s.bal(0, "Y") == (fee_taker + fee_maker, 0)


def test_price_band_edges(kind):
    s = Session(kind, venue())
    s.send("deposit,,1,Y,,,,,1000000", "deposit,,2,X,,,,,100000", "set_price,,,XY,,,,200,,")
    # band 10% around 200: 180..220 inclusive
    assert s.send("new,1,1,XY,buy,limit,gtc,220,2,") == ["accepted,1,XY,buy,220,2,2,,"]
    assert s.send("new,2,1,XY,buy,limit,gtc,221,2,") == ["rejected,2,,,,,,,risk_price_band"]
    assert s.send("new,3,2,XY,sell,limit,gtc,180,2,")[0] == "accepted,3,XY,sell,180,2,2,,"
    assert s.send("new,4,2,XY,sell,limit,gtc,179,2,") == ["rejected,4,,,,,,,risk_price_band"]
    # the last trade (220: order 3 met order 1) moves the band to 198..242
    assert s.send("new,5,1,XY,buy,limit,gtc,242,2,")[0] == "accepted,5,XY,buy,242,2,2,,"
    assert s.send("modify,5,,,,,,243,2,") == ["rejected,5,,,,,,,risk_price_band"]


def test_qty_and_notional_limits_at_the_boundary(kind):
    s = Session(kind, venue(max_notional=1000, max_qty=5, min_qty=2))
    s.send("deposit,,1,Y,,,,,1000000")
    assert s.send("new,1,1,XY,buy,limit,gtc,100,5,")[0] == "accepted,1,XY,buy,100,5,5,,"  # 1000: at the limit
    assert s.send("new,2,1,XY,buy,limit,gtc,101,5,") == ["rejected,2,,,,,,,risk_max_notional"]
    assert s.send("new,3,1,XY,buy,limit,gtc,10,6,") == ["rejected,3,,,,,,,risk_max_qty"]
    assert s.send("new,4,1,XY,buy,limit,gtc,10,1,") == ["rejected,4,,,,,,,risk_min_qty"]
    assert s.send("modify,1,,,,,,100,6,") == ["rejected,1,,,,,,,risk_max_qty"]


def test_open_order_limit_halt_and_suspend(kind):
    s = Session(kind, venue())
    s.send("deposit,,1,Y,,,,,1000000", "deposit,,2,Y,,,,,1000000")
    assert s.send("new,1,1,XY,buy,limit,gtc,100,2,")[0].startswith("accepted")
    assert s.send("new,2,1,XY,buy,limit,gtc,100,2,")[0].startswith("accepted")
    assert s.send("new,3,1,XY,buy,limit,gtc,100,2,") == ["rejected,3,,,,,,,risk_open_orders"]
    assert s.send("new,4,1,XY,buy,limit,ioc,100,2,")[-1] == "cancelled,4,XY,buy,100,2,0,,ioc"  # IOC never rests
    s.send("cancel,1")
    assert s.send("new,5,1,XY,buy,limit,gtc,100,2,")[0].startswith("accepted")
    assert s.send("halt,,,XY,,,,,,") == []
    assert s.send("new,6,2,XY,buy,limit,gtc,100,2,") == ["rejected,6,,,,,,,risk_halted"]
    assert s.send("cancel,2") == ["cancelled,2,XY,buy,100,2,0,,user"]  # cancels still work
    s.send("resume,,,XY,,,,,,", "suspend,,2,,,,,,,")
    assert s.send("new,7,2,XY,buy,limit,gtc,100,2,") == ["rejected,7,,,,,,,risk_suspended"]
    s.send("unsuspend,,2,,,,,,,")
    assert s.send("new,8,2,XY,buy,limit,gtc,100,2,")[0].startswith("accepted")


def test_deposit_and_withdraw_rejects(kind):
    s = Session(kind, venue())
    assert s.send("deposit,,1,Y,,,,,0") == ["rejected,,,,,,,,invalid_qty"]
    assert s.send("deposit,,1,NOPE,,,,,5") == ["rejected,,,,,,,,invalid_command"]
    assert s.send("deposit,,9,Y,,,,,5") == ["rejected,,,,,,,,invalid_command"]
    assert s.send("deposit,,1,Y,,,,,500") == []
    assert s.send("withdraw,,1,Y,,,,,501") == ["rejected,,,,,,,,risk_funds"]
    assert s.send("withdraw,,1,Y,,,,,500") == []
    assert s.bal(1, "Y") == (0, 0)
    assert s.send("new,1,4,XY,buy,limit,gtc,100,2,") == ["rejected,1,,,,,,,unknown_account"]
    assert s.send("new,2,1,ZZ,buy,limit,gtc,100,2,") == ["rejected,2,,,,,,,unknown_instrument"]


def test_market_buy_holds_its_sweep_and_stops_at_the_band(kind):
    s = Session(kind, venue(max_notional=0, max_qty=0))
    s.send("deposit,,3,X,,,,,1000", "deposit,,2,Y,,,,,5000", "set_price,,,XY,,,,100,,")
    assert s.send("new,1,3,XY,sell,limit,gtc,100,2,", "new,2,3,XY,sell,limit,gtc,105,2,",
                  "new,3,3,XY,sell,limit,gtc,109,2,", "new,9,3,XY,sell,limit,gtc,111,2,")[-1] == (
        "rejected,9,,,,,,,risk_price_band")
    # band edge 110: the market buy would sweep all 6 lots (worst 109) and holds for 109
    assert s.bal(2, "Y") == (5000, 0)
    out = s.send("new,4,2,XY,buy,market,,,8,")
    assert out[-1] == "cancelled,4,XY,buy,,2,0,,ioc"
    paid = sum(p * 2 * 2 + -(-p * 2 * 2 * 30 // 10_000) for p in (100, 105, 109))
    assert s.bal(2, "Y") == (5000 - paid, 0)
    # with too little money for its sweep, a market buy is rejected
    s.send("new,5,3,XY,sell,limit,gtc,109,50,")
    assert s.send("new,6,2,XY,buy,market,,,50,") == ["rejected,6,,,,,,,risk_funds"]


def test_modify_up_needs_funds_and_down_releases(kind):
    s = Session(kind, venue(max_notional=0))
    s.send(f"deposit,,1,Y,,,,,{buy_unit(100) * 5}")
    s.send("new,1,1,XY,buy,limit,gtc,100,3,")
    assert s.send("modify,1,,,,,,100,6,") == ["rejected,1,,,,,,,risk_funds"]
    assert s.send("modify,1,,,,,,100,5,") == ["modified,1,XY,buy,100,,5,,"]
    assert s.bal(1, "Y") == (0, buy_unit(100) * 5)
    assert s.send("modify,1,,,,,,100,2,") == ["modified,1,XY,buy,100,,2,,"]
    assert s.bal(1, "Y") == (buy_unit(100) * 3, buy_unit(100) * 2)


def test_positions_average_cost_and_realized_pnl(kind):
    s = Session(kind, venue(max_notional=0, price_band_pct=0, maker_fee_bps=0, taker_fee_bps=0))
    s.send("deposit,,1,Y,,,,,100000", "deposit,,2,X,,,,,100000", "deposit,,2,Y,,,,,100000")
    s.send("new,1,2,XY,sell,limit,gtc,100,4,", "new,2,1,XY,buy,limit,gtc,100,4,")  # 1 long 4 @100
    s.send("new,3,2,XY,sell,limit,gtc,110,2,", "new,4,1,XY,buy,limit,gtc,110,2,")  # 1 long 6, cost 620
    s.send("new,5,2,XY,buy,limit,gtc,120,3,", "new,6,1,XY,sell,limit,gtc,120,3,")  # 1 sells 3 @120
    rows = {(a, i): (lots, cost, realized) for a, i, lots, cost, realized in s.positions.rows()}
    if kind == "reference":
        assert s.m.position_rows() == s.positions.rows()
    # closing 3 of 6 lots with cost 620: removed floor(620*3/6) = 310, realized 360 - 310 = 50
    assert rows[1, 1] == (3, 310, 50)
    assert rows[2, 1] == (-3, -310, -50)


def test_market_order_does_not_trade_past_the_band(kind):
    s = Session(kind, venue(max_notional=0, max_qty=0))
    s.send("deposit,,3,X,,,,,1000", "deposit,,2,Y,,,,,5000", "set_price,,,XY,,,,100,,")
    s.send("new,1,3,XY,sell,limit,gtc,103,2,", "new,2,3,XY,sell,limit,gtc,108,2,")
    s.send("set_price,,,XY,,,,95,,")  # band now 86..104 (104.5 floored)
    out = s.send("new,3,2,XY,buy,market,,,4,")
    assert out[1] == "trade,3,XY,buy,103,2,2,1,"
    assert out[-1] == "cancelled,3,XY,buy,,2,0,,ioc"
    assert s.bal(2, "Y") == (5000 - (103 * 2 * 2 + 2), 0)  # fee ceil(412 * 30 / 10000) = 2
