"""Orders: placement with allocation, the status lifecycle, payments and chargebacks.

Placement runs in one transaction: stock rows of every requested SKU are locked in (sku,
warehouse) order, the plan is computed from what is locked, and either every line is allocated
or nothing is written.  Events go out on the bus only after the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.commerce.catalog import StockLevel, stock_event
from engine.commerce.db import Database
from engine.commerce.domain import (
    HOLDS_ALLOCATION,
    LineRequest,
    OrderAction,
    OrderStatus,
    StockSlot,
    check_amount,
    check_country,
    check_currency,
    money,
    next_status,
    plan_allocation,
    validate_lines,
)
from engine.commerce.ids import new_id
from engine.commerce.schema import (
    Allocation,
    Channel,
    Chargeback,
    Customer,
    Merchant,
    Order,
    OrderEvent,
    OrderLine,
    Payment,
    Product,
    Stock,
    Warehouse,
    utcnow,
)
from engine.errors import (
    AlreadyExists,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidAmount,
    InvalidTransition,
    OrderNotFound,
    UnknownReference,
    UnknownSku,
    ValidationError,
)
from engine.events import (
    ChargebackFiled,
    Event,
    MessageBus,
    OrderCancelled,
    OrderLineInfo,
    OrderPlaced,
    OrderStatusChanged,
    PaymentAttempted,
)

PAYMENT_METHODS = frozenset({"card", "wallet", "bnpl"})
PAYMENT_STATUSES = frozenset({"authorized", "declined"})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    customer_id: str
    currency: str
    lines: Sequence[LineRequest]
    channel: str | None = None
    merchant_id: str | None = None
    shipping_country: str | None = None
    pickup_warehouse_id: str | None = None

    def fingerprint(self) -> str:
        body = {
            "customer_id": self.customer_id,
            "currency": self.currency,
            "lines": [[line.sku, line.qty] for line in self.lines],
            "channel": self.channel,
            "merchant_id": self.merchant_id,
            "shipping_country": self.shipping_country,
            "pickup_warehouse_id": self.pickup_warehouse_id,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CardInfo:
    fingerprint: str | None = None
    bin: str | None = None
    last4: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    method: str = "card"
    amount: Decimal | None = None
    status: str = "authorized"
    card: CardInfo = field(default_factory=CardInfo)
    device_id: str | None = None
    ip: str | None = None
    transaction_id: str | None = None  # the id scored with POST /v1/fraud/score, if any


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    replayed: bool


class Orders:
    def __init__(self, db: Database, bus: MessageBus, clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.bus = bus
        self.clock = clock

    # --- placement ---------------------------------------------------------------------------
    def place(self, req: OrderRequest, idempotency_key: str | None = None) -> Placed:
        check_currency(req.currency)
        check_country(req.shipping_country, "shipping_country")
        validate_lines(req.lines)
        digest = req.fingerprint()
        if idempotency_key:
            existing = self._by_key(idempotency_key, digest)
            if existing is not None:
                return Placed(existing, replayed=True)
        # What the order refers to is read, and its rows are built, before the writing
        # transaction, not in it: on SQLite that transaction holds the write lock every other
        # writer queues for, so it holds only what must be consistent with the write (stock
        # levels, the new rows), as Core statements.  The foreign keys still refuse a
        # reference deleted in between.
        with self.db.transaction(readonly=True) as s:
            self._check_references(s, req)
            products = self._products(s, req)
        draft = _draft(req, idempotency_key, digest, products, self.clock())
        try:
            with self.db.transaction() as s:
                plan, levels = _allocate_and_insert(s, req, draft)
        except (IntegrityError, InsufficientStock):
            # A concurrent request with the same key may have won the race (and the stock):
            # its order is the answer.
            if idempotency_key:
                existing = self._by_key(idempotency_key, digest)
                if existing is not None:
                    return Placed(existing, replayed=True)
            raise
        order = draft.order(plan)
        events: list[Event] = [order_placed(order, draft.lines(products))]
        events += [stock_event(sku, level, draft.now) for sku, level in levels]
        self.bus.publish_all(events)
        return Placed(order, replayed=False)

    def _by_key(self, key: str, digest: str) -> Order | None:
        with self.db.transaction(readonly=True) as s:
            order = s.scalars(select(Order).where(Order.idempotency_key == key)).one_or_none()
        if order is not None and order.request_hash != digest:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request",
                field="Idempotency-Key",
            )
        return order

    @staticmethod
    def _check_references(s: Session, req: OrderRequest) -> None:
        checks: list[tuple[str, Any, str | None]] = [
            ("customer_id", Customer, req.customer_id),
            ("channel", Channel, req.channel),
            ("merchant_id", Merchant, req.merchant_id),
            ("pickup_warehouse_id", Warehouse, req.pickup_warehouse_id),
        ]
        for field_name, model, value in checks:
            if value is not None and s.get(model, value) is None:
                raise UnknownReference(f"{field_name} {value!r} does not exist", field=field_name)
        if req.pickup_warehouse_id is not None:
            store = s.get(Warehouse, req.pickup_warehouse_id)
            if store is not None and not store.click_and_collect:
                raise ValidationError(
                    f"warehouse {req.pickup_warehouse_id} does not offer click-and-collect",
                    field="pickup_warehouse_id",
                    code="not_a_pickup_point",
                )

    @staticmethod
    def _products(s: Session, req: OrderRequest) -> dict[str, Product]:
        found = {
            p.sku: p
            for p in s.scalars(select(Product).where(Product.sku.in_([ln.sku for ln in req.lines])))
            if p.active
        }
        unknown = [
            {"field": f"lines[{i}].sku", "sku": ln.sku}
            for i, ln in enumerate(req.lines)
            if ln.sku not in found
        ]
        if unknown:
            raise UnknownSku(
                "unknown sku: " + ", ".join(str(u["sku"]) for u in unknown),
                field=str(unknown[0]["field"]),
                items=unknown,
            )
        wrong = [
            {"field": f"lines[{i}].sku", "sku": ln.sku, "currency": found[ln.sku].currency}
            for i, ln in enumerate(req.lines)
            if found[ln.sku].currency != req.currency
        ]
        if wrong:
            raise CurrencyMismatch(
                f"order currency {req.currency} differs from the price currency of "
                + ", ".join(str(w["sku"]) for w in wrong),
                field="currency",
                items=wrong,
            )
        return found

    # --- reads -------------------------------------------------------------------------------
    def get(self, order_id: str) -> Order:
        with self.db.transaction(readonly=True) as s:
            order = s.get(Order, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}", field="order_id")
        return order

    def channel_of(self, order_id: str) -> str | None:
        """The channel the order was placed on (one indexed read, without its lines)."""
        with self.db.transaction(readonly=True) as s:
            found = s.execute(select(Order.channel_id).where(Order.id == order_id)).first()
        if found is None:
            raise OrderNotFound(f"no order {order_id}", field="order_id")
        return found[0]

    def history(self, order_id: str) -> list[OrderEvent]:
        with self.db.transaction(readonly=True) as s:
            if s.get(Order, order_id) is None:
                raise OrderNotFound(f"no order {order_id}", field="order_id")
            return list(
                s.scalars(
                    select(OrderEvent)
                    .where(OrderEvent.order_id == order_id)
                    .order_by(OrderEvent.id)
                )
            )

    # --- lifecycle ---------------------------------------------------------------------------
    def transition(
        self,
        order_id: str,
        action: OrderAction,
        *,
        payment: PaymentRequest | None = None,
        actor: str = "api",
    ) -> Order:
        events: list[Event] = []
        with self.db.transaction() as s:
            order = self._locked(s, order_id)
            current = OrderStatus(order.status)
            target = next_status(current, action)
            now = self.clock()
            if action is OrderAction.PAY:
                pay = self._record_payment(s, order, payment or PaymentRequest(), now, events)
                if pay.status != "authorized":
                    raise ValidationError(
                        "only an authorized payment pays an order; record "
                        "declined attempts as payments",
                        field="status",
                    )
            if current in HOLDS_ALLOCATION and target in (
                OrderStatus.CANCELLED,
                OrderStatus.REFUNDED,
            ):
                self._settle_allocations(s, order, "released", now, events)
            elif action is OrderAction.FULFIL:
                self._settle_allocations(s, order, "fulfilled", now, events)
            order.status = target.value
            order.updated_at = now
            s.add(
                OrderEvent(
                    order_id=order.id,
                    type=action.value,
                    from_status=current.value,
                    to_status=target.value,
                    actor=actor,
                    created_at=now,
                )
            )
            events.insert(
                0, OrderStatusChanged(order.id, order.customer_id, current.value, target.value, now)
            )
            if target is OrderStatus.CANCELLED:
                events.insert(1, OrderCancelled(order.id, order.customer_id, now))
        self.bus.publish_all(events)
        return self.get(order_id)

    @staticmethod
    def _locked(s: Session, order_id: str) -> Order:
        order = s.scalars(select(Order).where(Order.id == order_id).with_for_update()).one_or_none()
        if order is None:
            raise OrderNotFound(f"no order {order_id}", field="order_id")
        return order

    @staticmethod
    def _settle_allocations(
        s: Session, order: Order, state: str, now: datetime, events: list[Event]
    ) -> None:
        live = sorted(
            (a for a in order.allocations if a.state == "allocated"),
            key=lambda a: (a.sku, a.warehouse_id),
        )
        for alloc in live:
            st, country = s.execute(
                select(Stock, Warehouse.country)
                .join(Warehouse, Warehouse.id == Stock.warehouse_id)
                .where(Stock.warehouse_id == alloc.warehouse_id, Stock.sku == alloc.sku)
                .with_for_update(of=Stock)
            ).one()
            st.allocated -= alloc.qty
            if state == "fulfilled":
                st.on_hand -= alloc.qty
            st.updated_at = now
            alloc.state = state
            events.append(stock_event(alloc.sku, _level(st, country), now))

    # --- payments and chargebacks ------------------------------------------------------------
    def record_payment(self, order_id: str, payment: PaymentRequest) -> Payment:
        """Record a payment attempt as the payment provider reported it (no status change)."""
        events: list[Event] = []
        with self.db.transaction() as s:
            order = self._locked(s, order_id)
            pay = self._record_payment(s, order, payment, self.clock(), events)
        self.bus.publish_all(events)
        return pay

    def _record_payment(
        self, s: Session, order: Order, req: PaymentRequest, now: datetime, events: list[Event]
    ) -> Payment:
        if req.method not in PAYMENT_METHODS:
            raise ValidationError(
                f"method must be one of {sorted(PAYMENT_METHODS)}",
                field="method",
                code="invalid_payment_method",
            )
        if req.status not in PAYMENT_STATUSES:
            raise ValidationError(
                f"status must be one of {sorted(PAYMENT_STATUSES)}", field="status"
            )
        check_country(req.card.country, "card.country")
        amount = check_amount(
            order.total if req.amount is None else req.amount, "amount", positive=True
        )
        if req.status == "authorized" and amount != order.total:
            raise InvalidAmount(
                f"amount {amount} differs from the order total {order.total}", field="amount"
            )
        pay = Payment(
            id=new_id("pay"),
            order_id=order.id,
            customer_id=order.customer_id,
            method=req.method,
            amount=money(amount),
            currency=order.currency,
            status=req.status,
            card_fingerprint=req.card.fingerprint,
            card_bin=req.card.bin,
            card_last4=req.card.last4,
            card_country=req.card.country,
            device_id=req.device_id,
            ip=req.ip,
            transaction_id=req.transaction_id,
            created_at=now,
        )
        s.add(pay)
        s.add(
            OrderEvent(
                order_id=order.id,
                type="payment_attempted",
                created_at=now,
                data={"payment_id": pay.id, "status": pay.status, "amount": str(pay.amount)},
            )
        )
        events.append(
            payment_attempted(
                pay, order.merchant_id, _email(s, order.customer_id), order.shipping_country
            )
        )
        return pay

    def payments(self, order_id: str) -> list[Payment]:
        with self.db.transaction(readonly=True) as s:
            return list(
                s.scalars(
                    select(Payment)
                    .where(Payment.order_id == order_id)
                    .order_by(Payment.created_at, Payment.id)
                )
            )

    def file_chargeback(
        self,
        order_id: str,
        *,
        amount: Decimal | None = None,
        reason: str = "fraudulent",
        filed_at: datetime | None = None,
        note: str | None = None,
    ) -> Chargeback:
        events: list[Event] = []
        with self.db.transaction() as s:
            order = self._locked(s, order_id)
            pay = s.scalars(
                select(Payment)
                .where(Payment.order_id == order_id, Payment.status == "authorized")
                .order_by(Payment.created_at.desc())
            ).first()
            if pay is None:
                raise InvalidTransition(
                    "the order has no authorized payment to dispute",
                    field="order_id",
                    code="not_paid",
                )
            if s.scalars(select(Chargeback).where(Chargeback.payment_id == pay.id)).first():
                raise AlreadyExists(f"payment {pay.id} already has a chargeback", field="order_id")
            value = check_amount(
                pay.amount if amount is None else amount,
                "amount",
                positive=True,
                at_most=pay.amount,
            )
            now = self.clock()
            filed = filed_at or now
            if filed.tzinfo is None:
                raise ValidationError("filed_at needs a timezone", field="filed_at")
            if filed < pay.created_at or filed > now + timedelta(minutes=5):
                raise ValidationError(
                    "filed_at must be between the payment and now", field="filed_at"
                )
            cb = Chargeback(
                id=new_id("cbk"),
                payment_id=pay.id,
                order_id=order.id,
                amount=money(value),
                reason=reason,
                note=note,
                filed_at=filed,
            )
            s.add(cb)
            s.add(
                OrderEvent(
                    order_id=order.id,
                    type="chargeback",
                    created_at=now,
                    data={"chargeback_id": cb.id, "amount": str(cb.amount), "reason": reason},
                )
            )
            events.append(chargeback_filed(cb, pay, order.merchant_id))
        self.bus.publish_all(events)
        return cb


# --- domain events from rows (placement and the history replay share them) -------------------
def order_placed(order: Any, lines: tuple[OrderLineInfo, ...]) -> OrderPlaced:
    """``order``: an ``Order`` or a row with the same column names."""
    return OrderPlaced(
        order_id=order.id,
        customer_id=order.customer_id,
        channel=order.channel_id,
        merchant_id=order.merchant_id,
        currency=order.currency,
        total=order.total,
        shipping_country=order.shipping_country,
        lines=lines,
        occurred_at=order.created_at,
    )


def payment_attempted(
    pay: Payment, merchant_id: str | None, email: str | None, shipping_country: str | None
) -> PaymentAttempted:
    return PaymentAttempted(
        payment_id=pay.id,
        order_id=pay.order_id,
        customer_id=pay.customer_id,
        merchant_id=merchant_id,
        method=pay.method,
        amount=pay.amount,
        currency=pay.currency,
        status=pay.status,
        card_fingerprint=pay.card_fingerprint,
        device_id=pay.device_id,
        ip=pay.ip,
        email=email,
        shipping_country=shipping_country,
        occurred_at=pay.created_at,
        transaction_id=pay.transaction_id,
    )


def chargeback_filed(cb: Chargeback, pay: Payment, merchant_id: str | None) -> ChargebackFiled:
    return ChargebackFiled(
        chargeback_id=cb.id,
        order_id=cb.order_id,
        payment_id=pay.id,
        customer_id=pay.customer_id,
        merchant_id=merchant_id,
        card_fingerprint=pay.card_fingerprint,
        amount=cb.amount,
        reason=cb.reason,
        transaction_at=pay.created_at,
        transaction_id=pay.transaction_id,
        occurred_at=cb.filed_at,
    )


def _email(s: Session, customer_id: str) -> str | None:
    customer = s.get(Customer, customer_id)
    return customer.email if customer else None


@dataclass(frozen=True)
class _Draft:
    """An order's rows, built before the writing transaction that inserts them."""

    now: datetime
    row: dict[str, Any]
    line_rows: list[dict[str, Any]]

    def order(self, plan: Sequence[Any]) -> Order:
        """The placed order (not attached to a session), as a read would return it."""
        order = Order(**self.row)
        order.lines = [OrderLine(**r) for r in self.line_rows]
        order.allocations = [
            Allocation(warehouse_id=p.warehouse_id, sku=p.sku, qty=p.qty, state="allocated")
            for p in plan
        ]
        return order

    def lines(self, products: dict[str, Product]) -> tuple[OrderLineInfo, ...]:
        return tuple(
            OrderLineInfo(r["sku"], r["qty"], r["unit_price"], products[r["sku"]].category)
            for r in self.line_rows
        )


