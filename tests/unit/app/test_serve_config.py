"""microex serve configuration: the example file, the demo venue, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microex.app.serve_config import DEMO_ACCOUNTS, ServeConfig, demo_config

EXAMPLE = Path(__file__).parents[3] / "examples" / "serve.toml"


def test_the_example_config_loads_with_its_edge_keys_kept_out_of_the_engine():
    cfg = ServeConfig.load(EXAMPLE)
    assert cfg.bin_port == 9001 and cfg.fsync == "batch" and cfg.gateways == 1
    assert cfg.key_map() == {b"market-maker-key-0001": 1, b"trader-key-0002": 2, b"trader-key-0003": 3}
    assert cfg.ref_prices == {"BTCUSDT": 6_000_000, "ETHUSDT": 300_000}
    assert cfg.decimals["USDT"] == 6
    # the engine's part has none of the edge keys (engine.json and replay see only these)
    for inst in cfg.venue_data["instrument"]:
        assert "ref_price" not in inst
    for acc in cfg.venue_data["account"]:
        assert not {"api_key", "secret", "deposit"} & set(acc)
    assets = cfg.venue.asset_ids()
    assert (1, assets["BTC"], 10_000_000_000) in cfg.deposit_triples()
    assert (3, assets["BTC"], 500_000_000) in cfg.deposit_triples()


def test_demo_keys_are_written_once_and_reused(tmp_path):
    first = demo_config(str(tmp_path))
    assert first.demo and len(first.api_keys) == DEMO_ACCOUNTS
    doc = json.loads((tmp_path / "demo-keys.json").read_text())
    assert [d["account"] for d in doc] == list(range(1, DEMO_ACCOUNTS + 1))
    assert {"account", "api_key", "secret"} == set(doc[0])
    again = demo_config(str(tmp_path))
    assert again.key_map() == first.key_map()
    assert sorted(first.venue.instrument_ids()) == ["BTCUSDT", "ETHBTC", "ETHUSDT"]
    assert len(first.deposits) == 3 * DEMO_ACCOUNTS


def _doc(**serve):
    return {"serve": serve, "instrument": [{"symbol": "X", "base": "A", "quote": "B"}],
            "account": [{"id": 1, "api_key": "key-number-1", "deposit": {"A": 5}}]}


@pytest.mark.parametrize("change, message", [
    (lambda d: d["serve"].update(prot=1), "unknown \\[serve\\] keys"),
    (lambda d: d["account"][0]["deposit"].update(C=1), "unknown asset 'C'"),
    (lambda d: d["account"][0]["deposit"].update(A=-1), "positive integer"),
    (lambda d: d["account"][0].update(api_key="short"), "8..32 bytes"),
    (lambda d: d["account"].append({"id": 2, "api_key": "key-number-1"}), "unique"),
    (lambda d: d["instrument"][0].update(ref_price=0), "positive integer"),
    (lambda d: d["instrument"][0].update(tick=0), "tick must be an integer"),
    (lambda d: d["serve"].update(gateways=17), "gateways must be 1..16"),
    (lambda d: d["serve"].update(md_multicast="10.1.2.0:9003"), "not a multicast address"),
    (lambda d: d["serve"].update(md_multicast="239.77.0.0"), "GROUP:PORT"),
    (lambda d: d["serve"].update(md_multicast="239.77.0.0:9003", md_port=0), "md_multicast needs"),
    (lambda d: d["serve"].update(md_multicast="239.77.0.0:9003", md_multicast_ttl=300), "0..255"),
    (lambda d: d["serve"].update(http_weight_per_minute=0), "http_weight_per_minute must be a positive"),
    (lambda d: d["serve"].update(http_orders_per_10s="x"), "http_orders_per_10s must be a positive"),
])
def test_config_errors_name_the_field(change, message):
    doc = _doc()
    change(doc)
    with pytest.raises(ValueError, match=message):
        ServeConfig.from_dict(doc)


def test_flags_override_serve_keys():
    cfg = ServeConfig.from_dict(_doc(bin_port=7000)).override(bin_port=None, gateways=3, fsync="none")
    assert (cfg.bin_port, cfg.gateways, cfg.fsync) == (7000, 3, "none")
