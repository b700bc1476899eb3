"""Two executors of feature plans: Redis (one Lua call per plan) and in-memory (unit tests)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from importlib import resources
from typing import Protocol

import redis

from features.plan import SEEN_TTL, STOCK_TOTAL_KEY, Op, Plan, stock_key

Result = tuple[bool, list[object]]  # (duplicate, read results)


class BackendUnavailable(Exception):
    """The store could not be reached in time."""


class Backend(Protocol):
    def run(self, plans: Sequence[Plan]) -> list[Result]: ...

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None: ...

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]: ...

    def ping(self) -> bool: ...

    def clear(self) -> int: ...

    def close(self) -> None: ...


def encode(plan: Plan) -> list[str | int | float]:
    args: list[str | int | float] = [
        plan.dedupe_key or "",
        SEEN_TTL,
        len(plan.reads),
        len(plan.writes),
    ]
    for op in plan.reads:
        if op[0] == "C":
            args += ["C", len(op) - 1, *op[1:]]
        else:
            args += list(op)
    for op in plan.writes:
        args += list(op)
    return args


def _lua(name: str) -> str:
    return (resources.files("features") / "lua" / name).read_text()


REDIS_ERRORS = (redis.RedisError, OSError)


class RedisBackend:
    """All of a plan in one EVALSHA; many plans pipelined into one round trip."""

    def __init__(self, client: redis.Redis, prefix: str = "cw:") -> None:
        self.client = client
        self.prefix = prefix
        self._plan = client.register_script(_lua("plan.lua"))
        self._stock = client.register_script(_lua("stock.lua"))

    def run(self, plans: Sequence[Plan]) -> list[Result]:
        try:
            if len(plans) == 1:
                replies = [self._plan(args=encode(plans[0]))]
            else:
                pipe = self.client.pipeline(transaction=False)
                for plan in plans:
                    self._plan(args=encode(plan), client=pipe)
                replies = pipe.execute()
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc
        return [(bool(dup), list(out)) for dup, out in replies]

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None:
        args: list[str | int] = [STOCK_TOTAL_KEY]
        for sku, warehouse, available in entries:
            args += [stock_key(sku), sku, warehouse, available]
        try:
            self._stock(args=args)
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]:
        if not skus:
            return {}
        try:
            values = self.client.hmget(STOCK_TOTAL_KEY, list(skus))
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc
        return {sku: int(v) for sku, v in zip(skus, values, strict=True) if v is not None}

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except REDIS_ERRORS:
            return False

    def close(self) -> None:
        self.client.close()

    def clear(self) -> int:
        """Delete every cartwise key (SCAN + UNLINK in batches); returns how many."""
        removed = 0
        try:
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self.client.unlink(*batch))
        except REDIS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc
        return removed


class MemoryBackend:
    """The same plan semantics over dicts (exact sets stand in for HyperLogLogs)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.seen: set[str] = set()
        self.expiry: dict[str, float] = {}

    def run(self, plans: Sequence[Plan]) -> list[Result]:
        return [self._run(plan) for plan in plans]

    def _run(self, plan: Plan) -> Result:
        out = [self._read(op) for op in plan.reads]
        dup = False
        if plan.dedupe_key:
            dup = plan.dedupe_key in self.seen
            self.seen.add(plan.dedupe_key)
        if not dup:
            skip = False
            for op in plan.writes:
                skip = self._write(op, skip)
        return dup, out

    def _read(self, op: Op) -> object:
        kind = op[0]
        if kind == "S":
            h = self.hashes.get(str(op[1]), {})
            lo, hi = int(op[3]), int(op[4])
            return sum(int(h.get(f"{op[2]}|{k}", 0)) for k in range(lo, hi + 1))
        if kind == "C":
            members: set[str] = set()
            for key in op[1:]:
                members |= self.sets.get(str(key), set())
            return len(members)
        h = self.hashes.get(str(op[1]), {})
        if kind == "L":
            return [h.get(f"l|{op[2]}"), h.get(f"t|{op[2]}")]
        return h.get(str(op[2]))

    def _write(self, op: Op, skip: bool) -> bool:
        kind, key = op[0], str(op[1])
        h = self.hashes.setdefault(key, {}) if kind != "H" else {}
        if kind == "I":
            if not skip:
                h[str(op[2])] = str(int(h.get(str(op[2]), 0)) + int(op[3]))
            return False
        if kind == "T":
            p, k, keep, kw = str(op[2]), int(op[3]), int(op[4]), int(op[5])
            last = int(h[f"_k|{p}"]) if f"_k|{p}" in h else None
            horizon = max(k, last) if last is not None else k
            if last is not None and k > last:
                for x in range(max(last - keep + 1, k - 2 * keep + 1), k - keep + 1):
                    h.pop(f"{p}|{x}", None)
            if last is None or k > last:
                h[f"_k|{p}"] = str(k)
            return kw <= horizon - keep
        if kind == "H":
            self.sets.setdefault(key, set()).add(str(op[2]))
        elif kind == "V":
            cur = h.get(f"t|{op[2]}")
            if cur is None or float(op[4]) >= float(cur):
                h[f"l|{op[2]}"], h[f"t|{op[2]}"] = str(op[3]), _fmt(op[4])
        elif kind == "M":
            cur = h.get(str(op[2]))
            if cur is None or float(op[3]) > float(cur):
                h[str(op[2])] = _fmt(op[3])
        elif kind == "E":
            self.expiry[key] = time.time() + float(op[2])
        return skip

    def set_stock(self, entries: Sequence[tuple[str, str, int]]) -> None:
        for sku, warehouse, available in entries:
            h = self.hashes.setdefault(stock_key(sku), {})
            h[warehouse] = str(available)
            self.hashes.setdefault(STOCK_TOTAL_KEY, {})[sku] = str(sum(int(v) for v in h.values()))

    def get_stock(self, skus: Sequence[str]) -> dict[str, int]:
        total = self.hashes.get(STOCK_TOTAL_KEY, {})
        return {s: int(total[s]) for s in skus if s in total}

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def clear(self) -> int:
        n = len(self.hashes) + len(self.sets) + len(self.seen)
        self.__init__()  # type: ignore[misc]
        return n


def _fmt(value: object) -> str:
    f = float(value)  # type: ignore[arg-type]
    return str(int(f)) if math.isfinite(f) and f == int(f) else repr(f)
