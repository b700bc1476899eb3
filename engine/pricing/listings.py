"""What pricing knows of each SKU: the product's list price, cost and MAP, and its current price.

``load_listings`` reads them for a reprice (fresh, from SQL).  ``PriceBook`` keeps them in memory
for quotes and reloads only when a product or a price changed (a count and newest-update stamp,
checked at most every ``poll_s`` seconds): a quote touches no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.schema import Product
from engine.pricing.schema import SkuPrice
from engine.reloading import Reloading

DAY_S = 86_400


def cents(amount: Decimal | float | None) -> int:
    if amount is None:
        return 0
    return int((Decimal(str(amount)) * 100).to_integral_value())


def money(cents_: int) -> Decimal:
    return (Decimal(cents_) / 100).quantize(Decimal("0.01"))


def day_of(at: datetime) -> int:
    return int(at.timestamp() // DAY_S)


@dataclass(frozen=True, slots=True)
class Listing:
    sku: str
    category: str
    brand: str | None
    currency: str
    active: bool
    list_c: int
    cost_c: int
    map_c: int  # 0: no MAP
    price_c: int  # the current price (the list price until first repriced)
    rule: str | None
    strategy: str
    bounded_by: str | None
    changed_at: datetime | None  # None: never changed
    open_c: int  # the price the UTC day ``open_day`` opened with
    open_day: int | None

    def since_change_s(self, now: datetime) -> float:
        """Seconds since the price last changed (never changed: longer than any interval)."""
        return 2.0**40 if self.changed_at is None else (now - self.changed_at).total_seconds()

    def opening(self, today: int) -> int:
        """The price today opened with: the stored one if it was changed today, else the
        current price (nothing has moved it today)."""
        return self.open_c if self.open_day == today else self.price_c


def load_listings(s: Session, skus: Sequence[str] | None = None) -> list[Listing]:
    query = (
        select(
            Product.sku,
            Product.category,
            Product.brand,
            Product.currency,
            Product.active,
            Product.list_price,
            Product.cost,
            Product.map_price,
            SkuPrice.price,
            SkuPrice.rule,
            SkuPrice.strategy,
            SkuPrice.bounded_by,
            SkuPrice.changed_at,
            SkuPrice.open_price,
            SkuPrice.open_day,
        )
        .outerjoin(SkuPrice, SkuPrice.sku == Product.sku)
        .order_by(Product.sku)
    )
    if skus is not None:
        query = query.where(Product.sku.in_(list(skus)))
    out = []
    for row in s.execute(query):
        list_c = cents(row.list_price)
        price_c = list_c if row.price is None else cents(row.price)
        out.append(
            Listing(
                sku=row.sku,
                category=row.category,
                brand=row.brand,
                currency=row.currency,
                active=bool(row.active),
                list_c=list_c,
                cost_c=cents(row.cost),
                map_c=cents(row.map_price),
                price_c=price_c,
                rule=row.rule,
                strategy=row.strategy or "list",
                bounded_by=row.bounded_by,
                changed_at=row.changed_at,
                open_c=price_c if row.open_price is None else cents(row.open_price),
                open_day=row.open_day,
            )
        )
    return out


class PriceBook:
    """Every listing in memory, for quotes."""

    def __init__(self, db: Database, *, poll_s: float = 1.0) -> None:
        self._book = Reloading(db, _stamp, _load, poll_s=poll_s)

    def get(self) -> dict[str, Listing]:
        return self._book.get()

    def invalidate(self) -> None:
        self._book.invalidate()


def _stamp(s: Session) -> tuple[object, ...]:
    products = tuple(s.execute(select(func.count(), func.max(Product.updated_at))).one())
    prices = tuple(s.execute(select(func.count(), func.max(SkuPrice.updated_at))).one())
    return products + prices


def _load(s: Session, _stamp: tuple[object, ...]) -> dict[str, Listing]:
    return {listing.sku: listing for listing in load_listings(s)}
