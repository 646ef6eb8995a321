"""`microex match` as a black box: the conformance files byte for byte, and bad rows."""

import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "conformance"
CASES = sorted(DATA.glob("*.csv"))
HEADER = "event,order_id,instrument,side,price,qty,leaves,maker_order_id,reason"


def match(args, stdin=None):
    return subprocess.run([sys.executable, "-m", "microex.app.cli", "match", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def _rows(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize("engine", ["numba", "reference"])
@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_conformance_file(case, engine):
    out = match(["--input", str(case), "--engine", engine])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == HEADER
    assert _rows(out.stdout) == _rows((case.with_suffix(".expected")).read_text())


def test_stdin_and_bad_rows_never_traceback():
    stdin = "\n".join([
        "action,order_id,account,instrument,side,type,tif,price,qty,flags",
        "new,1,1,XYZ,buy,limit,gtc,100,5,",
        "garbage",
        ",,,,,,,,,",
        "new,x1,1,XYZ,buy,limit,gtc,100,5,",
        "new,2,1,XYZ,buy,limit,gtc,1e3,5,",
        "new,3,1,,buy,limit,gtc,100,5,",
        "new,4,1,XYZ,buy,limit,gtc,100,99999999999999999999,",
        "modify,1,,,,,,100,",
        "cancel,1",
        "new,5,1,XYZ,sell,limit,gtc,100,5,,extra,fields",
    ]) + "\n"
    out = match([], stdin)
    assert out.returncode == 0, out.stderr
    assert _rows(out.stdout) == [
        "accepted,1,XYZ,buy,100,5,5,,",
        "rejected,,,,,,,,invalid_command",
        "rejected,,,,,,,,invalid_command",
        "rejected,x1,,,,,,,invalid_command",
        "rejected,2,,,,,,,invalid_price",
        "rejected,3,,,,,,,invalid_command",
        "rejected,4,,,,,,,invalid_qty",
        "rejected,1,,,,,,,invalid_qty",
        "cancelled,1,XYZ,buy,100,5,0,,user",
        "accepted,5,XYZ,sell,100,5,5,,",
    ]


def test_instruments_past_capacity_are_unknown():
    stdin = "h\nnew,1,1,A,buy,limit,gtc,1,1,\nnew,2,1,B,buy,limit,gtc,1,1,\nnew,3,1,A,sell,limit,gtc,1,1,\n"
    out = match(["--max-instruments", "1"], stdin)
    assert _rows(out.stdout) == [
        "accepted,1,A,buy,1,1,1,,",
        "rejected,2,,,,,,,unknown_instrument",
        "accepted,3,A,sell,1,1,1,,",
        "trade,3,A,sell,1,1,0,1,",
    ]
