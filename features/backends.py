"""Two executors of feature plans: Redis and in-memory (for unit tests).

Redis: a plan's reads are plain commands and its writes one call of a Redis function
(``features/lua/plan.lua``), sent together in one round trip; a few write-only plans are
pipelined.  Batch ingestion (``ingest``) claims the events' ids, then applies their writes
pre-aggregated per key with the batch function (``features/lua/batch.lua``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Protocol

import redis

from features.batch import lua_schemas
from features.connection import ping
from features.definitions import FeatureEvent
from features.pipeline import (
    MAX_CALL_ARGS,
    Claimed,
    Ingested,
    borrowed,
    ingest_batches,
    replay_claimed,
)
from features.pipeline import pack as _pack
from features.plan import (
    ITEM_ARGS,
    SEEN_TTL,
    STOCK_OUT_KEY,
    STOCK_TOTAL_KEY,
    Op,
    Plan,
    plan_event,
    stock_key,
)

Result = tuple[bool, list[object]]  # (duplicate, one reply per read command)


class BackendUnavailable(Exception):
    """The store could not be reached in time."""


class Backend(Protocol):
    def run(self, plans: Sequence[Plan]) -> list[Result]: ...

    def ingest(
        self, events: Sequence[FeatureEvent], chunk: int, claimed: Claimed | None = None
    ) -> Iterator[Ingested]: ...

    def replay_claimed(self, events: Sequence[FeatureEvent], token: str) -> list[FeatureEvent]:
        """Finish the writes of a batch-ingestion chunk cut off under ``token``; returns its
        events whose claim never reached the store (the caller applies them)."""
        ...

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None: ...

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]: ...

    def ping(self) -> bool: ...

    def clear(self) -> int: ...

    def close(self) -> None: ...


def encode_writes(plan: Plan) -> list[str | int | float]:
    """Arguments of the write function: dedupe key, its TTL, the operations."""
    args: list[str | int | float] = [plan.dedupe_key or "", SEEN_TTL, len(plan.writes)]
    for op in plan.writes:
        args += op
    return args


def _lua(name: str) -> str:
    return (resources.files("features") / "lua" / name).read_text()


# unreachable or too slow: degrade.  A ResponseError is a bug and propagates.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)


class RedisBackend:
    def __init__(self, client: redis.Redis, prefix: str = "cw:") -> None:
        self.client = client
        self.prefix = prefix
        body = _lua("plan.lua") + "\n" + lua_schemas() + _lua("batch.lua")
        digest = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()[:12]
        self.function = f"cw_apply_{digest}"
        self.batch_function = f"{self.function}_batch"
        self.max_call_args = MAX_CALL_ARGS
        self._library = (
            f"#!lua name=cartwise_{digest}\n"
            f"local FUNCTION_NAME = {json.dumps(self.function)}\n{body}"
        )
        self._loaded = False
        self._stock = client.register_script(_lua("stock.lua"))

    def _load(self) -> None:
        try:
            self.client.function_load(self._library, replace=True)
        except redis.ResponseError as exc:  # another process loaded it first
            if "already exists" not in str(exc):
                raise
        self._loaded = True

    @contextmanager
    def _reached(self, *, functions: bool = False) -> Iterator[None]:
        """Around Redis calls: a server out of reach raises ``BackendUnavailable``; with
        ``functions``, the function library is loaded first (once per process)."""
        try:
            if functions and not self._loaded:
                self._load()
            yield
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc

    def run(self, plans: Sequence[Plan]) -> list[Result]:
        # the decision's hot path: the same as ``_reached(functions=True)``, written out
        # without a generator-based context manager's microsecond
        try:
            if not self._loaded:
                self._load()
            try:
                return self._run(plans)
            except redis.ResponseError as exc:
                if "Function not found" not in str(exc):
                    raise
                self._load()  # the server restarted and lost its functions
                return self._run(plans)
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _run(self, plans: Sequence[Plan]) -> list[Result]:
        if len(plans) == 1 and plans[0].reads and _writes(plans[0]):
            return [self._decide(plans[0])]
        return self._pipeline(plans)

    def _decide(self, plan: Plan) -> Result:
        """A decision waits for its reads only.  One request carries the reads, an ``EXISTS``
        on the dedupe key and a read-only canary (is the write function loaded?); once they
        are answered the writes follow on the same connection under ``CLIENT REPLY SKIP``, so
        nobody waits for them.  Redis runs a connection's commands in order: the reads never
        see this event, and the next command on the connection sees it."""
        commands: list[Sequence[object]] = [
            *plan.reads,
            ("EXISTS", plan.dedupe_key or f"{self.prefix}-"),
            ("FCALL_RO", f"{self.function}_ok", 0),
        ]
        writes = [("CLIENT", "REPLY", "SKIP"), ("FCALL", self.function, 0, *encode_writes(plan))]
        replies = self._roundtrip(commands, len(commands), then=writes)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply  # "Function not found": run() loads the library and retries
        return replies[-2] == 1, replies[:-2]

    def _pipeline(self, plans: Sequence[Plan]) -> list[Result]:
        """Batches: every command in one request, all replies read back (one round trip).
        Packing with hiredis directly skips redis-py's per-argument Python work.

        Redis runs one connection's commands in order, so a plan's reads never see its own
        writes; other clients may interleave, which no feature depends on."""
        commands: list[Sequence[object]] = []
        for plan in plans:
            commands += plan.reads
            if _writes(plan):
                commands.append(("FCALL", self.function, 0, *encode_writes(plan)))
        replies = self._roundtrip(commands, len(commands))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        results: list[Result] = []
        i = 0
        for plan in plans:
            reads = replies[i : i + len(plan.reads)]
            i += len(plan.reads)
            duplicate = False
            if _writes(plan):
                duplicate = replies[i] == 1
                i += 1
            results.append((duplicate, list(reads)))
        return results

    def ingest(
        self, events: Sequence[FeatureEvent], chunk: int, claimed: Claimed | None = None
    ) -> Iterator[Ingested]:
        """Batch ingestion (``features/pipeline.py``): ids claimed, writes merged per key.  On
        failure ``claimed`` names the chunks cut off after their claims (``replay_claimed``)."""
        with self._reached(functions=True):
            yield from ingest_batches(
                self.client,
                self.batch_function,
                self._load,
                events,
                chunk,
                self.max_call_args,
                [] if claimed is None else claimed,
            )

    def replay_claimed(self, events: Sequence[FeatureEvent], token: str) -> list[FeatureEvent]:
        with self._reached(functions=True):
            return replay_claimed(
                self.client, self.batch_function, self._load, events, token, self.max_call_args
            )

    def _roundtrip(
        self,
        commands: Sequence[Sequence[object]],
        answers: int,
        then: Sequence[Sequence[object]] = (),
    ) -> list[Any]:
        """Send ``commands`` as one request, read ``answers`` replies; then send ``then``
        (commands that answer nothing) only if every reply was a success."""
        with borrowed(self.client) as conn:
            conn.send_packed_command([_pack(commands)], check_health=False)
            replies: list[Any] = []
            for _ in range(answers):
                try:
                    replies.append(conn.read_response(disable_decoding=True))
                except redis.ResponseError as exc:
                    replies.append(exc)
            if then and not any(isinstance(r, Exception) for r in replies):
                conn.send_packed_command([_pack(then)], check_health=False)
        return replies

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None:
        args: list[str | int] = [STOCK_TOTAL_KEY, STOCK_OUT_KEY]
        for sku, warehouse, available in entries:
            args += [stock_key(sku), sku, warehouse, available]
        with self._reached():
            self._stock(args=args)

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]:
        if not skus:
            return {}
        with self._reached():
            values = self.client.hmget(STOCK_TOTAL_KEY, list(skus))
        return {sku: int(v) for sku, v in zip(skus, values, strict=True) if v is not None}

    def ping(self) -> bool:
        return ping(self.client)

    def close(self) -> None:
        self.client.close()

    def clear(self) -> int:
        """Delete every cartwise key (SCAN + UNLINK in batches); returns how many."""
        removed = 0
        with self._reached():
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self.client.unlink(*batch))
        return removed


def _writes(plan: Plan) -> bool:
    return bool(plan.writes) or plan.dedupe_key is not None


class MemoryBackend:
    """The same plan semantics over dicts (exact sets stand in for HyperLogLogs)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.sets: dict[str, set[str]] = {}
        self.seen: set[str] = set()

    def run(self, plans: Sequence[Plan]) -> list[Result]:
        return [self._run(plan) for plan in plans]

    def replay_claimed(self, events: Sequence[FeatureEvent], token: str) -> list[FeatureEvent]:
        """This backend claims no ids ahead of their writes: none of them was applied."""
        return list(events)

    def ingest(
        self, events: Sequence[FeatureEvent], chunk: int, claimed: Claimed | None = None
    ) -> Iterator[Ingested]:
        """The per-event plans, one chunk at a time (each claims its id as it writes, so
        nothing is ever left in ``claimed``)."""
        for i in range(0, len(events), chunk):
            results = self.run(
                [plan_event(e, read=False, record=True) for e in events[i : i + chunk]]
            )
            duplicates = sum(dup for dup, _ in results)
            yield len(results) - duplicates, duplicates

    def _run(self, plan: Plan) -> Result:
        out = [self._read(op) for op in plan.reads]
        dup = False
        if plan.dedupe_key:
            dup = plan.dedupe_key in self.seen
            self.seen.add(plan.dedupe_key)
        if not dup:
            for op in plan.writes:
                self._write(op)
        return dup, out

    def _read(self, op: Op) -> object:
        command = op[0]
        if command == "ZCOUNT":
            z = self.zsets.get(str(op[1]), {})
            return sum(1 for t in z.values() if t >= float(op[2]))
        if command == "PFCOUNT":
            members: set[str] = set()
            for key in op[1:]:
                members |= self.sets.get(str(key), set())
            return len(members)
        if command == "ZREVRANGE":  # key, start, stop, WITHSCORES: RESP2's flat list
            z = self.zsets.get(str(op[1]), {})
            ranked = sorted(z.items(), key=lambda kv: (-kv[1], kv[0]))
            stop = int(op[3])
            chosen = ranked[int(op[2]) : None if stop == -1 else stop + 1]
            return [x for m, t in chosen for x in (m.encode(), _fmt(t).encode())]
        if command == "SMEMBERS":
            return {m.encode() for m in self.sets.get(str(op[1]), set())}
        h = self.hashes.get(str(op[1]), {})
        return {f.encode(): v.encode() for f, v in h.items()}

    @staticmethod
    def _add(h: dict[str, str], p: str, k: int, d: int, keep: int) -> None:
        total, last, written = 0, None, []
        if p in h:
            t, ls, x = h[p].split(";", 2)
            total, last, written = int(t), int(ls), _parse(x)
        if last is None or k > last:
            written = [(w, s) for w, s in written if w > k - keep] + [(k, total)]
            last = k
        elif k < last:
            if k <= last - keep:
                return
            start = next(s for w, s in written if w >= k)
            if all(w != k for w, _ in written):
                written.append((k, start))
            written = sorted((w, s + d if w > k else s) for w, s in written)
        x = ",".join(f"{w}:{s}" for w, s in written)
        h[p] = f"{total + d};{last};{x}"

    @staticmethod
    def _max(h: dict[str, str], p: str, k: int, v: int, keep: int) -> None:
        maxima = dict(_parse(h.get(p)))
        newest = max([k, *maxima])
        if k <= newest - keep:
            return
        maxima[k] = max(v, maxima.get(k, v))
        kept = sorted((w, m) for w, m in maxima.items() if w > newest - keep)
        h[p] = ",".join(f"{w}:{m}" for w, m in kept)

    def _write(self, op: Op) -> None:
        kind, key = op[0], str(op[1])
        if kind == "W":
            h = self.hashes.setdefault(key, {})
            for item in _items(op[4:], int(op[3])):
                self._write_item(h, item)
        elif kind == "Y":
            z = self.zsets.setdefault(key, {})
            member, ts = str(op[2]), float(op[3])
            new = member not in z
            z[member] = max(ts, z.get(member, ts))
            if new:
                cutoff = float(str(op[4]).lstrip("("))
                for m in [m for m, t in z.items() if t < cutoff]:
                    del z[m]
        elif kind == "H":
            self.sets.setdefault(key, set()).add(str(op[2]))
        elif kind == "R":
            z = self.zsets.setdefault(key, {})
            member, ts = str(op[2]), float(op[3])
            z[member] = max(ts, z.get(member, ts))
            for m in sorted(z, key=lambda m: (z[m], m))[: max(0, len(z) - int(op[4]))]:
                del z[m]
        elif kind == "Z":
            z = self.zsets.setdefault(key, {})
            z[str(op[2])] = z.get(str(op[2]), 0.0) + float(op[3])

    def _write_item(self, h: dict[str, str], item: Op) -> None:
        kind = item[0]
        if kind == "A":
            self._add(h, str(item[1]), int(item[2]), int(item[3]), int(item[4]))
        elif kind == "X":
            self._max(h, str(item[1]), int(item[2]), int(item[3]), int(item[4]))
        elif kind == "I":
            h[str(item[1])] = str(int(h.get(str(item[1]), 0)) + int(item[2]))
        elif kind == "V":
            cur = h.get(f"t|{item[1]}")
            if cur is None or float(item[3]) >= float(cur):
                h[f"l|{item[1]}"], h[f"t|{item[1]}"] = str(item[2]), _fmt(item[3])
        elif kind == "M":
            cur = h.get(str(item[1]))
            if cur is None or float(item[2]) > float(cur):
                h[str(item[1])] = _fmt(item[2])

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None:
        for sku, warehouse, available in entries:
            h = self.hashes.setdefault(stock_key(sku), {})
            h[warehouse] = str(available)
            total = sum(int(v) for v in h.values())
            self.hashes.setdefault(STOCK_TOTAL_KEY, {})[sku] = str(total)
            out = self.sets.setdefault(STOCK_OUT_KEY, set())
            if total > 0:
                out.discard(sku)
            else:
                out.add(sku)

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]:
        total = self.hashes.get(STOCK_TOTAL_KEY, {})
        return {s: int(total[s]) for s in skus if s in total}

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def clear(self) -> int:
        n = len(self.hashes) + len(self.zsets) + len(self.sets) + len(self.seen)
        self.__init__()  # type: ignore[misc]
        return n


def _items(args: Sequence[str | int | float], n: int) -> list[Op]:
    """Split a block's flat arguments into its n items."""
    out: list[Op] = []
    i = 0
    for _ in range(n):
        width = 1 + ITEM_ARGS[str(args[i])]
        out.append(tuple(args[i : i + width]))
        i += width
    return out


def _parse(x: str | None) -> list[tuple[int, int]]:
    if not x:
        return []
    return [(int(w), int(s)) for w, s in (part.split(":") for part in x.split(","))]


def _fmt(value: object) -> str:
    f = float(value)  # type: ignore[arg-type]
    return str(int(f)) if math.isfinite(f) and f == int(f) else repr(f)
