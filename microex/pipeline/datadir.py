"""The engine's data directory: what is where, and the engine's identity.

    DATA/engine.json        config, venue and id-hash multiplier of this engine:
                            replay must rebuild exactly the same state arrays
    DATA/journal/           journal segments (journal.py)
    DATA/snapshots/         snapshot-<last seq>.snap files (snapshot.py)
    DATA/edge/              what an edge needs to print events as it received
                            them: symbols.csv (instrument id -> symbol, in match
                            mode) and raw_ids.csv (seq -> order id text that was
                            not a positive integer)

engine.json is written once, atomically, when the directory is first used;
later runs read it, so a restart never changes the engine's identity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from pathlib import Path

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.venue import VenueConfig


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class DataDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.journal = self.root / "journal"
        self.snapshots = self.root / "snapshots"
        self.edge = self.root / "edge"

    @property
    def engine_file(self) -> Path:
        return self.root / "engine.json"

    def exists(self) -> bool:
        return self.engine_file.exists()

    def create(self, config: EngineConfig, venue_data: dict | None) -> None:
        """First use: fix the engine's identity (config, venue, id-hash multiplier)."""
        for d in (self.root, self.journal, self.snapshots, self.edge):
            d.mkdir(parents=True, exist_ok=True)
        if self.exists():
            return
        if not config.id_hash_multiplier:
            config = dataclasses.replace(config, id_hash_multiplier=secrets.randbits(62) | 1)
        doc = {"format": 1, "config": dataclasses.asdict(config), "venue": venue_data}
        write_atomic(self.engine_file, json.dumps(doc, indent=1).encode())

    def load(self) -> tuple[EngineConfig, VenueConfig | None, dict | None]:
        if not self.exists():
            raise FileNotFoundError(f"{self.root} is not a microex data directory (no engine.json)")
        doc = json.loads(self.engine_file.read_text())
        venue_data = doc.get("venue")
        venue = VenueConfig.from_dict(venue_data) if venue_data else None
        return EngineConfig(**doc["config"]), venue, venue_data

    def new_engine(self) -> MatchingEngine:
        config, venue, _ = self.load()
        engine = MatchingEngine(config, venue)
        engine.warm_up()
        return engine
