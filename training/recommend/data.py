"""Interactions for the recommender: from the commerce database or from a file.

The canonical frame (``EVENT_COLUMNS``) has one row per event: ``user_id``, ``item_id`` (text),
``timestamp`` (float64 seconds since the epoch, UTC), ``weight`` (float64, > 0: the event's
weight, ``EVENT_WEIGHTS``), ``purchase`` (bool) and ``basket`` (text: the order the purchase
belongs to, or None).  Events of weight 0 (``remove_from_cart``, ``search``) are dropped.

Commerce database
    ``interactions`` rows of type view / add_to_cart / purchase with a customer and a SKU
    (anonymous events cannot be served to a customer and are left out), and every order line
    (``order_lines`` joined with ``orders``: the order's customer and ``created_at``) as a
    purchase of weight 5 whatever the quantity, with the order id as its basket.  The
    storefront also sends a ``purchase`` event for what it sells, so a ``purchase`` event is
    dropped when its (customer, SKU) pair has an order line: counted once, not twice.

File (CSV, CSV.gz or Parquet; ``FILE_COLUMNS``)
    ``user_id``, ``item_id``, ``timestamp`` required; ``event_type`` or ``weight`` optional
    (both given: ``weight`` is the weight and ``event_type`` still marks the purchases; neither:
    every row weighs 1); ``order_id`` optional (groups purchases into baskets; without it a
    basket is one user's purchases of one UTC day).  Rows of weight 0 are dropped.  Every bad
    cell is collected and raised as one ``ValidationError`` (code ``invalid_import``) whose
    ``field`` is the first bad column and whose ``items`` name the column, rows and problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from engine.commerce.db import Database
from engine.commerce.schema import Interaction, Order, OrderLine
from engine.errors import ValidationError

# Weight of each event type in the user x item matrix (summed per pair).  A removal from the
# cart is not a negative signal worth learning from (people tidy carts); a search has no item.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "add_to_cart": 3.0,
    "remove_from_cart": 0.0,
    "purchase": 5.0,
    "order": 5.0,
    "search": 0.0,
}
PURCHASE_TYPES = frozenset({"purchase", "order"})
EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "weight", "purchase", "basket")
FILE_COLUMNS: dict[str, str] = {
    "user_id": "required: the customer",
    "item_id": "required: the item (SKU)",
    "timestamp": "required: ISO 8601 text or datetime (naive = UTC), or Unix seconds",
    "event_type": "optional: " + ", ".join(EVENT_WEIGHTS) + " (weights: EVENT_WEIGHTS)",
    "weight": "optional: a number >= 0 (overrides the event type's weight)",
    "order_id": "optional: the order of a purchase (its basket for 'bought together')",
}
CHUNK = 20_000
_MAX_ITEMS = 20
_DAY = 86_400


class _Problems:
    """Every bad cell of an import, raised as one error naming the first bad column."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.counts: dict[str, tuple[int, str]] = {}

    def add(self, column: str, bad: np.ndarray, reason: str) -> None:
        rows = np.flatnonzero(bad)
        if rows.size:
            self.counts.setdefault(column, (int(rows.size), reason))
            room = max(0, _MAX_ITEMS - len(self.items))
            self.items += [{"row": int(r), "column": column, "error": reason} for r in rows[:room]]

    def raise_if_any(self) -> None:
        if self.counts:
            summary = "; ".join(f"{c}: {r} ({n} row(s))" for c, (n, r) in self.counts.items())
            raise ValidationError(
                f"invalid interactions: {summary}",
                field=next(iter(self.counts)),
                items=self.items,
                code="invalid_import",
            )


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (optionally compressed) or Parquet file, by suffix; id columns read as text."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    try:
        if suffixes and suffixes[-1] in {".parquet", ".pq"}:
            return pd.read_parquet(p)
        if ".csv" in suffixes:
            text = dict.fromkeys(("user_id", "item_id", "event_type", "order_id"), str)
            return pd.read_csv(p, dtype=text, low_memory=False)
    except (ValueError, OSError) as exc:
        raise ValidationError(
            f"{p.name}: cannot be read ({exc})", field="path", code="invalid_import"
        ) from exc
    raise ValidationError(
        f"{p.name}: unknown table format (expected .csv, .csv.gz or .parquet)",
        field="path",
        code="invalid_import",
    )


