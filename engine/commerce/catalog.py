"""Customers, channels, merchants, products, warehouses and stock."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.commerce.db import Database, insert_ignore
from engine.commerce.domain import check_amount, check_country, check_currency, money
from engine.commerce.ids import new_id
from engine.commerce.schema import (
    Channel,
    Customer,
    Merchant,
    Order,
    Product,
    Stock,
    Warehouse,
    utcnow,
)
from engine.errors import (
    AlreadyExists,
    Conflict,
    CustomerNotFound,
    InvalidQuantity,
    ProductNotFound,
    UnknownSku,
    ValidationError,
    WarehouseNotFound,
)
from engine.events import Event, MessageBus, StockChanged

Clock = Callable[[], datetime]
MAX_STOREFRONT_SKUS = 100
Row = TypeVar("Row", Channel, Merchant, Warehouse)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StockLevel:
    warehouse_id: str
    country: str
    click_and_collect: bool
    on_hand: int
    allocated: int

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


@dataclass(frozen=True, slots=True)
class ProductPage:
    items: list[Product]
    next_cursor: str | None


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        if key:
            return key.decode()
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValidationError("cursor is not one this API returned", field="cursor")


class Catalog:
    """The non-order half of the commerce core."""

    def __init__(self, db: Database, bus: MessageBus, clock: Clock = utcnow) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock

    # --- customers ---------------------------------------------------------------------------
    def create_customer(
        self,
        *,
        email: str,
        id: str | None = None,
        name: str | None = None,
        country: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Customer:
        check_country(country, "country")
        customer = Customer(
            id=id or new_id("cus"),
            email=email,
            name=name,
            country=country,
            attributes=attributes or {},
            created_at=self.clock(),
        )
        return self._add_unique(customer, customer.id, "id")

    def get_customer(self, customer_id: str) -> Customer:
        with self.db.transaction(readonly=True) as s:
            customer = s.get(Customer, customer_id)
        if customer is None:
            raise CustomerNotFound(f"no customer {customer_id}", field="customer_id")
        return customer

    # --- channels and merchants --------------------------------------------------------------
    def create_channel(
        self, *, id: str, name: str, currency: str, country: str | None = None
    ) -> Channel:
        check_currency(currency)
        check_country(country, "country")
        return self._insert_new(Channel(id=id, name=name, currency=currency, country=country))

    def create_merchant(self, *, id: str, name: str, country: str | None = None) -> Merchant:
        check_country(country, "country")
        return self._insert_new(Merchant(id=id, name=name, country=country))

    def create_warehouse(
        self, *, id: str, name: str, country: str, click_and_collect: bool = False
    ) -> Warehouse:
        check_country(country, "country")
        return self._insert_new(
            Warehouse(id=id, name=name, country=country, click_and_collect=click_and_collect)
        )

    def list_channels(self) -> list[Channel]:
        return self._all(Channel)

    def list_merchants(self) -> list[Merchant]:
        return self._all(Merchant)

    def list_warehouses(self) -> list[Warehouse]:
        return self._all(Warehouse)

    def _all(self, model: Any) -> list[Any]:
        with self.db.transaction(readonly=True) as s:
            return list(s.scalars(select(model).order_by(model.id)))

    def _insert_new(self, row: Row) -> Row:
        row.created_at = self.clock()
        return self._add_unique(row, row.id, "id")

    def _add_unique(self, row: T, key: str, field: str) -> T:
        """Insert a row whose key must be new; a concurrent insert of the same key loses with
        ``already_exists`` too (the primary key decides), never a driver error."""
        what = f"{type(row).__name__.lower()} {key} already exists"
        try:
            with self.db.transaction() as s:
                if s.get(type(row), key) is not None:
                    raise AlreadyExists(what, field=field)
                s.add(row)
        except IntegrityError as exc:
            raise AlreadyExists(what, field=field) from exc
        return row

    # --- products ----------------------------------------------------------------------------
    def create_product(
        self,
        *,
        sku: str,
        title: str,
        category: str,
        list_price: Decimal,
        currency: str,
        cost: Decimal = Decimal(0),
        brand: str | None = None,
        map_price: Decimal | None = None,
        attributes: dict[str, Any] | None = None,
        active: bool = True,
        hidden: bool = False,
    ) -> Product:
        check_currency(currency)
        list_price = check_amount(list_price, "list_price")
        cost = check_amount(cost, "cost")
        map_price = None if map_price is None else check_amount(map_price, "map_price")
        now = self.clock()
        product = Product(
            sku=sku,
            title=title,
            category=category,
            brand=brand,
            attributes=attributes or {},
            cost=money(cost),
            list_price=money(list_price),
            map_price=None if map_price is None else money(map_price),
            currency=currency,
            active=active,
            hidden=hidden,
            created_at=now,
            updated_at=now,
        )
        return self._add_unique(product, sku, "sku")

    def get_product(self, sku: str) -> Product:
        with self.db.transaction(readonly=True) as s:
            product = s.get(Product, sku)
        if product is None:
            raise ProductNotFound(f"no product {sku}", field="sku")
        return product

    def storefront_products(self, skus: list[str]) -> list[Product]:
        """The active, visible products among ``skus``, in the order given (duplicates once);
        an unknown, inactive or hidden SKU is a 422 naming it."""
        wanted = list(dict.fromkeys(skus))
        if not 1 <= len(wanted) <= MAX_STOREFRONT_SKUS:
            raise ValidationError(
                f"name 1 to {MAX_STOREFRONT_SKUS} skus", field="skus", code="invalid_skus"
            )
        with self.db.transaction(readonly=True) as s:
            found = {
                p.sku: p
                for p in s.scalars(
                    select(Product).where(
                        Product.sku.in_(wanted), Product.active.is_(True), Product.hidden.is_(False)
                    )
                )
            }
        missing = [sku for sku in wanted if sku not in found]
        if missing:
            raise UnknownSku(f"unknown or unavailable sku: {', '.join(missing[:5])}", field="skus")
        return [found[sku] for sku in wanted]

    def categories(self) -> list[tuple[str, int]]:
        """Categories of active, visible products with their product counts, largest first."""
        stmt = (
            select(Product.category, func.count())
            .where(Product.active.is_(True), Product.hidden.is_(False))
            .group_by(Product.category)
            .order_by(func.count().desc(), Product.category)
        )
        with self.db.transaction(readonly=True) as s:
            return [(c, int(n)) for c, n in s.execute(stmt)]

    def customer_ids(self) -> list[str]:
        """Every customer's id, oldest customer first."""
        stmt = select(Customer.id).order_by(Customer.created_at, Customer.id)
        with self.db.transaction(readonly=True) as s:
            return list(s.scalars(stmt))

    def frequent_customers(self, limit: int = 8) -> list[tuple[Customer, int]]:
        """The customers with the most orders (then the newest customers)."""
        orders = func.count(Order.id)
        stmt = (
            select(Customer, orders)
            .outerjoin(Order, Order.customer_id == Customer.id)
            .group_by(Customer.id)
            .order_by(orders.desc(), Customer.created_at.desc(), Customer.id)
            .limit(limit)
        )
        with self.db.transaction(readonly=True) as s:
            return [(c, int(n)) for c, n in s.execute(stmt)]

    def list_products(
        self, *, category: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> ProductPage:
        if not 1 <= limit <= 500:
            raise ValidationError("limit must be between 1 and 500", field="limit")
        stmt = select(Product).where(Product.active.is_(True), Product.hidden.is_(False))
        if category:
            stmt = stmt.where(Product.category == category)
        if cursor:
            stmt = stmt.where(Product.sku > decode_cursor(cursor))
        stmt = stmt.order_by(Product.sku).limit(limit + 1)
        with self.db.transaction(readonly=True) as s:
            rows = list(s.scalars(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        return ProductPage(rows, encode_cursor(rows[-1].sku) if more and rows else None)

    # --- stock -------------------------------------------------------------------------------
    def set_stock(self, warehouse_id: str, sku: str, on_hand: int) -> StockLevel:
        """Set the counted on-hand units; refuses to go below what is already allocated."""
        if on_hand < 0:
            raise InvalidQuantity("on_hand must be zero or more", field="on_hand")
        with self.db.transaction() as s:
            warehouse = s.get(Warehouse, warehouse_id)
            if warehouse is None:
                raise WarehouseNotFound(f"no warehouse {warehouse_id}", field="warehouse_id")
            if s.get(Product, sku) is None:
                raise ProductNotFound(f"no product {sku}", field="sku")
            # the first count of a slot may race another: create it if absent, then lock it
            s.execute(
                insert_ignore(
                    self.db.dialect,
                    Stock,
                    [
                        {
                            "warehouse_id": warehouse_id,
                            "sku": sku,
                            "on_hand": 0,
                            "allocated": 0,
                            "updated_at": self.clock(),
                        }
                    ],
                    ["warehouse_id", "sku"],
                )
            )
            row = s.scalars(
                select(Stock)
                .where(Stock.warehouse_id == warehouse_id, Stock.sku == sku)
                .with_for_update()
            ).one()
            if on_hand < row.allocated:
                raise Conflict(
                    f"{row.allocated} units of {sku} are allocated at {warehouse_id}; "
                    f"on_hand cannot go below that",
                    field="on_hand",
                    code="stock_below_allocated",
                )
            row.on_hand = on_hand
            row.updated_at = self.clock()
            level = StockLevel(
                warehouse_id,
                warehouse.country,
                warehouse.click_and_collect,
                row.on_hand,
                row.allocated or 0,
            )
        self.bus.publish(stock_event(sku, level, self.clock()))
        return level

    def stock_levels(self, sku: str) -> list[StockLevel]:
        with self.db.transaction(readonly=True) as s:
            if s.get(Product, sku) is None:
                raise ProductNotFound(f"no product {sku}", field="sku")
            return stock_levels(s, sku)


def stock_levels(s: Session, sku: str) -> list[StockLevel]:
    rows = s.execute(
        select(Stock, Warehouse)
        .join(Warehouse, Warehouse.id == Stock.warehouse_id)
        .where(Stock.sku == sku)
        .order_by(Stock.warehouse_id)
    ).all()
    return [
        StockLevel(w.id, w.country, w.click_and_collect, st.on_hand, st.allocated) for st, w in rows
    ]


def stock_event(sku: str, level: StockLevel, at: datetime) -> Event:
    return StockChanged(
        sku=sku,
        warehouse_id=level.warehouse_id,
        on_hand=level.on_hand,
        allocated=level.allocated,
        occurred_at=at,
    )
