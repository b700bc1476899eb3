"""The ledger's rows and their deterministic, time-ordered ids (``ord_0000001``, ``pay_…``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    orders: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    allocations: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    chargebacks: list[dict[str, Any]] = field(default_factory=list)
    live: Counter[tuple[str, int]] = field(default_factory=Counter)  # (warehouse, product) units
    fraud_payments: Counter[str] = field(default_factory=Counter)
    fraud_chargebacks: Counter[str] = field(default_factory=Counter)
    withheld: Counter[str] = field(default_factory=Counter)  # label filed after the end


def assign_ids(
    led: Ledger,
    events: list[tuple[int, int, int, dict[str, Any]]],
    payments: list[tuple[int, int, dict[str, Any]]],
    chargebacks: list[tuple[int, int, dict[str, Any]]],
) -> Ledger:
    """Number orders, payments and chargebacks in time order; resolve every ``*_ref``.

    ``events`` are ``(t, order_ref, seq, row)``, ``payments`` and ``chargebacks`` are
    ``(t, ref, row)``; they land in ``led`` sorted by time, so the database's serial ids of
    ``order_events`` follow time too.
    """
    order_ids: dict[int, str] = {}
    for n, order in enumerate(
        sorted(led.orders, key=lambda o: (o["created_at"], o["order_ref"])), start=1
    ):
        order_ids[order["order_ref"]] = f"ord_{n:07d}"
    for order in led.orders:
        order["id"] = order_ids[order.pop("order_ref")]
    led.orders.sort(key=lambda o: o["id"])
    pay_ids: dict[int, str] = {}
    for n, (_, ref, row) in enumerate(sorted(payments, key=lambda p: p[:2]), start=1):
        pay_ids[ref] = f"pay_{n:07d}"
        row["id"] = pay_ids[ref]
        row["order_id"] = order_ids[row.pop("order_ref")]
        led.payments.append(row)
    cb_ids: dict[int, str] = {}
    for n, (_, ref, row) in enumerate(sorted(chargebacks, key=lambda c: c[:2]), start=1):
        cb_ids[ref] = f"cbk_{n:06d}"
        row["id"] = cb_ids[ref]
        row["payment_id"] = pay_ids[row.pop("payment_ref")]
        row["order_id"] = order_ids[row.pop("order_ref")]
        led.chargebacks.append(row)
    for _, _, _, row in sorted(events, key=lambda e: e[:3]):
        row["order_id"] = order_ids[row.pop("order_ref")]
        data = row["data"]
        if "payment_ref" in data:
            row["data"] = {"payment_id": pay_ids[data.pop("payment_ref")], **data}
        if "chargeback_ref" in data:
            row["data"] = {"chargeback_id": cb_ids[data.pop("chargeback_ref")], **data}
        led.events.append(row)
    for rows in (led.lines, led.allocations):
        for row in rows:
            row["order_id"] = order_ids[row.pop("order_ref")]
        rows.sort(key=lambda r: r["order_id"])  # stable: keeps line / allocation order
    return led