def load_interactions(path: str | Path) -> pd.DataFrame:
    """The canonical events of an interactions file (see the module docstring)."""
    return events_from_frame(read_table(path))


def _ids(s: pd.Series) -> np.ndarray:
    """Text ids, stripped (``12.0`` from a column with gaps stays ``"12"``); missing or empty:
    None.  Works on the distinct values (few) and maps them back (fast on millions of rows)."""
    codes, uniques = pd.factorize(s)
    values = pd.Series(uniques)
    if pd.api.types.is_float_dtype(values.dtype) and bool((values == np.floor(values)).all()):
        values = values.astype("Int64")
    text = values.astype(str).str.strip().to_numpy(dtype=object)
    text[text == ""] = None
    out = np.empty(len(codes), dtype=object)
    out[:] = text[codes] if len(text) else None
    out[codes < 0] = None
    return out


def _kinds(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(event types, lower-cased and stripped; known?) per row, via the distinct values."""
    codes, uniques = pd.factorize(s)
    text = pd.Series(uniques).astype(str).str.strip().str.lower().to_numpy(dtype=object)
    known = np.array([t in EVENT_WEIGHTS for t in text], dtype=bool)
    return text[codes], known[codes] & (codes >= 0)


_ZONE = r"(?:[Zz]|[+-]\d\d:?\d\d)$"  # an ISO 8601 text that names its UTC offset


def _seconds(s: pd.Series) -> np.ndarray:
    """Seconds since the epoch (NaN where not a timestamp); naive values are UTC."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(np.float64).to_numpy()
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        # pandas applies the first text's offset to later naive texts: parse apart
        zoned = s.str.contains(_ZONE, regex=True, na=False).to_numpy(dtype=bool)
        dt = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        for part in (zoned, ~zoned):
            if part.any():
                dt[part] = pd.to_datetime(s[part], utc=True, format="ISO8601", errors="coerce")
    else:
        dt = pd.to_datetime(s, utc=True, errors="coerce")
    bad = dt.isna().to_numpy()
    ns = dt.dt.as_unit("ns").astype("int64").to_numpy()
    seconds = np.where(bad, np.nan, ns / 1e9)
    if bad.any():  # epoch seconds written as text among dates
        number = pd.to_numeric(s[bad], errors="coerce").to_numpy(dtype=np.float64)
        seconds[bad] = number
    return seconds


def events_from_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a frame of the file format and return the canonical events."""
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in df.columns]
    if missing:
        raise ValidationError(
            f"interactions: missing column(s) {', '.join(missing)} "
            f"(columns: {', '.join(FILE_COLUMNS)})",
            field=missing[0],
            items=[{"column": c, "error": "missing"} for c in missing],
            code="invalid_import",
        )
    problems = _Problems()
    user, item = _ids(df["user_id"]), _ids(df["item_id"])
    problems.add("user_id", user == None, "missing")  # noqa: E711 (elementwise on objects)
    problems.add("item_id", item == None, "missing")  # noqa: E711
    ts = _seconds(df["timestamp"])
    problems.add("timestamp", ~np.isfinite(ts), "not a timestamp")
    kind = None
    if "event_type" in df.columns:
        kind, known = _kinds(df["event_type"])
        problems.add("event_type", ~known, f"not one of {', '.join(EVENT_WEIGHTS)}")
    weight = np.ones(len(df))
    if "weight" in df.columns:
        weight = pd.to_numeric(df["weight"], errors="coerce").to_numpy(dtype=np.float64)
        problems.add("weight", ~(np.isfinite(weight) & (weight >= 0)), "not a number >= 0")
    elif kind is not None:
        weight = pd.Series(kind).map(EVENT_WEIGHTS).to_numpy(dtype=np.float64)
    problems.raise_if_any()
    if len(df) == 0:
        raise ValidationError("no interactions in the file", field="interactions")
    purchase = np.zeros(len(df), dtype=bool)
    if kind is not None:
        purchase = pd.Series(kind).isin(PURCHASE_TYPES).to_numpy()
    basket = _ids(df["order_id"]) if "order_id" in df.columns else np.full(len(df), None, object)
    return _canonical(user, item, ts, weight, purchase, basket)


def _canonical(
    user: Any, item: Any, ts: Any, weight: Any, purchase: Any, basket: Any
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "user_id": np.asarray(user, dtype=object),
            "item_id": np.asarray(item, dtype=object),
            "timestamp": np.asarray(ts, dtype=np.float64),
            "weight": np.asarray(weight, dtype=np.float64),
            "purchase": np.asarray(purchase, dtype=bool),
            "basket": np.asarray(basket, dtype=object),
        }
    )
    frame = frame[frame["weight"].to_numpy() > 0]
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def interactions_from_db(db: Database) -> pd.DataFrame:
    """The canonical events of the commerce database (see the module docstring)."""
    kinds = sorted(k for k, w in EVENT_WEIGHTS.items() if w > 0 and k != "order")
    events = select(Interaction.customer_id, Interaction.sku, Interaction.ts, Interaction.type)
    events = events.where(
        Interaction.type.in_(kinds),
        Interaction.customer_id.is_not(None),
        Interaction.sku.is_not(None),
    )
    lines = select(Order.customer_id, OrderLine.sku, Order.created_at, Order.id).join(
        Order, Order.id == OrderLine.order_id
    )
    with db.transaction(readonly=True) as s:
        ev = _rows(s.execute(events.execution_options(yield_per=CHUNK)))
        ol = _rows(s.execute(lines.execution_options(yield_per=CHUNK)))
    ev_frame = pd.DataFrame.from_records(ev, columns=["user_id", "item_id", "ts", "type"])
    ol_frame = pd.DataFrame.from_records(ol, columns=["user_id", "item_id", "ts", "basket"])
    ordered = set(zip(ol_frame["user_id"], ol_frame["item_id"], strict=True))
    pairs = zip(ev_frame["user_id"], ev_frame["item_id"], strict=True)
    counted = np.fromiter((p in ordered for p in pairs), dtype=bool, count=len(ev_frame))
    ev_frame = ev_frame[~((ev_frame["type"] == "purchase").to_numpy() & counted)]
    kind = ev_frame["type"].to_numpy(dtype=object)
    n = len(ol_frame)
    return _canonical(
        np.concatenate([ev_frame["user_id"].to_numpy(dtype=object), ol_frame["user_id"]]),
        np.concatenate([ev_frame["item_id"].to_numpy(dtype=object), ol_frame["item_id"]]),
        np.concatenate([_epoch(ev_frame["ts"]), _epoch(ol_frame["ts"])]),
        np.concatenate([[EVENT_WEIGHTS[k] for k in kind], np.full(n, EVENT_WEIGHTS["order"])]),
        np.concatenate([kind == "purchase", np.ones(n, dtype=bool)]),
        np.concatenate([np.full(len(kind), None, dtype=object), ol_frame["basket"]]),
    )


def _rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in result]


def _epoch(s: pd.Series) -> np.ndarray:
    if len(s) == 0:
        return np.empty(0, dtype=np.float64)
    ns = pd.to_datetime(s, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    return ns / 1e9


def baskets(events: pd.DataFrame) -> np.ndarray:
    """A basket number (int64, from 0) per event: its order, else its user's UTC day."""
    given = events["basket"].to_numpy(dtype=object)
    has = ~pd.isna(given)
    codes = np.empty(len(events), dtype=np.int64)
    ordered, uniques = pd.factorize(given[has])
    codes[has] = ordered
    user, _ = pd.factorize(events["user_id"].to_numpy(dtype=object)[~has])
    day = (events["timestamp"].to_numpy()[~has] // _DAY).astype(np.int64)
    if day.size:
        day -= day.min()
        daily, _ = pd.factorize(user.astype(np.int64) * (int(day.max()) + 1) + day)
        codes[~has] = daily + len(uniques)
    return codes


def summary(events: pd.DataFrame) -> dict[str, Any]:
    """Counts and time range of canonical events (for logs and the CLI)."""
    ts = events["timestamp"].to_numpy()
    return {
        "events": len(events),
        "users": int(events["user_id"].nunique()),
        "items": int(events["item_id"].nunique()),
        "purchases": int(events["purchase"].sum()),
        "from": _iso(float(ts.min())) if len(ts) else None,
        "to": _iso(float(ts.max())) if len(ts) else None,
    }


def _iso(seconds: float) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()
