"""Batch ingestion on Redis (see ``features/KEYS.md``, "Batch ingestion").

``batch_size`` events at a time on one connection: a chunk first claims its event ids
(``SET cw:seen:{id} 1 NX EX``, pipelined: an id applied before, or earlier in the batch, is a
duplicate), then its new events' writes, merged per key by ``features/batch.py``, go to the batch
function in calls of at most ``max_args`` arguments, so no call holds Redis for long.

Python plans (and packs) chunk c while Redis applies chunk c-1: one request carries chunk
c+1's claims and then chunk c's calls; the claims are answered first.  If the connection drops
after a chunk's claims, its events stay claimed without (all of) their writes: like a decision's
writes lost on a drop, a rebuild from the database restores them.  (The store's backlog replays
events one atomic call each, never through this path: ``features/store.py``.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hiredis
import redis

from features.batch import plan_batch
from features.definitions import FeatureEvent
from features.plan import SEEN_TTL, Op, seen_key

MAX_CALL_ARGS = 1_000  # ~20 events' writes: one call runs ~1-2 ms, then Redis serves others
Ingested = tuple[int, int]  # (accepted, duplicates) of one chunk
Call = tuple[object, ...]


def pack(commands: Sequence[Sequence[object]]) -> bytes:
    return b"".join(hiredis.pack_command(tuple(c)) for c in commands)  # type: ignore[arg-type]


def claims(events: Sequence[FeatureEvent]) -> list[Call]:
    return [("SET", seen_key(e.event_id), 1, "NX", "EX", SEEN_TTL) for e in events]


def calls(function: str, ops: list[Op], max_args: int) -> list[Call]:
    """The operations, in order, as calls of ``function`` of about ``max_args`` arguments."""
    out: list[Call] = []
    start = size = 0
    for i, op in enumerate(ops):
        size += len(op)
        if size >= max_args or i == len(ops) - 1:
            part = ops[start : i + 1]
            out.append(("FCALL", function, 0, len(part), *itertools.chain.from_iterable(part)))
            start, size = i + 1, 0
    return out


def ingest_batches(
    client: redis.Redis,
    function: str,
    load: Callable[[], None],
    events: Sequence[FeatureEvent],
    chunk: int,
    max_args: int,
) -> Iterator[Ingested]:
    """Yields (accepted, duplicates) of each chunk once its writes are applied; ``load``
    loads the function library (after a restart lost it).  Redis errors propagate."""
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]
    if not chunks:
        return
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([pack(claims(chunks[0]))], check_health=False)  # type: ignore[no-untyped-call]
        pending: tuple[list[Call], int, int] | None = None
        for c, part in enumerate(chunks):
            new = [conn.read_response(disable_decoding=True) is not None for _ in part]
            accepted = sum(new)
            todo = calls(
                function, plan_batch([e for e, n in zip(part, new, strict=True) if n]), max_args
            )
            request = claims(chunks[c + 1]) if c + 1 < len(chunks) else []
            # packed before waiting for the previous chunk's replies, not after: Redis, done
            # with that chunk, would wait for the packing (~3 ms a chunk) with nothing to do
            payload = pack(request + todo)
            if pending:
                yield _finish(conn, load, *pending)
            conn.send_packed_command([payload], check_health=False)  # type: ignore[no-untyped-call]
            pending = (todo, accepted, len(part) - accepted)
        if pending:
            yield _finish(conn, load, *pending)
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)


def _finish(
    conn: Any, load: Callable[[], None], sent: list[Call], accepted: int, duplicates: int
) -> Ingested:
    """Read a chunk's call replies; calls that found no function (the server restarted) are
    sent again once the library is loaded."""
    again = []
    for call in sent:
        try:
            conn.read_response(disable_decoding=True)
        except redis.ResponseError as exc:
            if "Function not found" not in str(exc):
                raise
            again.append(call)
    if again:
        load()
        conn.send_packed_command([pack(again)], check_health=False)
        for _ in again:
            conn.read_response(disable_decoding=True)
    return accepted, duplicates
