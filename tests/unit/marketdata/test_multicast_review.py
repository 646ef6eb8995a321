"""Review regressions for the multicast feed's configuration."""

from __future__ import annotations

import pytest

from microex.app.serve_config import ServeConfig


def _doc(instruments: int, **serve):
    return {"serve": serve,
            "instrument": [{"symbol": f"X{k}", "base": f"A{k}", "quote": "B"} for k in range(instruments)],
            "account": [{"id": 1, "api_key": "key-number-1"}]}


@pytest.mark.parametrize("base, instruments, message", [
    # instrument 1 would go to 240.0.0.0: not a group, so the kernel sends it as unicast by the
    # default route, whatever md_multicast_ttl / md_multicast_interface say
    ("239.255.255.255:9003", 1, "not a multicast address"),
    ("239.255.255.250:9003", 6, "not a multicast address"),  # the 6th instrument: 240.0.0.0
    # 224.0.0.1 (all hosts), 224.0.0.2 (all routers)...: the local network control block
    ("224.0.0.0:9003", 2, "224.0.0.0/24"),
])
def test_every_instruments_group_is_checked_not_only_the_base(base, instruments, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig.from_dict(_doc(instruments, md_multicast=base))


def test_groups_that_fit_are_accepted():
    cfg = ServeConfig.from_dict(_doc(5, md_multicast="239.255.255.250:9003"))
    assert cfg.md_multicast == "239.255.255.250:9003"


def test_the_multicast_interface_is_checked_by_the_config():
    """A bad interface otherwise surfaces only as a crash of the market-data process at start-up."""
    with pytest.raises(ValueError, match="md_multicast_interface"):
        ServeConfig.from_dict(_doc(1, md_multicast="239.77.0.0:9003", md_multicast_interface="eth0"))