def _draft(
    req: OrderRequest, key: str | None, digest: str, products: dict[str, Product], now: datetime
) -> _Draft:
    order_id = new_id("ord")
    line_rows = []
    total = Decimal(0)
    for no, line in enumerate(req.lines, start=1):
        price = products[line.sku].list_price
        line_total = money(price * line.qty)
        total += line_total
        line_rows.append({"order_id": order_id, "line_no": no, "sku": line.sku, "qty": line.qty,
                          "unit_price": price, "line_total": line_total})  # fmt: skip
    row = {
        "id": order_id,
        "customer_id": req.customer_id,
        "channel_id": req.channel,
        "merchant_id": req.merchant_id,
        "status": OrderStatus.PLACED.value,
        "currency": req.currency,
        "total": check_amount(total, "lines"),
        "shipping_country": req.shipping_country,
        "pickup_warehouse_id": req.pickup_warehouse_id,
        "idempotency_key": key,
        "request_hash": digest,
        "created_at": now,
        "updated_at": now,
    }
    return _Draft(now, row, line_rows)


def _allocate_and_insert(
    s: Session, req: OrderRequest, draft: _Draft
) -> tuple[list[Any], list[tuple[str, StockLevel]]]:
    """In the writing transaction: lock the stock rows of every SKU in (sku, warehouse) order,
    plan from what is locked, allocate and insert the order, or raise and write nothing.
    Returns the plan and the stock levels it left."""
    conn = s.connection()
    locked = conn.execute(_LOCK_STOCK, {"skus": sorted({ln.sku for ln in req.lines})}).all()
    plan = plan_allocation(
        req.lines,
        [StockSlot(w, sku, country, on_hand - allocated)
         for w, sku, on_hand, allocated, country in locked],
        shipping_country=req.shipping_country,
        pickup_warehouse_id=req.pickup_warehouse_id,
    )  # fmt: skip
    now, order_id = draft.now, draft.row["id"]
    conn.execute(_INSERT_ORDER, [draft.row])
    conn.execute(_INSERT_LINES, draft.line_rows)
    slots = {
        (w, sku): (on_hand, allocated, country) for w, sku, on_hand, allocated, country in locked
    }
    levels = []
    if plan:
        conn.execute(
            _ALLOCATE, [{"w": p.warehouse_id, "s": p.sku, "q": p.qty, "at": now} for p in plan]
        )
        conn.execute(
            _INSERT_ALLOCATIONS,
            [{"order_id": order_id, "warehouse_id": p.warehouse_id, "sku": p.sku, "qty": p.qty,
              "state": "allocated"} for p in plan],
        )  # fmt: skip
        for p in plan:
            on_hand, allocated, country = slots[(p.warehouse_id, p.sku)]
            allocated += p.qty
            slots[(p.warehouse_id, p.sku)] = (on_hand, allocated, country)
            levels.append((p.sku, StockLevel(p.warehouse_id, country, False, on_hand, allocated)))
    conn.execute(
        _INSERT_ORDER_EVENT,
        [{"order_id": order_id, "type": "placed", "from_status": None,
          "to_status": OrderStatus.PLACED.value, "created_at": now,
          "data": {"allocations": [[p.sku, p.warehouse_id, p.qty] for p in plan]}}],
    )  # fmt: skip
    return plan, levels


