"""The catalogue as recommendations need it: each SKU's category and whether it may be shown.

Loaded from SQL into memory and reloaded at most every ``refresh_s`` seconds (a product hidden in
the admin disappears from recommendations within that time); the request path never queries
SQL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from engine.commerce.db import Database
from engine.commerce.schema import Product


@dataclass(frozen=True)
class CatalogView:
    category: dict[str, str]  # sku -> category
    unavailable: frozenset[str]  # hidden or inactive SKUs

    def categories(self) -> frozenset[str]:
        return frozenset(self.category.values())


class CatalogCache:
    def __init__(self, db: Database, *, refresh_s: float = 30.0) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self._view: CatalogView | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    def view(self) -> CatalogView:
        now = time.monotonic()
        if self._view is not None and now - self._loaded < self.refresh_s:
            return self._view
        with self._lock:
            if self._view is None or now - self._loaded >= self.refresh_s:
                self._view = self._load()
                self._loaded = now
            return self._view

    def invalidate(self) -> None:
        self._loaded = 0.0

    def _load(self) -> CatalogView:
        with self.db.transaction(readonly=True) as s:
            rows = s.execute(
                select(Product.sku, Product.category, Product.active, Product.hidden)
            ).all()
        return CatalogView(
            category={sku: category for sku, category, _, _ in rows},
            unavailable=frozenset(sku for sku, _, active, hidden in rows if hidden or not active),
        )
