"""Batch ingestion on Redis (see ``features/KEYS.md``, "Batch ingestion").

``batch_size`` events at a time on one connection: a chunk first claims its event ids
(``SET cw:seen:{id} <chunk token> NX EX``, pipelined: an id applied before, or earlier in the
batch, is a duplicate), then its new events' writes, merged per key by ``features/batch.py``, go
to the batch function in calls of at most ``max_args`` arguments, so no call holds Redis for
long.

Python plans (and packs) chunk c while Redis applies chunk c-1: one request carries chunk
c+1's claims and then chunk c's calls; the claims are answered first.

Exactly once across a dropped connection: each call carries a marker key
(``cw:applied:{token}:{j}``) that the function sets in the same atomic step as its writes, and
a call whose marker exists does nothing.  A chunk whose replies were not all read is reported
with its token (``Claimed``); replaying it (``replay_claimed``) takes the events still claimed
under that token, plans them again — the same events give the same calls and markers — and
sends every call: those that had reached Redis find their marker and skip.  Events whose claim
never arrived are applied one atomic call each.  Once a chunk is done its markers are deleted.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import hiredis
import redis

from features.batch import plan_batch
from features.definitions import FeatureEvent
from features.plan import PREFIX, SEEN_TTL, Op, seen_key

MAX_CALL_ARGS = 1_000  # ~20 events' writes: one call runs ~1-2 ms, then Redis serves others
Ingested = tuple[int, int]  # (accepted, duplicates) of one chunk
Call = tuple[object, ...]
# (token, events): chunks, in order, whose ids were (maybe) claimed under the token and whose
# writes may be missing; the events they hold are the first ones not yet counted
Claimed = list[tuple[str, int]]


def pack(commands: Sequence[Sequence[object]]) -> bytes:
    return b"".join(hiredis.pack_command(tuple(c)) for c in commands)  # type: ignore[arg-type]


def claims(events: Sequence[FeatureEvent], token: str) -> list[Call]:
    return [("SET", seen_key(e.event_id), token, "NX", "EX", SEEN_TTL) for e in events]


def new_token() -> str:
    return secrets.token_hex(6)


def marker(token: str, j: int) -> str:
    return f"{PREFIX}:applied:{token}:{j}"


def calls(function: str, ops: list[Op], max_args: int, token: str | None = None) -> list[Call]:
    """The operations, in order, as calls of ``function`` of about ``max_args`` arguments;
    with a ``token``, call j carries the marker ``cw:applied:{token}:{j}``."""
    out: list[Call] = []
    start = size = 0
    for i, op in enumerate(ops):
        size += len(op)
        if size >= max_args or i == len(ops) - 1:
            part = ops[start : i + 1]
            mark = marker(token, len(out)) if token else ""
            out.append(
                ("FCALL", function, 0, mark, len(part), *itertools.chain.from_iterable(part))
            )
            start, size = i + 1, 0
    return out


def _unlink(token: str, n: int) -> list[Call]:
    return [("UNLINK", *(marker(token, j) for j in range(n)))] if n else []


def _forget(conn: Any, token: str, n: int) -> None:
    """Delete a finished chunk's ``n`` markers (one request, its reply read)."""
    if n:
        conn.send_packed_command([pack(_unlink(token, n))], check_health=False)
        conn.read_response(disable_decoding=True)


@contextmanager
def borrowed(client: redis.Redis) -> Iterator[Any]:
    """A pooled connection for raw requests; dropped, not returned as is, when anything fails
    (its replies may be out of step with its requests)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        yield conn
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)


def ingest_batches(
    client: redis.Redis,
    function: str,
    load: Callable[[], None],
    events: Sequence[FeatureEvent],
    chunk: int,
    max_args: int,
    claimed: Claimed,
) -> Iterator[Ingested]:
    """Yields (accepted, duplicates) of each chunk once its writes are applied; ``load``
    loads the function library (after a restart lost it).  Redis errors propagate, with
    ``claimed`` (the caller's list, kept up to date) naming the chunks not counted yet whose
    claims were sent."""
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]
    if not chunks:
        return
    tokens = [new_token() for _ in chunks]
    with borrowed(client) as conn:
        claimed.append((tokens[0], len(chunks[0])))
        conn.send_packed_command([pack(claims(chunks[0], tokens[0]))], check_health=False)
        pending: tuple[list[Call], int, int, int] | None = None
        for c, part in enumerate(chunks):
            new = [conn.read_response(disable_decoding=True) is not None for _ in part]
            accepted = sum(new)
            chosen = [e for e, n in zip(part, new, strict=True) if n]
            todo = calls(function, plan_batch(chosen), max_args, tokens[c])
            request = claims(chunks[c + 1], tokens[c + 1]) if c + 1 < len(chunks) else []
            # the previous chunk's markers go once its replies are read (this request is only
            # sent after that)
            done = _unlink(tokens[c - 1], len(pending[0])) if pending else []
            # packed before waiting for the previous chunk's replies, not after: Redis, done
            # with that chunk, would wait for the packing (~3 ms a chunk) with nothing to do
            payload = pack(request + todo + done)
            if pending:
                yield _finish(conn, load, *pending)
                claimed.pop(0)
            if request:
                claimed.append((tokens[c + 1], len(chunks[c + 1])))
            conn.send_packed_command([payload], check_health=False)
            pending = (todo, accepted, len(part) - accepted, len(done))
        if pending:
            ingested = _finish(conn, load, *pending)
            _forget(conn, tokens[-1], len(pending[0]))
            claimed.pop(0)
            yield ingested


def replay_claimed(
    client: redis.Redis,
    function: str,
    load: Callable[[], None],
    events: Sequence[FeatureEvent],
    token: str,
    max_args: int,
) -> list[FeatureEvent]:
    """Finish a chunk cut off under ``token``: apply the writes of its events still claimed
    under the token, each call once (see the module's docstring); returns the events whose
    claim never reached Redis, for the caller to apply one atomic call each (the others are
    done, or were duplicates)."""
    with borrowed(client) as conn:
        keys = [seen_key(e.event_id) for e in events]
        conn.send_packed_command([pack([("MGET", *keys)])], check_health=False)
        values = conn.read_response(disable_decoding=True)
        mine = token.encode()
        ours = [e for e, v in zip(events, values, strict=True) if v == mine]
        fresh = [e for e, v in zip(events, values, strict=True) if v is None]
        todo = calls(function, plan_batch(ours), max_args, token)
        if todo:
            conn.send_packed_command([pack(todo)], check_health=False)
            _finish(conn, load, todo, 0, 0, 0)
            if not fresh:  # the chunk is done: it is never replayed again
                _forget(conn, token, len(todo))
            # else the markers stay (until MARKER_TTL): the caller may fail to write the
            # fresh events and replay this chunk again
    return fresh


def _finish(
    conn: Any,
    load: Callable[[], None],
    sent: list[Call],
    accepted: int,
    duplicates: int,
    extra: int,
) -> Ingested:
    """Read a chunk's call replies (and ``extra`` replies sent after them); calls that found
    no function (the server restarted) are sent again once the library is loaded."""
    again = []
    for call in sent:
        try:
            conn.read_response(disable_decoding=True)
        except redis.ResponseError as exc:
            if "Function not found" not in str(exc):
                raise
            again.append(call)
    for _ in range(extra):
        conn.read_response(disable_decoding=True)
    if again:
        load()
        conn.send_packed_command([pack(again)], check_health=False)
        for _ in again:
            conn.read_response(disable_decoding=True)
    return accepted, duplicates