# Placement's statements, built once (Core: the ORM's unit of work cost ~2x the CPU, inside
# the write lock on SQLite)
_stock, _warehouses = cast(Table, Stock.__table__), cast(Table, Warehouse.__table__)
_LOCK_STOCK = (
    select(_stock.c.warehouse_id, _stock.c.sku, _stock.c.on_hand, _stock.c.allocated,
           _warehouses.c.country)
    .join(_warehouses, _warehouses.c.id == _stock.c.warehouse_id)
    .where(_stock.c.sku.in_(bindparam("skus", expanding=True)))
    .order_by(_stock.c.sku, _stock.c.warehouse_id)
    .with_for_update(of=_stock)
)  # fmt: skip
_ALLOCATE = (
    update(_stock)
    .where(_stock.c.warehouse_id == bindparam("w"), _stock.c.sku == bindparam("s"))
    .values(allocated=_stock.c.allocated + bindparam("q"), updated_at=bindparam("at"))
)
_INSERT_ORDER = insert(cast(Table, Order.__table__))
_INSERT_LINES = insert(cast(Table, OrderLine.__table__))
_INSERT_ALLOCATIONS = insert(cast(Table, Allocation.__table__))
_INSERT_ORDER_EVENT = insert(cast(Table, OrderEvent.__table__))


def _level(st: Stock, country: str) -> StockLevel:
    return StockLevel(st.warehouse_id, country, False, st.on_hand, st.allocated)
