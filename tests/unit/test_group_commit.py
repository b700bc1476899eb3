"""Group commit (engine/commerce/groupcommit.py): concurrent submissions share one write, each
caller gets its own result or its own error, and nobody waits for a timer."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence

import pytest

from engine.commerce.groupcommit import GroupCommit
from engine.errors import Unavailable


class Recorder:
    """A ``write`` that records its groups; the first call can be held until released."""

    def __init__(self, *, hold_first: bool = False, bad: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.bad = bad
        self.down = False

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.groups.append(list(items))
        self.entered.set()
        self.release.wait(10)
        if self.down:
            raise Unavailable("database away")
        if self.bad is not None and self.bad in items:
            raise ValueError(f"refused {self.bad}")
        return [f"done:{i}" for i in items]


def submit_all(gc: GroupCommit[str, str], items: list[str]) -> dict[str, object]:
    """Submit each item from its own thread; each item's result or exception."""
    out: dict[str, object] = {}

    def one(item: str) -> None:
        try:
            out[item] = gc.submit(item)
        except Exception as exc:
            out[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def start_first(gc: GroupCommit[str, str], write: Recorder) -> threading.Thread:
    """A submission that leads and is held in its write (its own outcome is not checked)."""

    def lead() -> None:
        with contextlib.suppress(Exception):
            gc.submit("first")

    thread = threading.Thread(target=lead)
    thread.start()
    assert write.entered.wait(5)
    return thread


def queued_behind_a_write(
    gc: GroupCommit[str, str], write: Recorder, items: list[str], *, down: bool = False
) -> dict[str, object]:
    """Hold a first write, queue ``items`` behind it (each from its own thread), then let the
    write go (the database ``down`` from then on, if asked); each item's outcome."""
    first = start_first(gc, write)
    results: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: results.update(submit_all(gc, items)))
    waiter.start()
    deadline = time.monotonic() + 5
    while len(gc._queue) < len(items):  # every one of them is waiting
        assert time.monotonic() < deadline
        time.sleep(0.005)
    write.down = down
    write.release.set()
    first.join(5)
    waiter.join(10)
    return results


def test_a_lone_submission_is_written_at_once() -> None:
    write = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(write, max_size=100)
    started = time.perf_counter()
    assert gc.submit("a") == "done:a"
    assert time.perf_counter() - started < 0.5  # no timer to wait out
    assert write.groups == [["a"]]


def test_submissions_queued_behind_a_write_share_the_next_one() -> None:
    write = Recorder(hold_first=True)
    gc: GroupCommit[str, str] = GroupCommit(write, max_size=100)
    later = [f"e{i}" for i in range(8)]
    results = queued_behind_a_write(gc, write, later)
    assert results == {i: f"done:{i}" for i in later}
    assert write.groups[0] == ["first"]
    assert sorted(write.groups[1]) == later  # one write for all eight
    assert (gc.groups, gc.submissions) == (2, 9)


def test_a_group_never_exceeds_its_size_but_always_takes_one() -> None:
    write = Recorder(hold_first=True)
    gc: GroupCommit[str, str] = GroupCommit(write, max_size=3, size=len)
    later = ["aa", "bb", "cccc", "d"]  # 2 + 2 > 3; "cccc" alone exceeds the size
    results = queued_behind_a_write(gc, write, later)
    assert results == {i: f"done:{i}" for i in later}
    assert all(sum(map(len, g)) <= 3 or len(g) == 1 for g in write.groups)
    assert sorted(i for g in write.groups[1:] for i in g) == sorted(later)


def test_one_bad_submission_fails_alone() -> None:
    write = Recorder(hold_first=True, bad="e3")
    gc: GroupCommit[str, str] = GroupCommit(write, max_size=100)
    later = [f"e{i}" for i in range(6)]
    results = queued_behind_a_write(gc, write, later)
    assert isinstance(results.pop("e3"), ValueError)
    assert results == {i: f"done:{i}" for i in later if i != "e3"}


def test_an_unavailable_database_fails_the_whole_group_without_retrying_each() -> None:
    write = Recorder(hold_first=True)
    gc: GroupCommit[str, str] = GroupCommit(write, max_size=100)
    later = [f"e{i}" for i in range(5)]
    results = queued_behind_a_write(gc, write, later, down=True)
    assert all(isinstance(results[i], Unavailable) for i in later)
    assert len(write.groups) == 2  # the first, then one attempt for the five
    # the lead lapsed: the next caller writes at once
    write.down = False
    assert gc.submit("after") == "done:after"


def test_many_threads_each_get_their_own_result() -> None:
    def write(items: Sequence[int]) -> list[int]:
        time.sleep(0.001)
        return [i * i for i in items]

    gc: GroupCommit[int, int] = GroupCommit(write, max_size=16)
    out: dict[int, int] = {}
    lock = threading.Lock()

    def worker(base: int) -> None:
        for i in range(base, base + 50):
            r = gc.submit(i)
            with lock:
                out[i] = r

    threads = [threading.Thread(target=worker, args=(b * 1000,)) for b in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 400 and all(v == k * k for k, v in out.items())
    assert gc.submissions == 400 and gc.groups < 400  # some writes were shared


@pytest.mark.parametrize("size", [0, -1])
def test_a_submission_larger_than_nothing_is_still_written(size: int) -> None:
    gc: GroupCommit[str, str] = GroupCommit(Recorder(), max_size=size)
    assert gc.submit("a") == "done:a"
