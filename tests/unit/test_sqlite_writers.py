"""SQLite writers queue on a lock shared by threads and processes (``engine.commerce.db``):
a writing transaction waits for another process's, a read-only one never does, and the lock
comes free when its holder dies."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.commerce.db import Database, sqlite_file

HOLD_S = 0.6


def _hold_write(url: str, ready: multiprocessing.synchronize.Event, hold_s: float) -> None:
    db = Database(url)
    with db.transaction() as s:
        s.execute(text("INSERT INTO t (v) VALUES ('child')"))
        ready.set()
        time.sleep(hold_s)


def _die_holding(url: str, ready: multiprocessing.synchronize.Event) -> None:
    db = Database(url)
    with db.transaction() as s:
        s.execute(text("INSERT INTO t (v) VALUES ('dead')"))
        ready.set()
        time.sleep(60)  # killed while holding the lock


def _database(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db = Database(url)
    with db.transaction() as s:
        s.execute(text("CREATE TABLE t (v TEXT)"))
    return url, db


def test_sqlite_file_names_the_database_file_or_none() -> None:
    assert sqlite_file("sqlite:////var/x/cartwise.db") == Path("/var/x/cartwise.db")
    assert sqlite_file("sqlite:///rel/c.db?timeout=5") == Path("rel/c.db")
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("sqlite:///file:x?mode=memory&uri=true") is None
    assert sqlite_file("postgresql+psycopg://postgres@127.0.0.1/test") is None


def test_a_writer_waits_for_another_process_and_a_reader_does_not(tmp_path: Path) -> None:
    url, db = _database(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_write, args=(url, ready, HOLD_S))
    child.start()
    try:
        assert ready.wait(30)
        # the child holds the machine-wide writer lock, not only SQLite's
        fd = os.open(tmp_path / "store.db-writer.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        t = time.monotonic()
        with db.transaction(readonly=True) as s:
            before = s.execute(text("SELECT count(*) FROM t")).scalar_one()
        read_s = time.monotonic() - t
        with db.transaction() as s:
            waited_s = time.monotonic() - t
            # the child's transaction committed before this one began
            rows = [r[0] for r in s.execute(text("SELECT v FROM t"))]
            s.execute(text("INSERT INTO t (v) VALUES ('parent')"))
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert before == 0  # the child's insert was not committed yet
    assert read_s < HOLD_S / 2
    assert waited_s >= HOLD_S / 2
    assert rows == ["child"]
    db.dispose()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    _, db = _database(tmp_path)
    inside = 0
    most = 0
    guard = threading.Lock()

    def write(i: int) -> None:
        nonlocal inside, most
        for j in range(20):
            with db.transaction() as s:
                with guard:
                    inside += 1
                    most = max(most, inside)
                s.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{i}-{j}"})
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with db.transaction(readonly=True) as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 80
    assert most == 1
    db.dispose()


def test_the_lock_comes_free_when_its_holder_dies(tmp_path: Path) -> None:
    url, db = _database(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_die_holding, args=(url, ready))
    child.start()
    assert ready.wait(30)
    child.kill()
    child.join(30)
    with db.transaction() as s:  # neither the flock nor SQLite's lock outlives the process
        s.execute(text("INSERT INTO t (v) VALUES ('after')"))
    with db.transaction(readonly=True) as s:
        assert [r[0] for r in s.execute(text("SELECT v FROM t"))] == ["after"]
    db.dispose()
