"""Fitted price elasticities as pricing reads them: stored per fit, resolved per SKU.

``training/pricing/elasticity.py`` fits them from order history; each fit is kept (a data
scientist compares fits), and pricing uses the newest.  A SKU takes its own estimate when that
is usable, else its category's; an estimate is usable when the fit succeeded, its standard
error is small enough, and it is elastic (e < -1: otherwise profit has no interior maximum and
the strategy has nothing to say).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.commerce.db import Database
from engine.commerce.ids import new_id
from engine.pricing.schema import ElasticityEstimateRow, ElasticityFit
from engine.reloading import Reloading


@dataclass(frozen=True)
class Estimate:
    """One fitted elasticity; NaN numbers unless ``status == "ok"``.

    ``n_obs`` is the number of rows fitted (zero-unit SKUs excluded), ``price_variation`` the
    std of log price (for a category: of log price minus its SKU's mean, the variation the
    fixed effects leave), ``fit_quality`` the share of the within-SKU deviance (around each
    SKU's mean) that price and calendar explain: day-to-day Poisson noise keeps it small.
    """

    level: str  # category | sku
    key: str
    category: str
    elasticity: float
    std_err: float
    ci_low: float
    ci_high: float
    n_obs: int
    units: int
    price_variation: float
    fit_quality: float
    status: str
    message: str = ""

    def usable(self, max_std_err: float = 0.5) -> bool:
        return (
            self.status == "ok"
            and math.isfinite(self.elasticity)
            and math.isfinite(self.std_err)
            and self.std_err <= max_std_err
            and self.elasticity < -1.0
        )

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


@dataclass(frozen=True)
class Fit:
    id: str | None
    created_at: datetime | None
    estimates: tuple[Estimate, ...]

    def resolve(
        self, skus: Sequence[str], categories: Sequence[str | None], max_std_err: float
    ) -> list[float]:
        """Each SKU's elasticity: its own usable estimate, else its category's, else NaN."""
        own = {
            e.key: e.elasticity
            for e in self.estimates
            if e.level == "sku" and e.usable(max_std_err)
        }
        by_cat = {
            e.key: e.elasticity
            for e in self.estimates
            if e.level == "category" and e.usable(max_std_err)
        }
        return [
            own.get(sku, by_cat.get(cat or "", math.nan))
            for sku, cat in zip(skus, categories, strict=True)
        ]


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _store(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Elasticities:
    def __init__(self, db: Database, *, poll_s: float = 30.0) -> None:
        self.db = db
        self.pinned: str | None = None  # the registry's champion fit, when there is one
        self._latest = Reloading(db, self._stamp, _load, poll_s=poll_s)

    def latest(self) -> Fit:
        """The fit the elasticity rule uses: the pinned one (the model registry's champion),
        else the newest."""
        return self._latest.get()

    def pin(self, fit_id: str | None) -> None:
        """Use ``fit_id`` (None: the newest fit again) from the next request on."""
        if fit_id != self.pinned:
            self.pinned = fit_id
            self._latest.invalidate()

    def _stamp(self, s: Any) -> str | None:
        if self.pinned is not None and s.get(ElasticityFit, self.pinned) is not None:
            return self.pinned
        return _stamp(s)

    def save(
        self,
        estimates: Sequence[Estimate],
        *,
        source: str,
        settings: Mapping[str, Any],
        history_from: datetime | None,
        history_to: datetime | None,
        rows: int,
    ) -> str:
        fit_id = new_id("fit")
        with self.db.transaction() as s:
            s.add(
                ElasticityFit(
                    id=fit_id,
                    source=source[:300],
                    settings=dict(settings),
                    history_from=history_from,
                    history_to=history_to,
                    rows=rows,
                )
            )
            s.flush()
            s.add_all(ElasticityEstimateRow(fit_id=fit_id, **_row(e)) for e in estimates)
        self._latest.invalidate()
        return fit_id

    def fits(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as s:
            rows = s.scalars(
                select(ElasticityFit).order_by(ElasticityFit.created_at.desc()).limit(limit)
            ).all()
            return [
                {
                    "id": r.id,
                    "created_at": r.created_at,
                    "source": r.source,
                    "settings": r.settings,
                    "history_from": r.history_from,
                    "history_to": r.history_to,
                    "rows": r.rows,
                }
                for r in rows
            ]


def _stamp(s: Any) -> str | None:
    newest: str | None = s.scalar(
        select(ElasticityFit.id).order_by(ElasticityFit.created_at.desc(), ElasticityFit.id.desc())
    )
    return newest


def _load(s: Any, fit_id: str | None) -> Fit:
    if fit_id is None:
        return Fit(None, None, ())
    fit = s.get(ElasticityFit, fit_id)
    rows = s.scalars(
        select(ElasticityEstimateRow)
        .where(ElasticityEstimateRow.fit_id == fit_id)
        .order_by(ElasticityEstimateRow.id)
    ).all()
    return Fit(fit_id, fit.created_at if fit else None, tuple(_estimate(r) for r in rows))


_FLOATS = ("elasticity", "std_err", "ci_low", "ci_high", "price_variation", "fit_quality")
_FIELDS = tuple(f.name for f in fields(Estimate))


def _row(e: Estimate) -> dict[str, Any]:
    """An estimate as a table row: NaN as NULL (not every database keeps NaN)."""
    out = {name: getattr(e, name) for name in _FIELDS}
    for name in _FLOATS:
        out[name] = _store(out[name])
    out["message"] = e.message[:2000]
    return out


def _estimate(r: ElasticityEstimateRow) -> Estimate:
    values = {name: getattr(r, name) for name in _FIELDS}
    for name in _FLOATS:
        values[name] = _num(values[name])
    return Estimate(**values)
