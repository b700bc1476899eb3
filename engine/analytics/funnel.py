"""The view → add to cart → purchase funnel, strict, over visitors (customer, else session).

A visitor reaches ``view`` with a view event in the period, ``add_to_cart`` with a view and an
add-to-cart event in the period, ``purchase`` with both of those and a purchase event or a
counted order (an order is tied to the customer; a session-only visitor reaches it through a
purchase event).  The order of the events within the period is not checked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal, select, union_all
from sqlalchemy.orm import Session

from engine.analytics.period import Period
from engine.analytics.sales import counted_orders, storefront_events, visitor_key
from engine.commerce.schema import Interaction, Order

STEPS = ("view", "add_to_cart", "purchase")


def funnel_counts(s: Session, period: Period, channel: str | None) -> list[int]:
    """Visitors reaching each of ``STEPS`` (non-increasing)."""
    touched = (
        select(visitor_key().label("visitor"), Interaction.type.label("type"))
        .where(*storefront_events(period, channel), Interaction.type.in_(STEPS))
        .subquery()
    )
    flags = [func.max(case((touched.c.type == step, 1), else_=0)).label(step) for step in STEPS]
    events = select(touched.c.visitor, *flags).group_by(touched.c.visitor)
    bought = select(
        (literal("c:") + Order.customer_id).label("visitor"),
        literal(0).label("view"),
        literal(0).label("add_to_cart"),
        literal(1).label("purchase"),
    ).where(*counted_orders(period, channel))
    both = union_all(events, bought).subquery()
    per = (
        select(*(func.max(both.c[step]).label(step) for step in STEPS))
        .group_by(both.c.visitor)
        .subquery()
    )
    view, cart, bought_ = per.c.view, per.c.add_to_cart, per.c.purchase
    row = s.execute(
        select(func.sum(view), func.sum(view * cart), func.sum(view * cart * bought_))
    ).one()
    return [int(n or 0) for n in row]


def funnel_steps(counts: list[int]) -> list[dict[str, Any]]:
    start = counts[0] if counts else 0
    out: list[dict[str, Any]] = []
    previous = start
    for step, n in zip(STEPS, counts, strict=True):
        out.append(
            {
                "step": step,
                "visitors": n,
                "rate_from_previous": n / previous if previous else 0.0,
                "rate_from_start": n / start if start else 0.0,
            }
        )
        previous = n
    return out
