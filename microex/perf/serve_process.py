"""`microex serve` in a subprocess for the benchmarks, and /proc readings of a process tree.

`ServeProcess` writes a config into a fresh temporary directory, starts `microex
serve --config` on a data directory there, waits until each of the given ports
accepts connections, and on `close` stops it with SIGTERM (a clean stop) and
removes the directory. `cpu_s` and `rss` read the supervisor and its children.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    except OSError:
        return [pid]


def tree_cpu_s(pid: int) -> float:
    """utime + stime of a process and its children, seconds."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, bytes."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class ServeProcess:
    def __init__(self, config: str, ports: list[int], args: list[str], prefix: str = "mx-bench-",
                 start_timeout: float = 300.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        (self.root / "serve.toml").write_text(config)
        self.log = open(self.root / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "serve", "--config",
                                      str(self.root / "serve.toml"), "--data", str(self.root / "data"), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"microex serve exited: {(self.root / 'serve.log').read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"microex serve did not open port {port}") from None
                    time.sleep(0.2)

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid)

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
