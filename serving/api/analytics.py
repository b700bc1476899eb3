"""Routes of analytics (admin): KPIs and the view → cart → purchase funnel of a period and
channel, for the operations dashboard (definitions in docs/analytics.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from serving.api.deps import Admin, Box

router = APIRouter(prefix="/v1/analytics", dependencies=[Admin], tags=["admin"])
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        description="ISO date or datetime (UTC unless zoned), included; default: to - 30 days.",
    ),
]
To = Annotated[
    str | None,
    Query(max_length=40, description="ISO date or datetime, excluded; default: now."),
]
ChannelQ = Annotated[
    str | None, Query(min_length=1, max_length=64, description="A channel id; default: all.")
]


@router.get("/kpis")
def kpis(box: Box, start: From = None, to: To = None, channel: ChannelQ = None) -> dict[str, Any]:
    """Orders, revenue, average order value, visitors, buyers and conversion; fraud decisions,
    fraud rate and chargebacks; click-through and conversion per widget; price changes; and
    a per-day series, over ``[from, to)`` (at most 366 days)."""
    return box.analytics.kpis(start, to, channel)


@router.get("/funnel")
def funnel(box: Box, start: From = None, to: To = None, channel: ChannelQ = None) -> dict[str, Any]:
    """Visitors reaching view, add to cart and purchase (a strict funnel) over ``[from, to)``."""
    return box.analytics.funnel(start, to, channel)
