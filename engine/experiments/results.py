"""An experiment's results, aggregated in SQL and reported per variant against the control.

Visitors are the customers exposed to a variant.  A visitor converts with an order placed at or
after their first exposure (and, once the experiment stopped, no later than the stop) that was
really bought: paid, fulfilled, shipped or delivered.  Placed orders may still fail payment,
cancelled ones never sold, and refunded ones gave the money back, so none of them count.  Revenue
is the sum of those orders' totals (in the orders' currency: one store, one currency).

One query: a GROUP BY per visitor (orders and revenue, zero for visitors who bought nothing),
then per variant: visitors, converters, revenue and the sum of squared revenue (for the
variance of revenue per visitor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from engine.commerce.domain import BOUGHT, money
from engine.commerce.schema import Order
from engine.experiments import stats
from engine.experiments.schema import ExperimentExposure

if TYPE_CHECKING:
    from engine.experiments.service import Experiment


@dataclass(frozen=True)
class VariantRow:
    visitors: int
    converters: int
    revenue: Decimal
    revenue_sumsq: float


def per_variant(s: Session, key: str, stopped_at: datetime | None) -> dict[str, VariantRow]:
    e, o = ExperimentExposure, Order
    joined = and_(
        o.customer_id == e.customer_id,
        o.created_at >= e.first_exposed_at,
        o.status.in_(sorted(BOUGHT)),
    )
    if stopped_at is not None:
        joined = and_(joined, o.created_at <= stopped_at)
    visitor = (
        select(
            e.variant.label("variant"),
            func.count(o.id).label("orders"),
            func.coalesce(func.sum(o.total), 0).label("revenue"),
        )
        .select_from(e)
        .outerjoin(o, joined)
        .where(e.experiment_key == key)
        .group_by(e.variant, e.customer_id)
        .subquery()
    )
    revenue = cast(visitor.c.revenue, Float)
    rows = s.execute(
        select(
            visitor.c.variant,
            func.count(),
            func.sum(case((visitor.c.orders > 0, 1), else_=0)),
            func.sum(visitor.c.revenue),
            func.sum(revenue * revenue),
        ).group_by(visitor.c.variant)
    )
    return {
        str(variant): VariantRow(
            int(n), int(conv or 0), money(Decimal(str(rev or 0))), float(sq or 0)
        )
        for variant, n, conv, rev, sq in rows
    }


def report(exp: Experiment, rows: Mapping[str, VariantRow]) -> dict[str, Any]:
    empty = VariantRow(0, 0, Decimal("0.00"), 0.0)
    ctl_name = exp.control
    ctl = rows.get(ctl_name, empty)
    return {
        "key": exp.key,
        "name": exp.name,
        "status": exp.status,
        "target": {"kind": exp.target_kind, "name": exp.target},
        "started_at": exp.started_at.isoformat() if exp.started_at else None,
        "stopped_at": exp.stopped_at.isoformat() if exp.stopped_at else None,
        "control": ctl_name,
        "variants": [
            _variant(v.name, v.weight, rows.get(v.name, empty), None if v.name == ctl_name else ctl)
            for v in exp.variants
        ],
    }


def _variant(name: str, weight: float, row: VariantRow, ctl: VariantRow | None) -> dict[str, Any]:
    sample = _sample(row)
    return {
        "name": name,
        "weight": weight,
        "visitors": row.visitors,
        "converters": row.converters,
        "conversion_rate": row.converters / row.visitors if row.visitors else 0.0,
        "conversion_ci": _pair(stats.wilson(row.converters, row.visitors)),
        "revenue": float(row.revenue),
        "revenue_per_visitor": sample.mean,
        "rpv_ci": _pair(stats.mean_ci(sample)),
        "vs_control": None if ctl is None else _versus(row, ctl),
    }


def _versus(row: VariantRow, ctl: VariantRow) -> dict[str, Any] | None:
    conv = stats.proportion_lift(row.converters, row.visitors, ctl.converters, ctl.visitors)
    rpv = stats.welch_lift(_sample(row), _sample(ctl))
    if conv is None or rpv is None:
        return None  # no visitors on one side yet
    return {
        "conversion_lift": conv.value,
        "conversion_lift_ci": _pair(conv.ci),
        "conversion_p_value": conv.p_value,
        "rpv_lift": rpv.value,
        "rpv_lift_ci": _pair(rpv.ci),
        "rpv_p_value": rpv.p_value,
    }


def _sample(row: VariantRow) -> stats.Sample:
    return stats.Sample(row.visitors, float(row.revenue), row.revenue_sumsq)


def _pair(ci: Sequence[float] | None) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]
