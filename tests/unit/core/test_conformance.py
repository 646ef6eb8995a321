"""The conformance examples (tests/data/conformance) through decoder -> matcher -> encoder.

Each `NAME.csv` must give `NAME.expected` byte for byte after the header line,
ignoring trailing whitespace; for the compiled engine (with roomy and tiny
buffers, whole or row by row) and for the reference matcher alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.invariants import check_book_invariants
from microex.core.reference import ReferenceMatcher
from microex.protocol.conformance_csv import COMMAND_HEADER, EVENT_HEADER, CommandCsvDecoder, EventCsvEncoder

DATA = Path(__file__).resolve().parents[2] / "data" / "conformance"
CASES = sorted(DATA.glob("*.csv"))

CONFIGS = {
    "default": EngineConfig(),
    "tiny_buffers": EngineConfig(max_instruments=4, max_orders=64, max_levels=8, id_capacity=2, event_capacity=16),
}


def load(case: Path) -> tuple[list[str], str]:
    """(command rows without header, expected event text after its header)."""
    commands = case.read_text().split("\n")
    assert commands[0].rstrip() == COMMAND_HEADER
    expected = case.with_suffix(".expected").read_text().split("\n")
    assert expected[0].rstrip() == EVENT_HEADER
    return commands[1:], "\n".join(expected[1:])


def normalize(text: str) -> str:
    """Trailing whitespace ignored: at line ends and at the end of the text."""
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def run_csv(matcher, rows: list[str], one_by_one: bool = False) -> str:
    decoder = CommandCsvDecoder(matcher.config.max_instruments)
    encoder = EventCsvEncoder(decoder)
    chunks = [[row] for row in rows] if one_by_one else [rows]
    out: list[str] = []
    for chunk in chunks:
        out += encoder.encode(matcher.process(decoder.decode(chunk)))
    return "\n".join(out)


def test_conformance_cases_exist() -> None:
    assert len(CASES) >= 5
    for case in CASES:
        assert case.with_suffix(".expected").exists(), f"{case.name} has no .expected file"


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("one_by_one", [False, True], ids=["whole", "row_by_row"])
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_engine_conformance(case: Path, one_by_one: bool, config_name: str) -> None:
    rows, expected = load(case)
    engine = MatchingEngine(CONFIGS[config_name])
    assert normalize(run_csv(engine, rows, one_by_one)) == normalize(expected)
    check_book_invariants(engine)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_reference_conformance(case: Path) -> None:
    rows, expected = load(case)
    assert normalize(run_csv(ReferenceMatcher(), rows)) == normalize(expected)


def test_normalize_only_ignores_trailing_whitespace() -> None:
    assert normalize("a,1 \nb,2\t\n\n") == normalize("a,1\nb,2")
    assert normalize(" a,1") != normalize("a,1")
    assert normalize("a,1\n\nb") != normalize("a,1\nb")
