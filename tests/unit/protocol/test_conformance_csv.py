"""The conformance CSV codec: edge cases of SPEC.md's command format, checked end to end
(decode -> engine -> encode), and a fuzz test that arbitrary text never breaks it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.invariants import check_book_invariants
from microex.core.records import MAX_QTY_LOTS, EventKind
from microex.core.reference import ReferenceMatcher
from microex.protocol.conformance_csv import CommandCsvDecoder, EventCsvEncoder, parse_positive_int

CONFIG = EngineConfig(max_instruments=3, max_orders=64, max_levels=8, id_capacity=4, event_capacity=16)
INT64_MAX = (1 << 63) - 1
EVENT_NAMES = {"accepted", "rejected", "trade", "cancelled", "modified"}


def run_lines(lines: list[str], matcher=None) -> tuple[list[str], np.ndarray, object]:
    """(event rows, EVENT records, matcher) for command rows without a header."""
    matcher = matcher or MatchingEngine(CONFIG)
    decoder = CommandCsvDecoder(matcher.config.max_instruments)
    events = matcher.process(decoder.decode(lines))
    return EventCsvEncoder(decoder).encode(events), events, matcher


def run(text: str) -> list[str]:
    """Event rows for the command rows in `text`, the same from the engine and the reference."""
    lines = text.split("\n")
    rows, _, engine = run_lines(lines)
    check_book_invariants(engine)
    ref_rows, _, _ = run_lines(lines, ReferenceMatcher(CONFIG))
    assert rows == ref_rows
    return rows


REST = "1,XYZ,buy,limit,gtc,100,5,"  # the fields after order_id of a valid resting buy


def test_leading_zeros_are_read_and_echoed_canonically() -> None:
    assert run(f"new,007,{REST}\ncancel,0007\nnew,7,{REST}\nnew,00,{REST}") == [
        "accepted,7,XYZ,buy,100,5,5,,",
        "cancelled,7,XYZ,buy,100,5,0,,user",
        "rejected,7,,,,,,,duplicate_order_id",
        "rejected,00,,,,,,,invalid_command",  # zero, however written, is not a positive integer
    ]


@pytest.mark.parametrize(
    "order_id",
    ["abc", "-1", "", "0", "+5", " 5", "5 ", "1e3", "0x10", "5.0", "1_000", "١", "²", "٣٤", "9223372036854775808",
     "99999999999999999999999"],
)
@pytest.mark.parametrize("action", ["new", "cancel", "modify"])
def test_invalid_order_id_is_echoed_as_written(action: str, order_id: str) -> None:
    assert run(f"{action},{order_id},{REST}") == [f"rejected,{order_id},,,,,,,invalid_command"]


def test_largest_int64_is_a_valid_number_and_one_more_is_not() -> None:
    """Ids, accounts and prices go up to 2**63-1; a qty up to MAX_QTY_LOTS (2**40)."""
    big, too_big, lots = str(INT64_MAX), str(INT64_MAX + 1), str(MAX_QTY_LOTS)
    assert run(
        f"new,{big},{big},XYZ,sell,limit,gtc,{big},{lots},\n"
        f"new,1,1,XYZ,buy,limit,gtc,{big},1,\n"
        f"new,2,{too_big},XYZ,buy,limit,gtc,100,1,\n"
        f"new,3,1,XYZ,buy,limit,gtc,{too_big},1,\n"
        f"new,4,1,XYZ,buy,limit,gtc,100,{too_big},\n"
        f"modify,{big},,,,,,100,{too_big},\n"
        f"modify,{big},,,,,,100,{MAX_QTY_LOTS + 1},"
    ) == [
        f"accepted,{big},XYZ,sell,{big},{lots},{lots},,",
        "accepted,1,XYZ,buy,9223372036854775807,1,1,,",
        f"trade,1,XYZ,buy,{big},1,0,{big},",
        "rejected,2,,,,,,,invalid_command",
        "rejected,3,,,,,,,invalid_price",
        "rejected,4,,,,,,,invalid_qty",
        f"rejected,{big},,,,,,,invalid_qty",
        f"rejected,{big},,,,,,,invalid_qty",
    ]


@pytest.mark.parametrize("value", ["١٢", "²", "٣", "１２", "-3", "+3", " 3", "3 ", "3.0", "", "x"])
def test_non_ascii_or_signed_numbers_are_invalid(value: str) -> None:
    assert run(
        f"new,1,1,XYZ,buy,limit,gtc,{value},5,\n"
        f"new,2,1,XYZ,buy,limit,gtc,100,{value},\n"
        f"new,3,{value},XYZ,buy,limit,gtc,100,5,\n"
        f"new,4,1,XYZ,buy,limit,gtc,100,5,\n"
        f"modify,4,,,,,,{value},5,\n"
        f"modify,4,,,,,,100,{value},"
    ) == [
        "rejected,1,,,,,,,invalid_price",
        "rejected,2,,,,,,,invalid_qty",
        "rejected,3,,,,,,,invalid_command",
        "accepted,4,XYZ,buy,100,5,5,,",
        "rejected,4,,,,,,,invalid_price",
        "rejected,4,,,,,,,invalid_qty",
    ]


def test_trailing_cr_is_a_line_ending() -> None:
    assert run(
        "new,1,1,XYZ,buy,limit,gtc,100,5,\r\n"
        "new,2,1,XYZ,buy,limit,gtc,99,5,post_only\r\n"
        "new,3,1,XYZ,buy,limit,gtc,98,5\r\n"
        "cancel,3\r\n"
        "\r\n"
        "new,4,1,XYZ,buy,limit,gtc,97,5,stp\r\r"
    ) == [
        "accepted,1,XYZ,buy,100,5,5,,",
        "accepted,2,XYZ,buy,99,5,5,,",
        "accepted,3,XYZ,buy,98,5,5,,",
        "cancelled,3,XYZ,buy,98,5,0,,user",
        "rejected,4,,,,,,,invalid_command",  # only one CR is a line ending: 'stp\r' is no flag
    ]


def test_missing_trailing_fields_are_empty() -> None:
    assert run(
        "new,1,1,XYZ,buy,limit,gtc,100,5\n"
        "new,2,2,XYZ,sell,market,,,3\n"
        "new,3,1,XYZ,buy,limit,gtc,100\n"
        "new,4,1,XYZ,buy,limit,gtc\n"
        "new,5,1,XYZ\n"
        "new,6\n"
        "new\n"
        "cancel,1\n"
        "modify,1\n"
        "cancel\n"
        "bogus"
    ) == [
        "accepted,1,XYZ,buy,100,5,5,,",
        "accepted,2,XYZ,sell,,3,3,,",
        "trade,2,XYZ,sell,100,3,0,1,",
        "rejected,3,,,,,,,invalid_qty",
        "rejected,4,,,,,,,invalid_qty",
        "rejected,5,,,,,,,invalid_command",
        "rejected,6,,,,,,,invalid_command",
        "rejected,,,,,,,,invalid_command",
        "cancelled,1,XYZ,buy,100,2,0,,user",
        "rejected,1,,,,,,,unknown_order",
        "rejected,,,,,,,,invalid_command",
        "rejected,,,,,,,,invalid_command",
    ]


def test_extra_fields_are_ignored() -> None:
    assert run(
        "new,1,1,XYZ,buy,limit,gtc,100,5,,extra,more,,\n"
        "new,2,2,XYZ,sell,limit,gtc,100,2,stp,post_only\n"
        "modify,1,,,,,,100,4,,,\n"
        "cancel,1,1,XYZ,sell,market,fok,7,7,bogus,x"
    ) == [
        "accepted,1,XYZ,buy,100,5,5,,",
        "accepted,2,XYZ,sell,100,2,2,,",
        "trade,2,XYZ,sell,100,2,0,1,",  # flags is 'stp' (another account: it trades); 'post_only' is extra
        "modified,1,XYZ,buy,100,,4,,",
        "cancelled,1,XYZ,buy,100,4,0,,user",
    ]


@pytest.mark.parametrize(
    "row",
    [
        "NEW,1,1,XYZ,buy,limit,gtc,100,5,",
        "New,1,1,XYZ,buy,limit,gtc,100,5,",
        "new,1,1,XYZ,BUY,limit,gtc,100,5,",
        "new,1,1,XYZ,Sell,limit,gtc,100,5,",
        "new,1,1,XYZ,buy,LIMIT,gtc,100,5,",
        "new,1,1,XYZ,buy,limit,GTC,100,5,",
        "new,1,1,XYZ,buy,limit,gtc,100,5,STP",
        "new,1,1,XYZ,buy,limit,gtc,100,5,Post_Only",
        "new,1,1,XYZ,buy,limit,gtc,100,5,post-only",
        "new,1,1,XYZ,buy,limit,gtc,100,5, stp",
        "new,1,1,XYZ, buy,limit,gtc,100,5,",
        "new,1,1,XYZ,buy,limit ,gtc,100,5,",
        " new,1,1,XYZ,buy,limit,gtc,100,5,",
        "new,1,1,,buy,limit,gtc,100,5,",
        "new,1,0,XYZ,buy,limit,gtc,100,5,",
        "new,1,,XYZ,buy,limit,gtc,100,5,",
        "new,1,1,XYZ,buy,limit,ioc,100,5,post_only",
        "new,1,1,XYZ,buy,market,,,5,post_only",
    ],
)
def test_names_are_case_sensitive_and_untrimmed(row: str) -> None:
    assert run(row) == ["rejected,1,,,,,,,invalid_command"]


def test_symbols_are_case_sensitive_and_untrimmed() -> None:
    assert run("new,1,1,XYZ,buy,limit,gtc,100,5,\nnew,2,2,xyz,sell,limit,gtc,100,5,\nnew,3,2, XYZ,sell,limit,gtc,100,5,") == [
        "accepted,1,XYZ,buy,100,5,5,,",
        "accepted,2,xyz,sell,100,5,5,,",  # another instrument: no trade
        "accepted,3, XYZ,sell,100,5,5,,",
    ]


def test_first_failing_check_gives_the_reason() -> None:
    assert run(
        "new,abc,0,,hold,stop,day,0,0,bogus\n"
        "new,1,0,,hold,stop,day,0,0,bogus\n"
        "new,1,0,,buy,stop,day,0,0,bogus\n"
        "new,2,0,,buy,limit,day,0,0,bogus\n"
        "new,3,0,,buy,limit,gtc,0,0,bogus\n"
        "new,4,1,XYZ,buy,limit,gtc,0,0,bogus\n"
        "new,5,1,XYZ,buy,limit,gtc,0,5,bogus\n"
        "new,6,1,XYZ,buy,limit,gtc,100,5,bogus\n"
        "new,7,1,XYZ,buy,market,day,abc,5,\n"
        "modify,99,,,,,,0,0,\n"
        "modify,7,,,,,,0,0,\n"
        "cancel,abc\n"
        "flip,8,1,XYZ,buy,limit,gtc,100,5,"
    ) == [
        "rejected,abc,,,,,,,invalid_command",
        "rejected,1,,,,,,,invalid_command",
        "rejected,1,,,,,,,duplicate_order_id",  # duplicate comes before side/type/tif
        "rejected,2,,,,,,,invalid_command",
        "rejected,3,,,,,,,invalid_command",  # account/instrument
        "rejected,4,,,,,,,invalid_qty",  # qty before price
        "rejected,5,,,,,,,invalid_price",
        "rejected,6,,,,,,,invalid_command",  # flags
        "accepted,7,XYZ,buy,,5,5,,",  # a market order's tif and price are ignored
        "cancelled,7,XYZ,buy,,5,0,,ioc",
        "rejected,99,,,,,,,unknown_order",  # resting order before price and qty
        "rejected,7,,,,,,,unknown_order",
        "rejected,abc,,,,,,,invalid_command",
        "rejected,8,,,,,,,invalid_command",
    ]


def test_empty_lines_are_not_rows_but_blank_ones_are() -> None:
    rows, events, _ = run_lines(["", "\r", "new,1,1,XYZ,buy,limit,gtc,100,5,", "", " ", ","])
    assert rows == ["accepted,1,XYZ,buy,100,5,5,,", "rejected,,,,,,,,invalid_command", "rejected,,,,,,,,invalid_command"]
    assert sorted(set(events["seq"].tolist())) == [1, 2, 3]  # rows are numbered without the empty lines


def test_parse_positive_int() -> None:
    assert [parse_positive_int(t) for t in ["1", "007", str(INT64_MAX), str(INT64_MAX + 1), "0", "", "-1", "١", "+1"]] == [
        1, 7, INT64_MAX, 0, 0, 0, 0, 0, 0
    ]


def test_decoder_maps_symbols_in_order_of_first_use() -> None:
    decoder = CommandCsvDecoder(2)
    cmds = decoder.decode(["new,1,1,B,buy,limit,gtc,1,1,", "cancel,1,,A", "new,2,1,C,buy,limit,gtc,1,1,", "new,3,1,B"])
    assert cmds["instrument"].tolist() == [1, 2, 3, 1]  # the third symbol is past the capacity of 2
    assert decoder.symbols == {1: "B", 2: "A"}
    assert cmds["seq"].tolist() == [1, 2, 3, 4]


# ---------------------------------------------------------------------------- fuzz

TOKENS = {
    0: ["new", "cancel", "modify", "NEW", "", "x"],
    1: ["1", "2", "3", "007", "0", "-1", "abc", "", str(INT64_MAX), str(INT64_MAX + 1), "١"],
    2: ["1", "2", "0", ""],
    3: ["A", "B", "C", "D", "", "a"],
    4: ["buy", "sell", "BUY", ""],
    5: ["limit", "market", ""],
    6: ["gtc", "ioc", "fok", ""],
    7: ["100", "101", "99", "0", "", "x", str(INT64_MAX)],
    8: ["1", "5", "10", "0", "", "-1", str(INT64_MAX + 1)],  # no huge qty: level totals would overflow int64
    9: ["", "post_only", "stp", "STP", "x"],
}
NO_NEWLINE = st.characters(blacklist_characters="\n", blacklist_categories=("Cs",))
FIELD = st.one_of(st.text(NO_NEWLINE, max_size=6), st.sampled_from(["", "1", "0", ",", "\r"]))


@st.composite
def csv_lines(draw) -> str:
    """A line of arbitrary text, or a row of plausible tokens with arbitrary fields mixed in,
    cut short or with extra fields, sometimes ending in a CR."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(NO_NEWLINE | st.sampled_from(",\r"), max_size=40))
    fields = [draw(FIELD) if draw(st.integers(0, 7)) == 0 else draw(st.sampled_from(TOKENS[i])) for i in range(10)]
    fields = fields[: draw(st.integers(0, 10))] + draw(st.lists(FIELD, max_size=2))
    return ",".join(fields) + draw(st.sampled_from(["", "", "\r"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(csv_lines(), max_size=40))
def test_arbitrary_lines_never_break_the_codec(lines: list[str]) -> None:
    rows, events, engine = run_lines(lines)
    check_book_invariants(engine)
    non_empty = [line for line in lines if line not in ("", "\r")]
    kinds = events["kind"]
    shown = events[kinds != EventKind.LEVEL]
    assert len(rows) == len(shown)
    # one or more event rows per non-empty line, in line order
    assert sorted(set(shown["seq"].tolist())) == list(range(1, len(non_empty) + 1))
    assert (np.diff(events["seq"]) >= 0).all()
    for row in rows:
        fields = row.split(",")
        assert fields[0] in EVENT_NAMES and len(fields) == 9, row
    # and the reference reads and matches them the same way
    ref_rows, ref_events, _ = run_lines(lines, ReferenceMatcher(CONFIG))
    assert ref_rows == rows and ref_events.tolist() == events.tolist()
