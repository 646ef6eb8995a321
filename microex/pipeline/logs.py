"""Structured logs: one JSON object per line, one file per process role, quiet on the hot path.

    <data dir>/logs/<role>.jsonl      e.g. supervisor, engine, gateway-0, md, http, traders

Every line has `ts` (UTC, ISO 8601 with µs), `level`, `role`, `pid`, `logger` and
`msg`, plus the context fields a call passes in `extra` (`session`, `account`,
`order_id`, `reason`, `seq`, ...). Only events are logged (start, stop, logins,
closes with their reason, snapshots, slow consumers); nothing per order or per
event, so the hot paths never format a line. One file per process means no two
writers share a file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(), "role": self.role, "pid": record.process, "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(data: str | Path, role: str, level: int = logging.INFO) -> Path:
    """Send this process's `microex` loggers to <data>/logs/<role>.jsonl; returns the path."""
    folder = Path(data) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{role}.jsonl"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter(role))
    root = logging.getLogger("microex")
    for old in list(root.handlers):
        if getattr(old, "_microex_jsonl", False):
            root.removeHandler(old)
    handler._microex_jsonl = True
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("microex").info("process started", extra={"cwd": os.getcwd()})
    return path
