"""Shadow outputs written behind the request, like the decision log (``engine.writebehind``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from engine.commerce.db import Database
from engine.commerce.ids import new_id
from engine.rollout.schema import ModelShadow
from engine.writebehind import WriteBehind


@dataclass(frozen=True)
class ShadowRecord:
    model: str
    request_id: str
    unit: str | None
    champion_version: str
    challenger_version: str
    champion: Mapping[str, Any]
    challenger: Mapping[str, Any]
    id: str = field(default_factory=lambda: new_id("shd"))
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _row(r: ShadowRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "model": r.model,
        "request_id": r.request_id,
        "unit": r.unit,
        "champion_version": r.champion_version,
        "challenger_version": r.challenger_version,
        "champion": dict(r.champion),
        "challenger": dict(r.challenger),
        "created_at": r.created_at,
    }


class ShadowLog(WriteBehind[ShadowRecord]):
    def __init__(self, db: Database, *, flush_interval: float = 0.2) -> None:
        super().__init__(
            db, ModelShadow, ["id"], _row, name="shadow-log", flush_interval=flush_interval
        )

    def records(
        self, model: str, *, since: datetime | None = None, limit: int = 200_000
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` records of ``model`` (since ``since``), oldest first."""
        self.flush()
        query = select(ModelShadow).where(ModelShadow.model == model)
        if since is not None:
            query = query.where(ModelShadow.created_at >= since)
        query = query.order_by(ModelShadow.created_at.desc()).limit(limit)
        with self.db.transaction(readonly=True) as s:
            rows = s.scalars(query).all()
            return [
                {
                    "request_id": r.request_id,
                    "unit": r.unit,
                    "champion_version": r.champion_version,
                    "challenger_version": r.challenger_version,
                    "champion": r.champion,
                    "challenger": r.challenger,
                    "created_at": r.created_at,
                }
                for r in reversed(rows)
            ]
