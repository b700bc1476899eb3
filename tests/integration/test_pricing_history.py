"""Daily sales from the commerce tables (training/pricing/history.py), on SQLite and PostgreSQL.

A small hand-written shop: every expected number below can be checked by eye.  Days are
2026-03-01 … 2026-03-06 (UTC); orders sit near midnight to catch day-truncation mistakes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, make_url

from engine.commerce.db import Database
from engine.commerce.schema import Customer, Order, OrderLine, Product
from engine.errors import ValidationError
from training.pricing.elasticity import SALES_COLUMNS, fit_elasticities
from training.pricing.history import daily_sales, sales_from_file

pytestmark = pytest.mark.integration

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 3, 7, tzinfo=UTC)


def at(day: int, hh: int = 12, mm: int = 0, ss: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hh, mm, ss, tzinfo=UTC)


# sku: (category, list price, created, active)
PRODUCTS = {
    "TEE": ("apparel", "20.00", at(1, 10), True),
    "CAP": ("apparel", "12.00", at(3, 8), True),  # created mid-range, never sold
    "MUG": ("kitchen", "8.00", at(20, month=2), True),
    "OLD": ("kitchen", "5.00", at(1, month=1), False),  # inactive: rows stop at its last sale
    "NEW": ("kitchen", "9.00", at(10), True),  # created after the range
}
# order id: (created, status, [(sku, qty, unit price)])
ORDERS = {
    "o-feb": (at(28, 23, month=2), "paid", [("MUG", 9, "8.00")]),  # before SINCE
    "o1": (at(1, 9), "paid", [("TEE", 2, "20.00")]),
    "o2": (at(1, 23, 59, 30), "delivered", [("TEE", 1, "17.00")]),
    "o3": (at(2, 0, 0, 30), "cancelled", [("TEE", 5, "10.00")]),
    "o4": (at(2, 12), "placed", [("TEE", 1, "10.00")]),  # payment pending: not a sale yet
    "o5": (at(2, 13), "refunded", [("MUG", 4, "7.50"), ("OLD", 1, "5.00")]),
    "o6": (at(4, 10), "shipped", [("TEE", 1, "18.00"), ("TEE", 3, "16.00")]),
    "o-gbp": (at(5, 9), "paid", [("TEE", 2, "14.00")]),  # units count, GBP prices do not
    "o-until": (at(7, 0), "paid", [("MUG", 9, "6.00")]),  # at UNTIL: excluded
}
CURRENCY = {"o-gbp": "GBP"}


def _write_shop(db: Database) -> None:
    products = [
        {
            "sku": sku,
            "title": sku.title(),
            "category": cat,
            "cost": Decimal(price) / 2,
            "list_price": Decimal(price),
            "currency": "EUR",
            "active": active,
            "created_at": created,
            "updated_at": created,
        }
        for sku, (cat, price, created, active) in PRODUCTS.items()
    ]
    orders, lines = [], []
    for oid, (created, status, items) in ORDERS.items():
        total = sum(Decimal(p) * q for _, q, p in items)
        orders.append(
            {
                "id": oid,
                "customer_id": "cus-1",
                "status": status,
                "currency": CURRENCY.get(oid, "EUR"),
                "total": total,
                "created_at": created,
                "updated_at": created,
            }
        )
        lines += [
            {
                "order_id": oid,
                "line_no": i,
                "sku": sku,
                "qty": qty,
                "unit_price": Decimal(price),
                "line_total": Decimal(price) * qty,
            }
            for i, (sku, qty, price) in enumerate(items, start=1)
        ]
    with db.transaction() as s:
        s.execute(insert(Customer), [{"id": "cus-1", "email": "a@example.com"}])
        s.execute(insert(Product), products)
        s.execute(insert(Order), orders)
        s.execute(insert(OrderLine), lines)


def _rows(frame: pd.DataFrame, sku: str) -> list[tuple[str, int, float]]:
    part = frame[frame["sku"] == sku]
    return [
        (d.strftime("%m-%d"), int(u), round(float(p), 4))
        for d, u, p in zip(part["day"], part["units"], part["price"], strict=True)
    ]


EXPECTED_WINDOW = {
    # 03-01: 2 @ 20 + 1 @ 17 (23:59:30) -> 3 @ 19; cancelled and placed orders of 03-02 left out
    "TEE": [
        ("03-01", 3, 19.0),
        ("03-02", 0, 19.0),
        ("03-03", 0, 19.0),
        ("03-04", 4, 16.5),  # two lines of one order: (18 + 3 * 16) / 4
        ("03-05", 2, 16.5),  # sold in GBP only: the EUR price of 03-04 carries on
        ("03-06", 0, 16.5),
    ],
    "CAP": [(f"03-0{d}", 0, 12.0) for d in range(3, 7)],  # list price, from its creation day
    # the February sale is outside the window: the first day falls back to the list price
    "MUG": [("03-01", 0, 8.0), ("03-02", 4, 7.5)] + [(f"03-0{d}", 0, 7.5) for d in range(3, 7)],
    "OLD": [("03-01", 0, 5.0), ("03-02", 1, 5.0)],
}


def test_daily_sales_in_a_window(db: Database) -> None:
    _write_shop(db)
    frame = daily_sales(db, since=SINCE, until=UNTIL)
    assert list(frame.columns) == list(SALES_COLUMNS)
    assert str(frame["day"].dtype) == "datetime64[ns]"
    assert frame["units"].dtype == "int64"
    assert frame["price"].dtype == "float64"
    assert sorted(frame["sku"].unique()) == sorted(EXPECTED_WINDOW)
    for sku, expected in EXPECTED_WINDOW.items():
        assert _rows(frame, sku) == expected, sku
    assert dict(zip(frame["sku"], frame["category"], strict=True))["MUG"] == "kitchen"


def test_daily_sales_whole_history(db: Database) -> None:
    _write_shop(db)
    frame = daily_sales(db)
    # the range is the oldest order's day (02-28) to the newest's (03-07): products created
    # earlier (MUG 02-20, OLD in January) start on 02-28, when the data starts
    mug = _rows(frame, "MUG")
    assert (mug[0], mug[-1], len(mug)) == (("02-28", 9, 8.0), ("03-07", 9, 6.0), 8)
    assert [d for d, _, _ in _rows(frame, "OLD")] == ["02-28", "03-01", "03-02"]
    tee = _rows(frame, "TEE")
    assert (tee[0], tee[-1][0], sum(u for _, u, _ in tee)) == (("03-01", 3, 19.0), "03-07", 9)
    assert "NEW" not in set(frame["sku"])  # created after the newest order
    # what the estimator accepts: no error, only statuses (far too little data to fit)
    estimates = fit_elasticities(frame)
    assert {e.status for e in estimates} == {"insufficient_data"}


def test_statuses_choose_the_orders(db: Database) -> None:
    _write_shop(db)
    frame = daily_sales(db, since=SINCE, until=UNTIL, statuses={"placed", "cancelled"})
    sold = frame[frame["units"] > 0]
    assert _rows(sold, "TEE") == [("03-02", 6, 10.0)]
    assert sold["sku"].unique().tolist() == ["TEE"]


def test_days_are_utc_whatever_the_session_time_zone(db: Database) -> None:
    _write_shop(db)
    other = db
    if db.dialect == "postgresql":  # a session in UTC+13 would move the 23:59:30 order
        url = make_url(db.url)
        options = f"{url.query.get('options', '')} -c TimeZone=Pacific/Auckland".strip()
        other = Database(url.update_query_dict({"options": options}).render_as_string(False))
    try:
        frame = daily_sales(other, since=SINCE, until=UNTIL)
    finally:
        if other is not db:
            other.dispose()
    assert _rows(frame, "TEE")[:2] == [("03-01", 3, 19.0), ("03-02", 0, 19.0)]


def test_empty_database_and_naive_bounds(db: Database) -> None:
    assert daily_sales(db).empty
    assert list(daily_sales(db).columns) == list(SALES_COLUMNS)
    with pytest.raises(ValidationError) as err:
        daily_sales(db, since=datetime(2026, 3, 1))  # naive on purpose
    assert err.value.field == "since"


def test_sales_from_file_round_trip(db: Database, tmp_path: Path) -> None:
    _write_shop(db)
    frame = daily_sales(db, since=SINCE, until=UNTIL)
    frame.assign(extra=1).to_csv(tmp_path / "sales.csv", index=False)
    frame.to_parquet(tmp_path / "sales.parquet")
    for name in ("sales.csv", "sales.parquet"):
        loaded = sales_from_file(tmp_path / name)
        pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    frame.drop(columns="price").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValidationError) as err:
        sales_from_file(tmp_path / "bad.csv")
    assert err.value.field == "price"
