"""Daily sales per SKU, the input of ``fit_elasticities``, from the commerce DB or a file.

Columns (also the import format of ``sales_from_file``):

=========  ===========================================================================
sku        product SKU (str)
category   the product's category (str); one per SKU
day        UTC calendar day (datetime64, midnight), one row per SKU per day on sale
units      units sold that day (int >= 0); days on sale without a sale are rows with 0
price      units-weighted mean unit price that day (float > 0), in the product's currency:
           lines of orders in another currency count as units but not in the price; on a
           day without such a price the last one, carried forward, else the list price
=========  ===========================================================================

Zero-sale days matter: they are most of a slow mover's history, and leaving them out would
make demand look flat in price.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Date, case, cast, func, select

from engine.commerce.db import Database
from engine.commerce.domain import OrderStatus
from engine.commerce.schema import Order, OrderLine, Product
from engine.errors import ValidationError
from training.pricing.elasticity import SALES_COLUMNS, prepare_sales

# Orders that were paid for: a shopper accepted the price.  Placed orders may still fail
# payment, cancelled ones never sold; a refund is a return after the purchase decision, so it
# still counts as demand at that price.
SALE_STATUSES: frozenset[str] = frozenset(
    s.value
    for s in (
        OrderStatus.PAID,
        OrderStatus.FULFILLED,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.REFUNDED,
    )
)


def _utc_day(dialect: str, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, in SQL (so rows are aggregated there)."""
    if dialect == "sqlite":  # naive UTC text 'YYYY-MM-DD HH:MM:SS…'
        return func.date(column)
    if dialect == "postgresql":  # timestamptz: independent of the session's time zone
        return cast(func.timezone("UTC", column), Date)
    raise ValidationError(f"unsupported database dialect {dialect!r}", field="database_url")


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationError(f"{name} must be timezone-aware (UTC)", field=name)
    return value


def daily_sales(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    statuses: Collection[str] = SALE_STATUSES,
) -> pd.DataFrame:
    """Daily sales of orders created in [``since``, ``until``) with one of ``statuses``.

    The range runs from ``since`` (default: the oldest order's day: no earlier day has data)
    to the day before ``until`` (default: the newest order's day).  Each SKU gets a row for
    every day of the range from its creation (or first sale, if earlier); inactive products
    stop at their last sale, since when they went off sale is not recorded.  No order in the
    range at all: an empty frame.  Pass midnights: a partial first or last day looks slow.
    """
    since, until = _aware(since, "since"), _aware(until, "until")
    day = _utc_day(db.dialect, Order.created_at).label("day")
    window = []
    if since is not None:
        window.append(Order.created_at >= since)
    if until is not None:
        window.append(Order.created_at < until)
    # prices only from lines in the product's own currency (no conversion); units from all
    home = Order.currency == Product.currency
    sold = (
        select(
            OrderLine.sku,
            day,
            func.sum(OrderLine.qty).label("units"),
            func.sum(case((home, OrderLine.qty), else_=0)).label("priced_units"),
            func.sum(case((home, OrderLine.qty * OrderLine.unit_price), else_=0)).label("revenue"),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .join(Product, Product.sku == OrderLine.sku)
        .where(Order.status.in_(sorted(statuses)), *window)
        .group_by(OrderLine.sku, day)
    )
    products = select(
        Product.sku, Product.category, Product.list_price, Product.active, Product.created_at
    )
    extent = select(func.min(Order.created_at), func.max(Order.created_at)).where(*window)
    with db.transaction(readonly=True) as s:
        sales = pd.DataFrame(s.execute(sold).all(), columns=list(sold.selected_columns.keys()))
        catalog = pd.DataFrame(
            s.execute(products).all(), columns=list(products.selected_columns.keys())
        )
        oldest, newest = s.execute(extent).one()
    if newest is None:
        return _empty()
    first = _utc_naive(since if since is not None else oldest)
    last = _utc_naive(newest) if until is None else _utc_naive(until) - pd.Timedelta(1, "us")
    return _fill(sales, catalog, first.normalize(), last.normalize())


def _utc_naive(value: datetime) -> pd.Timestamp:
    return pd.Timestamp(value).tz_convert("UTC").tz_localize(None)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": pd.Series(dtype=object),
            "category": pd.Series(dtype=object),
            "day": pd.Series(dtype="datetime64[ns]"),
            "units": pd.Series(dtype=np.int64),
            "price": pd.Series(dtype=np.float64),
        }
    )


def _fill(
    sales: pd.DataFrame, catalog: pd.DataFrame, start: pd.Timestamp, last: pd.Timestamp
) -> pd.DataFrame:
    """Add the zero-sale days and their carried-forward prices."""
    sales["day"] = pd.to_datetime(sales["day"])
    sales["units"] = sales["units"].astype(np.int64)
    priced = sales["priced_units"].astype(np.float64)
    sales["price"] = (sales["revenue"].astype(np.float64) / priced).where(priced > 0)
    sold = sales.groupby("sku")["day"].agg(["min", "max"])
    catalog = catalog.set_index("sku").join(sold, how="left")
    created = pd.to_datetime(catalog["created_at"], utc=True).dt.tz_localize(None).dt.normalize()
    first = pd.concat([created, catalog["min"]], axis=1).min(axis=1).clip(lower=start)
    stop = pd.Series(last, index=catalog.index).where(
        catalog["active"].astype(bool), catalog["max"]
    )
    spans = pd.DataFrame({"first": first, "stop": stop}).dropna()
    spans = spans[spans["first"] <= spans["stop"]]
    if spans.empty:
        return _empty()
    lengths = ((spans["stop"] - spans["first"]).dt.days + 1).to_numpy()
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid = pd.DataFrame(
        {
            "sku": np.repeat(spans.index.to_numpy(), lengths),
            "day": np.repeat(spans["first"].to_numpy(), lengths)
            + pd.to_timedelta(offsets, unit="D").to_numpy(),
        }
    )
    out = grid.merge(sales[["sku", "day", "units", "price"]], on=["sku", "day"], how="left")
    out["units"] = out["units"].fillna(0).astype(np.int64)
    out["price"] = out.groupby("sku")["price"].ffill()
    out["price"] = out["price"].fillna(out["sku"].map(catalog["list_price"].astype(np.float64)))
    out["category"] = out["sku"].map(catalog["category"])
    out["day"] = out["day"].astype("datetime64[ns]")
    return out[list(SALES_COLUMNS)].sort_values(["sku", "day"], ignore_index=True)


def sales_from_file(path: str | Path) -> pd.DataFrame:
    """Daily sales from a CSV or Parquet file with the columns of this module's docstring
    (extra columns are dropped); validated like ``fit_elasticities`` validates its input."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".parquet", ".pq")):
        raw = pd.read_parquet(path)
    elif ".csv" in suffixes:
        raw = pd.read_csv(path, dtype={"sku": str, "category": str})
    else:
        raise ValidationError(f"{path.name}: expected a .csv or .parquet file", field="path")
    frame = prepare_sales(raw)
    return frame[list(SALES_COLUMNS)].sort_values(["sku", "day"], ignore_index=True)
