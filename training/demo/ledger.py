"""Checkouts → orders, lines, allocations, the audit trail, payments and chargebacks.

Each checkout is split into one order per seller. Every order is walked through the lifecycle
of ``engine.commerce.domain`` (placed → paid → fulfilled → shipped → delivered, with
cancellations and refunds) and every step that happened before the end of history leaves the
rows the service would have written. Orders still placed or paid at the end hold their
allocations ("live"), which the caller adds to the stock's on-hand units.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

from engine.commerce.domain import (
    HOLDS_ALLOCATION,
    LineRequest,
    OrderAction,
    OrderStatus,
    PlannedAllocation,
    StockSlot,
    money,
    next_status,
    plan_allocation,
)
from engine.errors import InsufficientStock
from training.demo.behaviour import Checkout
from training.demo.catalogue import Catalogue
from training.demo.common import DAY, HOUR, Window, stage_rng
from training.demo.numbering import Ledger, assign_ids
from training.demo.warehouses import Warehouse

CANCEL_RATE = 0.03  # paid legit orders cancelled before fulfilment
REFUND_RATE = 0.04  # delivered legit orders refunded later
DISPUTE_RATE = 0.004  # delivered legit orders disputed as "product_not_received"
DC_RESTOCK = 100  # units a distribution centre can source beyond its end-of-history level
STORE_RESTOCK = 3
ACTORS = {
    OrderAction.PAY: "api",
    OrderAction.FULFIL: "warehouse",
    OrderAction.SHIP: "warehouse",
    OrderAction.DELIVER: "carrier",
    OrderAction.CANCEL: "api",
    OrderAction.REFUND: "support",
}


def chargeback_delay(rng: np.random.Generator) -> int:
    """Seconds between a fraudulent payment and its chargeback: 3 to 30 days, median ~9."""
    return int(min(3 * DAY + rng.gamma(2.0, 3.5 * DAY), 30 * DAY))


class _Builder:
    def __init__(
        self,
        seed: int,
        cat: Catalogue,
        warehouses: list[Warehouse],
        levels: dict[tuple[str, int], int],
        window: Window,
    ) -> None:
        self.rng = stage_rng(seed, "ledger")
        self.cat, self.window, self.end = cat, window, window.seconds
        self.ledger = Ledger()
        self.item_of = {sku: i for i, sku in enumerate(cat.skus)}
        self.wh_country = {w.id: w.country for w in warehouses}
        self.stores = {w.country: w.id for w in reversed(warehouses) if w.click_and_collect}
        self.slots: dict[int, list[StockSlot]] = {}
        for (wh, item), level in sorted(levels.items()):
            restock = STORE_RESTOCK if wh in self.stores.values() else DC_RESTOCK
            self.slots.setdefault(item, []).append(
                StockSlot(wh, cat.skus[item], self.wh_country[wh], level + restock)
            )
        self.pending_events: list[tuple[int, int, int, dict[str, Any]]] = []
        self.pending_payments: list[tuple[int, int, dict[str, Any]]] = []
        self.pending_cbs: list[tuple[int, int, dict[str, Any]]] = []

    def plan(
        self, lines: list[tuple[int, int]], ship: str, pickup: bool
    ) -> tuple[list[PlannedAllocation], str | None]:
        requests = [LineRequest(self.cat.skus[i], q) for i, q in lines]
        slots = [s for i, _ in lines for s in self.slots.get(i, [])]
        store = self.stores.get(ship) if pickup else None
        if store is not None:
            try:
                return plan_allocation(
                    requests, slots, shipping_country=ship, pickup_warehouse_id=store
                ), store
            except InsufficientStock:
                pass
        return plan_allocation(requests, slots, shipping_country=ship), None

    def event(
        self,
        ref: int,
        t: int,
        kind: str,
        frm: str | None,
        to: str | None,
        actor: str = "api",
        data: dict[str, Any] | None = None,
    ) -> None:
        row = {
            "order_ref": ref,
            "type": kind,
            "from_status": frm,
            "to_status": to,
            "actor": actor,
            "data": data or {},
            "created_at": self.window.at(t),
        }
        self.pending_events.append((t, ref, len(self.pending_events), row))

    def add(self, checkout: Checkout, lines: list[tuple[int, int]], ts: int) -> None:
        rng, cat, led = self.rng, self.cat, self.ledger
        try:
            plan, store = self.plan(lines, checkout.shipping_country, checkout.pickup)
        except InsufficientStock:  # pragma: no cover - the first DC carries every product
            return
        ref = len(led.orders)
        total = Decimal(0)
        for no, (item, qty) in enumerate(lines, start=1):
            unit = cat.rows[item]["list_price"]
            line_total = money(unit * qty)
            total += line_total
            led.lines.append(
                {
                    "order_ref": ref,
                    "line_no": no,
                    "sku": cat.skus[item],
                    "qty": qty,
                    "unit_price": unit,
                    "line_total": line_total,
                }
            )
        total = money(total)
        order = {
            "order_ref": ref,
            "customer_id": checkout.customer.id,
            "channel_id": checkout.channel_id,
            "merchant_id": cat.seller[lines[0][0]],
            "currency": "EUR",
            "total": total,
            "shipping_country": checkout.shipping_country,
            "pickup_warehouse_id": store,
            "idempotency_key": None,
            "request_hash": None,
            "created_at": self.window.at(ts),
        }
        led.orders.append(order)
        self.event(
            ref,
            ts,
            "placed",
            None,
            "placed",
            data={"allocations": [[p.sku, p.warehouse_id, p.qty] for p in plan]},
        )
        status, last, paid_at, pay_ref = self.pay(checkout, ref, ts, total)
        legit = checkout.pattern is None
        steps: list[tuple[OrderAction, float]] = []
        if paid_at is None:
            steps.append((OrderAction.CANCEL, ts + DAY + rng.uniform(0, 12 * HOUR)))
        elif legit and rng.random() < CANCEL_RATE:
            steps.append((OrderAction.CANCEL, paid_at + rng.uniform(0.5, 20) * HOUR))
        else:
            fulfil = paid_at + rng.uniform(2, 30) * HOUR
            ship = fulfil + rng.uniform(2, 26) * HOUR
            deliver = ship + rng.uniform(0.5 if store else 1.0, 4.0) * DAY
            steps += [
                (OrderAction.FULFIL, fulfil),
                (OrderAction.SHIP, ship),
                (OrderAction.DELIVER, deliver),
            ]
            if legit and rng.random() < REFUND_RATE:
                steps.append((OrderAction.REFUND, deliver + rng.uniform(1, 14) * DAY))
        state = "allocated"
        for action, when in steps:
            t = int(when)
            if t >= self.end:
                break
            target = next_status(status, action)
            if status in HOLDS_ALLOCATION and target in (
                OrderStatus.CANCELLED,
                OrderStatus.REFUNDED,
            ):
                state = "released"
            elif action is OrderAction.FULFIL:
                state = "fulfilled"
            self.event(ref, t, action.value, status.value, target.value, ACTORS[action])
            status, last = target, t
        for p in plan:
            led.allocations.append(
                {
                    "order_ref": ref,
                    "warehouse_id": p.warehouse_id,
                    "sku": p.sku,
                    "qty": p.qty,
                    "state": state,
                }
            )
            if state == "allocated":
                led.live[(p.warehouse_id, self.item_of[p.sku])] += p.qty
        order["status"] = status.value
        order["updated_at"] = self.window.at(last)
        if pay_ref is not None and paid_at is not None:
            self.dispute(checkout, ref, pay_ref, paid_at, total, status)

    def pay(
        self, checkout: Checkout, ref: int, ts: int, total: Decimal
    ) -> tuple[OrderStatus, int, int | None, int | None]:
        status, last = OrderStatus.PLACED, ts
        for attempt in checkout.attempts:
            t = ts + attempt.offset
            if t >= self.end:
                break
            pay_ref = len(self.pending_payments)
            card = attempt.card
            row = {
                "order_ref": ref,
                "customer_id": checkout.customer.id,
                "method": attempt.method,
                "amount": total,
                "currency": "EUR",
                "status": attempt.status,
                "card_fingerprint": card and card.fingerprint,
                "card_bin": card and card.bin,
                "card_last4": card and card.last4,
                "card_country": card and card.country,
                "device_id": attempt.device_id,
                "ip": attempt.ip,
                "created_at": self.window.at(t),
            }
            self.pending_payments.append((t, pay_ref, row))
            if checkout.pattern is not None:
                self.ledger.fraud_payments[checkout.pattern] += 1
            self.event(
                ref,
                t,
                "payment_attempted",
                None,
                None,
                data={"payment_ref": pay_ref, "status": attempt.status, "amount": str(total)},
            )
            last = t
            if attempt.status == "authorized":
                status = next_status(status, OrderAction.PAY)
                self.event(ref, t, "pay", "placed", "paid")
                return status, t, t, pay_ref
        return status, last, None, None

    def dispute(
        self,
        checkout: Checkout,
        ref: int,
        pay_ref: int,
        paid_at: int,
        amount: Decimal,
        status: OrderStatus,
    ) -> None:
        rng = self.rng
        if checkout.pattern is not None:
            reason, note, filed = "fraudulent", checkout.pattern, paid_at + chargeback_delay(rng)
            label = checkout.pattern
        elif status is OrderStatus.DELIVERED and rng.random() < DISPUTE_RATE:
            reason, note, label = "product_not_received", None, "product_not_received"
            filed = paid_at + int(rng.uniform(10, 45) * DAY)
        else:
            return
        if filed >= self.end:
            self.ledger.withheld[label] += 1
            return
        if checkout.pattern is not None:
            self.ledger.fraud_chargebacks[label] += 1
        row = {
            "payment_ref": pay_ref,
            "order_ref": ref,
            "amount": amount,
            "reason": reason,
            "note": note,
            "filed_at": self.window.at(filed),
        }
        self.pending_cbs.append((filed, len(self.pending_cbs), row))
        self.event(
            ref,
            filed,
            "chargeback",
            None,
            None,
            "psp",
            data={
                "chargeback_ref": len(self.pending_cbs) - 1,
                "amount": str(amount),
                "reason": reason,
            },
        )


def build_ledger(
    seed: int,
    checkouts: list[Checkout],
    cat: Catalogue,
    warehouses: list[Warehouse],
    levels: dict[tuple[str, int], int],
    window: Window,
) -> Ledger:
    b = _Builder(seed, cat, warehouses, levels, window)
    ordered = sorted(enumerate(checkouts), key=lambda e: (e[1].ts, e[1].customer.index, e[0]))
    for _, checkout in ordered:
        groups: dict[str | None, list[tuple[int, int]]] = {}
        for item, qty in checkout.lines:
            groups.setdefault(cat.seller[item], []).append((item, qty))
        for k, lines in enumerate(groups.values()):
            b.add(checkout, lines, checkout.ts + k)
    return assign_ids(b.ledger, b.pending_events, b.pending_payments, b.pending_cbs)
