"""`microex ingest`, `replay`, `recover` as black boxes: the pipeline agrees with `match`."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "conformance"


def microex(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "microex.app.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _all_conformance(tmp_path) -> Path:
    rows = ["action,order_id,account,instrument,side,type,tif,price,qty,flags"]
    for f in sorted(DATA.glob("*.csv")):
        rows += [line for line in f.read_text().splitlines()[1:] if line.strip()]
    rows += ["new,abc,1,XYZ,buy,limit,gtc,100,1,", "cancel,007,,,,,,,,", "bogus,5,,,,,,,,"]
    path = tmp_path / "all.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("fsync", ["batch", "none", "interval:5"])
def test_ingest_replay_recover_agree_with_match(tmp_path, fsync):
    stream = _all_conformance(tmp_path)
    data = tmp_path / "data"
    ing = microex("ingest", "--data", str(data), "--input", str(stream), "--fsync", fsync, "--quiet")
    assert ing.returncode == 0, ing.stderr
    n_rows = len(stream.read_text().splitlines()) - 1
    assert ing.stdout.strip() == f"commands {n_rows}"
    events = tmp_path / "events.csv"
    rep = microex("replay", "--data", str(data), "--events-out", str(events))
    assert rep.returncode == 0, rep.stderr
    rec = microex("recover", "--data", str(data))
    assert rec.returncode == 0, rec.stderr
    assert rep.stdout.split()[:2] == ["commands", str(n_rows)]
    assert rec.stdout.strip() == rep.stdout.strip()  # same N, same digest
    expected = microex("match", "--input", str(stream)).stdout
    assert events.read_text() == expected


def test_second_ingest_appends_to_the_same_engine(tmp_path):
    stream = _all_conformance(tmp_path)
    data = tmp_path / "data"
    assert microex("ingest", "--data", str(data), "--input", str(stream), "--quiet").returncode == 0
    again = microex("ingest", "--data", str(data), "--input", str(stream), "--quiet")
    assert again.returncode == 0, again.stderr
    rec = microex("recover", "--data", str(data)).stdout.split()
    n_rows = len(stream.read_text().splitlines()) - 1
    assert rec[:2] == ["commands", str(2 * n_rows)]


def test_replay_of_a_non_data_dir_is_a_clear_error(tmp_path):
    out = microex("replay", "--data", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "not a microex data directory" in out.stderr
