"""`microex match --config`: risk mode as a black box, with the example venue."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENUE = ROOT / "examples" / "venue.toml"

STREAM = """action,order_id,account,instrument,side,type,tif,price,qty,flags
deposit,,1,USDT,,,,,10000000,
deposit,,2,BTC,,,,,100000000,
new,1,2,BTCUSDT,sell,limit,gtc,5000,10,
new,2,1,BTCUSDT,buy,limit,gtc,5000,4,
withdraw,,1,USDT,,,,,99999999,
new,3,1,BTCUSDT,buy,limit,gtc,5600,1,
halt,,,BTCUSDT,,,,,,
new,4,1,BTCUSDT,buy,limit,gtc,5000,1,
resume,,,BTCUSDT,,,,,,
new,5,1,BTCUSDT,buy,market,,,2,
deposit,,1,DOGE,,,,,5,
new,6,3,BTCUSDT,buy,limit,gtc,5000,1,
"""


def match(args, stdin):
    return subprocess.run([sys.executable, "-m", "microex.app.cli", "match", *args], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_example_venue_events_and_balances(tmp_path):
    bal, pos = tmp_path / "bal.csv", tmp_path / "pos.csv"
    out = match(["--config", str(VENUE), "--balances-out", str(bal), "--positions-out", str(pos)], STREAM)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == [
        "accepted,1,BTCUSDT,sell,5000,10,10,,",
        "accepted,2,BTCUSDT,buy,5000,4,4,,",
        "trade,2,BTCUSDT,buy,5000,4,0,1,",
        "rejected,,,,,,,,risk_funds",
        "rejected,3,,,,,,,risk_price_band",
        "rejected,4,,,,,,,risk_halted",
        "accepted,5,BTCUSDT,buy,,2,2,,",
        "trade,5,BTCUSDT,buy,5000,2,0,1,",
        "rejected,,,,,,,,invalid_command",
        "rejected,6,,,,,,,risk_funds",
    ]
    # 6 lots at 5000 ticks, tick 1: notional 30000 USDT units; taker 5 bps, maker 2 bps, rounded up
    taker_fees = -(-20000 * 5 // 10_000) + -(-10000 * 5 // 10_000)
    maker_fees = -(-20000 * 2 // 10_000) + -(-10000 * 2 // 10_000)
    assert bal.read_text().splitlines() == [
        "account,asset,available,held",
        f"0,USDT,{taker_fees + maker_fees},0",
        "1,BTC,600000,0",
        f"1,USDT,{10_000_000 - 30000 - taker_fees},0",
        "2,BTC,99000000,400000",
        f"2,USDT,{30000 - maker_fees},0",
    ]
    assert pos.read_text().splitlines() == [
        "account,instrument,position,avg_price,realized_pnl",
        "1,BTCUSDT,6,5000.000000,0",
        "2,BTCUSDT,-6,5000.000000,0",
    ]
    ref = match(["--config", str(VENUE), "--engine", "reference"], STREAM)
    assert ref.stdout == out.stdout


def test_without_config_account_rows_are_unknown_actions():
    out = match([], "h\ndeposit,7,1,USDT,,,,,100,\nnew,1,1,BTCUSDT,buy,limit,gtc,5000,1,\n")
    assert out.stdout.splitlines()[1:] == ["rejected,7,,,,,,,invalid_command", "accepted,1,BTCUSDT,buy,5000,1,1,,"]


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[instrument]]\nsymbol = "X"\nbase = "A"\nquote = "A"\n')
    out = match(["--config", str(bad)], "h\n")
    assert out.returncode == 2 and "bad --config" in out.stderr and "Traceback" not in out.stderr
