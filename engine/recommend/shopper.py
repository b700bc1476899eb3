"""What recommendations know about a shopper right now (the feature store supplies it through
``ShopperPort``; ``features/shopper.py`` implements it over Redis in one round trip)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Touch:
    type: str  # view | add_to_cart | purchase | order_line
    sku: str
    ts: float


@dataclass(frozen=True)
class ShopperState:
    recent: list[Touch] = field(default_factory=list)  # newest first, one per (type, sku)
    trending: list[tuple[str, float]] = field(default_factory=list)  # the category's, best first
    trending_all: list[tuple[str, float]] = field(default_factory=list)  # the store's
    out_of_stock: frozenset[str] = frozenset()
    degraded: bool = False


class ShopperPort(Protocol):
    def state(
        self,
        *,
        customer_id: str | None,
        session_id: str | None,
        category: str | None,
        now: float,
    ) -> ShopperState: ...
