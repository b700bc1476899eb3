"""Exposures, written behind the request: who saw which variant, first when, how often.

A request appends an ``Exposure`` to a queue (microseconds); the write-behind thread merges a
batch by (experiment, customer) and upserts it: the first exposure inserts the row (variant,
``first_exposed_at``), later ones only add to ``exposures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.commerce.db import Database, add_on_conflict
from engine.experiments.schema import ExperimentExposure
from engine.writebehind import WriteBehind

KEYS = ["experiment_key", "customer_id"]


@dataclass(frozen=True, slots=True)
class Exposure:
    key: str
    customer_id: str
    variant: str
    at: datetime
    count: int = 1


def _row(x: Exposure) -> dict[str, Any]:
    return {
        "experiment_key": x.key,
        "customer_id": x.customer_id,
        "variant": x.variant,
        "first_exposed_at": x.at,
        "exposures": x.count,
    }


class ExposureLog(WriteBehind[Exposure]):
    def __init__(self, db: Database, *, flush_interval: float = 0.25) -> None:
        super().__init__(
            db,
            ExperimentExposure,
            KEYS,
            _row,
            name="experiment-exposures",
            flush_interval=flush_interval,
        )
        self._insert = add_on_conflict(db.dialect, ExperimentExposure, KEYS, ["exposures"])

    def _write(self, items: list[Exposure]) -> None:
        """One row per (experiment, customer) of the batch (an upsert may not touch a row
        twice in one statement), keeping the earliest exposure and adding the counts."""
        merged: dict[tuple[str, str], Exposure] = {}
        for x in items:
            seen = merged.get((x.key, x.customer_id))
            if seen is None:
                merged[(x.key, x.customer_id)] = x
            else:
                first = seen if seen.at <= x.at else x
                merged[(x.key, x.customer_id)] = Exposure(
                    x.key, x.customer_id, first.variant, first.at, seen.count + x.count
                )
        super()._write(list(merged.values()))
