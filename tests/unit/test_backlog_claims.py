"""A backlog batch keeps batch ingestion's claimed chunks whole (``features/backlog.py``)."""

from __future__ import annotations

from features.backlog import Backlog, Batch


def _batch(n: int, claims: list[tuple[str, int]]) -> Batch:
    return Batch("stock", [(f"S{i}", "w", i) for i in range(n)], claims)


def test_dropping_ends_at_a_claimed_chunks_end() -> None:
    b = _batch(120, [("t1", 50), ("t2", 50)])
    assert b.drop(0) == 0 and b.claims == [("t1", 50), ("t2", 50)]
    assert b.drop(30) == 50  # into the first chunk: the whole chunk goes
    assert b.claims == [("t2", 50)] and b.items[0] == ("S50", "w", 50)
    assert b.drop(50) == 50 and b.claims == []
    assert b.drop(5) == 5 and len(b.items) == 15  # past the chunks: exactly n


def test_a_full_backlog_drops_whole_chunks_and_counts_them() -> None:
    backlog = Backlog(lambda batch: None, lambda: False, capacity=100)
    backlog.add("stock", [(f"S{i}", "w", i) for i in range(60)], [("t1", 40)])
    backlog.add("stock", [(f"T{i}", "w", i) for i in range(50)])  # 10 over: chunk t1 goes
    status = backlog.status()
    assert (status.pending, status.dropped) == (70, 40)
    backlog.close(timeout=0)
