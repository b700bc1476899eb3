"""The catalogue as recommendations need it: each SKU's category and whether it may be shown.

Kept in memory and read again from SQL only when a product changed, checked at most every
``refresh_s`` seconds (a product hidden in the admin disappears from recommendations within that
time); the request path queries SQL at most once per ``refresh_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.schema import Product
from engine.reloading import Reloading


@dataclass(frozen=True)
class CatalogView:
    category: dict[str, str]  # sku -> category
    unavailable: frozenset[str]  # hidden or inactive SKUs

    def categories(self) -> frozenset[str]:
        return frozenset(self.category.values())


class CatalogCache:
    """The catalogue snapshot, re-checked at most every ``refresh_s``: a cheap stamp (row
    count and newest update) decides whether the products are read again."""

    def __init__(self, db: Database, *, refresh_s: float = 30.0) -> None:
        self._view = Reloading(db, _stamp, _load, poll_s=refresh_s)

    def view(self) -> CatalogView:
        return self._view.get()


def _stamp(s: Session) -> tuple[int, datetime | None]:
    count, newest = s.execute(select(func.count(), func.max(Product.updated_at))).one()
    return int(count), newest


def _load(s: Session, _stamp: tuple[int, datetime | None]) -> CatalogView:
    rows = s.execute(select(Product.sku, Product.category, Product.active, Product.hidden)).all()
    return CatalogView(
        category={sku: category for sku, category, _, _ in rows},
        unavailable=frozenset(sku for sku, _, active, hidden in rows if hidden or not active),
    )
