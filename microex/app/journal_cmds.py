"""`microex replay` and `microex recover`: print `commands N digest HEX`."""

from __future__ import annotations

import sys

from microex.pipeline.datadir import DataDir
from microex.pipeline.journal import JournalError
from microex.pipeline.recovery import recover, replay


def main(args) -> int:
    data = DataDir(args.data)
    if not data.exists():
        print(f"microex {args.command}: {args.data} is not a microex data directory", file=sys.stderr)
        return 2
    try:
        if args.command == "replay":
            if args.events_out:
                with open(args.events_out, "w", encoding="utf-8") as out:
                    n, digest = replay(data, out, show_progress=True)
            else:
                n, digest = replay(data, show_progress=True)
        else:
            n, digest, _ = recover(data, show_progress=True)
    except (JournalError, ValueError) as e:  # corrupt, or pruned before the replay's start
        print(f"microex {args.command}: {e}", file=sys.stderr)
        return 1
    print(f"commands {n} digest {digest}")
    return 0
