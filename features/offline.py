"""Offline, point-in-time computation of the feature definitions, for training.

Every feature of ``features/definitions.py`` is computed for every event of an imported table,
with the value the online store (``FeatureStore.decide``) would have returned for that event if
the table had been replayed into it in time order: reads *before* the event is recorded, the
same buckets, TTL gate, integer cents, last-value ties and label timing.
``tests/integration/test_feature_parity.py`` proves it against the real Redis store.

Transactions (the public import format, CSV/CSV.gz/Parquet; see ``TRANSACTION_COLUMNS``)
    ``transaction_id``  required; a repeated id is read but recorded only once (the online
                        store's ``seen`` key), and labels refer to it
    ``timestamp``       required; ISO 8601 text or datetimes (naive means UTC), or numbers
                        (seconds since the epoch); kept to the microsecond
    ``customer_id``     customer entity (``customer_txn``)
    ``merchant_id``     merchant entity (``merchant_txn``); ``terminal_id`` is an alias
    ``amount``          required; money in major units, stored as integer cents with
                        ``np.rint(amount * 100)`` (half to even, like ``definitions.cents``)
    ``card_id``, ``device_id``, ``ip``, ``email``  optional entities (card/device/ip/email views)
    ``shipping_country``  optional; ``customer_txn.last_txn``
    ``is_fraud``        optional; 1 marks a fraudulent transaction
    ``reported_at``     optional; when its fraud label became known
An empty or missing entity id means that entity's views do not exist for the row (the online
store skips them); its features get the defaults (0.0; None for last values, -1.0 for their
``_age_s``) so the output is rectangular.

Labels
    ``transaction_features(tx, labels)`` takes fraud labels as a frame ``transaction_id,
    reported_at``.  Without one, every ``is_fraud == 1`` row is a label reported at its
    ``reported_at`` if given, else at ``timestamp`` + the merchant view's delay (7 days): the
    label-delay assumption of the fraud-handbook protocol.  A label carries its transaction's
    entities and time; it is applied just before the first event whose timestamp is >= its
    reported time (ties among labels: input order), once per transaction id.  Labels whose
    transaction is not in ``tx`` are ignored.

Interactions (``INTERACTION_COLUMNS``)
    ``event_id``, ``timestamp``, ``type`` (view, add_to_cart, purchase, search, …) required;
    ``customer_id``, ``session_id``, ``sku``, ``category`` entities; ``qty`` (default 1).

Events are processed in (timestamp, input order) order.  The output has one row per input row,
same index and order, one column per feature the online store returns for that source (the
derived means and ratios included).  One deliberate difference: the online store's keys also
expire on the wall clock (view TTL + 1 day after the last write); replaying history into it is
fast, so nothing expires during a replay, and nothing expires here either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from features.definitions import DAY, VIEWS, Entity, FeatureEvent, Kind, Source, views_for
from features.offline_kernels import Labels, Stream, codes_of, default_of, view_features

TRANSACTION_COLUMNS: dict[str, str] = {
    "transaction_id": "required: id of the transaction (labels refer to it)",
    "timestamp": "required: ISO 8601 text or datetime (naive = UTC), or epoch seconds",
    "customer_id": "required column: customer entity (empty: no customer features)",
    "merchant_id": "required column (alias terminal_id): merchant entity",
    "amount": "required: amount in major units; stored as cents, np.rint(amount * 100)",
    "card_id": "optional: card entity",
    "device_id": "optional: device entity",
    "ip": "optional: IP address entity",
    "email": "optional: e-mail entity",
    "shipping_country": "optional: customer_txn.last_txn",
    "is_fraud": "optional: 1 = fraud; labels when no labels frame is given",
    "reported_at": "optional: when the fraud became known (default: timestamp + 7 days)",
}
INTERACTION_COLUMNS: dict[str, str] = {
    "event_id": "required: id of the event",
    "timestamp": "required: ISO 8601 text or datetime (naive = UTC), or epoch seconds",
    "type": "required: view, add_to_cart, remove_from_cart, purchase, search",
    "customer_id": "optional: customer entity",
    "session_id": "optional: session entity",
    "sku": "optional: SKU entity",
    "category": "optional: category entity",
    "qty": "optional: units (default 1)",
}
LABEL_COLUMNS: dict[str, str] = {
    "transaction_id": "required: the fraudulent transaction",
    "reported_at": "required: when the label became known",
}

TRANSACTION_ENTITIES = {
    "customer_id": Entity.CUSTOMER,
    "card_id": Entity.CARD,
    "device_id": Entity.DEVICE,
    "ip": Entity.IP,
    "email": Entity.EMAIL,
    "merchant_id": Entity.MERCHANT,
}
INTERACTION_ENTITIES = {
    "customer_id": Entity.CUSTOMER,
    "session_id": Entity.SESSION,
    "sku": Entity.SKU,
    "category": Entity.CATEGORY,
}
_TEXT_COLUMNS = (
    {"transaction_id", "event_id", "terminal_id", "shipping_country", "type"}
    | set(TRANSACTION_ENTITIES)
    | set(INTERACTION_ENTITIES)
)
TRANSACTION_TYPE = "payment"
LABEL_DELAY_S = next(v.delayed.delay_days for v in VIEWS if v.delayed) * DAY
_MAX_ITEMS = 20


# --- files ----------------------------------------------------------------------------------------


def load_table(path: str | Path) -> pd.DataFrame:
    """A CSV (optionally ``.gz``/``.bz2``/``.zip``/``.xz``) or Parquet file, by suffix.  Id
    columns of a CSV are read as text, so ``00123`` stays ``00123``."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in {".parquet", ".pq"}:
        return pd.read_parquet(p)
    if ".csv" in suffixes or ".tsv" in suffixes:
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(p, sep=sep, dtype=dict.fromkeys(_TEXT_COLUMNS, str), low_memory=False)
    raise ValidationError(
        f"{p.name}: unknown table format (expected .csv, .csv.gz or .parquet)",
        field="path",
        code="invalid_import",
    )


# --- normalisation --------------------------------------------------------------------------------


class _Problems:
    """Every bad cell of an import, raised as one error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def add(self, column: str, bad: pd.Series, reason: str) -> None:
        rows = bad.index[bad.to_numpy(dtype=bool)]
        if len(rows):
            self.counts[column] = self.counts.get(column, 0) + len(rows)
            room = max(0, _MAX_ITEMS - len(self.items))
            self.items += [
                {"row": _plain(r), "column": column, "error": reason} for r in rows[:room]
            ]

    def raise_if_any(self) -> None:
        if self.counts:
            summary = ", ".join(f"{c}: {n} row(s)" for c, n in self.counts.items())
            raise ValidationError(
                f"invalid {self.what}: {summary}", items=self.items, code="invalid_import"
            )


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValidationError(
            f"{what}: missing column(s) {', '.join(missing)}",
            field=missing[0],
            items=[{"column": c, "error": "missing"} for c in missing],
            code="invalid_import",
        )


def _ids(s: pd.Series) -> pd.Series:
    """Ids/attributes as strings (``12.0`` read from a column with gaps stays ``"12"``);
    NaN, None and "" become None."""
    missing = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s.dtype):
        finite = s[~missing]
        if bool((finite == np.floor(finite)).all()):
            s = s.astype("Int64")
    text = s.astype(str).to_numpy(dtype=object)
    missing |= text == ""
    text[missing] = None
    return pd.Series(text, index=s.index, dtype=object)


_ZONE = r"(?:[Zz]|[+-]\d\d:?\d\d)$"  # an ISO 8601 text that names its UTC offset


def _datetimes(s: pd.Series) -> pd.Series:
    """Aware UTC datetimes (NaT where unparseable); naive values are UTC."""
    if s.dtype != object and not pd.api.types.is_string_dtype(s.dtype):
        return pd.to_datetime(s, utc=True, errors="coerce")
    # pandas' ISO8601 parser applies the first text's offset to later naive texts: parse the
    # texts with an offset and those without separately
    zoned = s.str.contains(_ZONE, regex=True, na=False).to_numpy(dtype=bool)
    if not zoned.any() or zoned.all():
        return pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    for part in (zoned, ~zoned):
        out[part] = pd.to_datetime(s[part], utc=True, format="ISO8601", errors="coerce")
    return out


def _seconds(s: pd.Series, column: str, problems: _Problems, *, optional: bool = False) -> Any:
    """Seconds since the epoch (float64: whole microseconds / 1e6)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype(np.float64)
        bad = ~np.isfinite(out)
    else:
        dt = _datetimes(s)
        bad = dt.isna()
        micros = dt.dt.as_unit("ns").astype("int64").to_numpy() // 1000
        out = pd.Series(np.where(bad, np.nan, micros / 1e6), index=s.index)
    if optional:
        bad = bad & s.notna()
    problems.add(column, bad, "not a timestamp")
    return out.to_numpy(dtype=np.float64)


def _optional_ids(df: pd.DataFrame, column: str) -> pd.Series:
    if column in df.columns:
        return _ids(df[column])
    return pd.Series(np.full(len(df), None, dtype=object), index=df.index)


def _entity_columns(df: pd.DataFrame, entities: dict[str, Entity]) -> dict[str, pd.Series]:
    return {e.value: _optional_ids(df, c) for c, e in entities.items()}


def transaction_events(df: pd.DataFrame) -> pd.DataFrame:
    """The canonical transaction frame: ``event_id, ts, type, <entity values>, amount`` (cents,
    int64), ``shipping_country``, ``is_fraud`` (int8), ``reported_ts`` (NaN: not given)."""
    if "merchant_id" not in df.columns and "terminal_id" in df.columns:
        df = df.rename(columns={"terminal_id": "merchant_id"})
    required = ["transaction_id", "timestamp", "customer_id", "merchant_id", "amount"]
    _require(df, required, "transactions")
    problems = _Problems("transactions")
    event_id = _ids(df["transaction_id"])
    problems.add("transaction_id", event_id.isna(), "missing")
    ts = _seconds(df["timestamp"], "timestamp", problems)
    amount = pd.to_numeric(df["amount"], errors="coerce").astype(np.float64)
    problems.add("amount", ~np.isfinite(amount), "not a number")
    reported = pd.Series(np.nan, index=df.index)
    if "reported_at" in df.columns:
        reported = _seconds(df["reported_at"], "reported_at", problems, optional=True)
    fraud = pd.Series(0, index=df.index)
    if "is_fraud" in df.columns:
        fraud = pd.to_numeric(df["is_fraud"], errors="coerce")
        problems.add("is_fraud", fraud.notna() & ~fraud.isin([0, 1]), "not 0 or 1")
    problems.raise_if_any()
    out = {
        "event_id": event_id,
        "ts": ts,
        "type": TRANSACTION_TYPE,
        **_entity_columns(df, TRANSACTION_ENTITIES),
        "amount": np.rint(amount.to_numpy() * 100).astype(np.int64),
        "shipping_country": _optional_ids(df, "shipping_country"),
        "is_fraud": fraud.fillna(0).to_numpy().astype(np.int8),
        "reported_ts": np.asarray(reported, dtype=np.float64),
    }
    return pd.DataFrame(out, index=df.index)


def interaction_table(events: Iterable[FeatureEvent]) -> pd.DataFrame:
    """Storefront feature events (as the online store was given them) as an interactions
    file's columns: ``event_id, timestamp`` (aware UTC), ``type``, the entities, ``qty``;
    oldest first."""
    rows = [
        (
            e.event_id,
            e.ts,
            e.type,
            *(e.entities.get(entity) for entity in INTERACTION_ENTITIES.values()),
            int(e.values.get("qty", 1)),
        )
        for e in events
        if e.source is Source.INTERACTION
    ]
    columns = ["event_id", "timestamp", "type", *INTERACTION_ENTITIES, "qty"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)
    micros = np.round(frame["timestamp"].to_numpy(dtype=np.float64) * 1e6).astype(np.int64)
    frame["timestamp"] = pd.to_datetime(micros, unit="us", utc=True)  # exact: no float ns
    frame["qty"] = frame["qty"].astype(np.int64)
    return frame


def interaction_events(df: pd.DataFrame) -> pd.DataFrame:
    """The canonical interaction frame: ``event_id, ts, type, <entity values>, qty``."""
    _require(df, ["event_id", "timestamp", "type"], "interactions")
    problems = _Problems("interactions")
    event_id = _ids(df["event_id"])
    problems.add("event_id", event_id.isna(), "missing")
    ts = _seconds(df["timestamp"], "timestamp", problems)
    kind = _ids(df["type"])
    problems.add("type", kind.isna(), "missing")
    qty = pd.Series(1, index=df.index)
    if "qty" in df.columns:
        qty = pd.to_numeric(df["qty"], errors="coerce").fillna(1)
        problems.add("qty", qty != np.floor(qty), "not a whole number")
    problems.raise_if_any()
    out = {
        "event_id": event_id,
        "ts": ts,
        "type": kind,
        **_entity_columns(df, INTERACTION_ENTITIES),
        "qty": qty.to_numpy().astype(np.int64),
    }
    return pd.DataFrame(out, index=df.index)


def fraud_labels(tx: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labels as ``transaction_id, reported_ts`` (see the module docstring)."""
    if labels is not None:
        _require(labels, list(LABEL_COLUMNS), "labels")
        problems = _Problems("labels")
        ids = _ids(labels["transaction_id"])
        problems.add("transaction_id", ids.isna(), "missing")
        reported = _seconds(labels["reported_at"], "reported_at", problems)
        problems.raise_if_any()
        return pd.DataFrame({"transaction_id": ids.to_numpy(), "reported_ts": reported})
    fraud = tx["is_fraud"].to_numpy() == 1 if "is_fraud" in tx.columns else np.zeros(len(tx), bool)
    chosen = tx[fraud]
    ts = chosen["ts"].to_numpy(dtype=np.float64)
    reported = ts + LABEL_DELAY_S
    if "reported_ts" in chosen.columns:
        given = chosen["reported_ts"].to_numpy(dtype=np.float64)
        reported = np.where(np.isnan(given), reported, given)
    return pd.DataFrame({"transaction_id": chosen["event_id"].to_numpy(), "reported_ts": reported})


# --- features -------------------------------------------------------------------------------------


def _stream(frame: pd.DataFrame, source: Source) -> Stream:
    ts = frame["ts"].to_numpy(dtype=np.float64)
    order = np.argsort(ts, kind="stable").astype(np.int64)
    ids = frame["event_id"].to_numpy(dtype=object)[order]
    recorded = ~pd.Series(ids).duplicated(keep="first").to_numpy(dtype=bool)
    columns, values = {}, {}
    for view in views_for(source):
        names = [view.entity.value]
        names += [a.value or "" for a in view.aggregations if a.kind in (Kind.DISTINCT, Kind.LAST)]
        for name in filter(None, names):
            col = frame[name] if name in frame.columns else pd.Series(None, index=frame.index)
            columns[name] = codes_of(col.to_numpy(dtype=object)[order])
        for agg in view.aggregations:
            if agg.kind in (Kind.SUM, Kind.MAX) and agg.value:
                values[agg.value] = frame[agg.value].to_numpy(dtype=np.int64)[order]
    types = codes_of(frame["type"].to_numpy(dtype=object)[order])
    return Stream(ts[order], order, recorded, types, columns, values)


def _labels(tx: pd.DataFrame, labels: pd.DataFrame) -> Labels:
    """Labels in application order, once per transaction id, joined to their transaction (its
    first occurrence in processing order)."""
    first = tx[tx["event_id"].isin(labels["transaction_id"])]
    first = first.iloc[np.argsort(first["ts"].to_numpy(), kind="stable")]
    first = first.drop_duplicates("event_id").set_index("event_id")
    lab = labels.iloc[np.argsort(labels["reported_ts"].to_numpy(), kind="stable")]
    lab = lab.drop_duplicates("transaction_id")
    lab = lab[lab["transaction_id"].isin(first.index)]
    joined = first.loc[lab["transaction_id"].to_numpy()]
    entities = {
        e.value: joined[e.value].to_numpy(dtype=object)
        for e in TRANSACTION_ENTITIES.values()
        if e.value in joined.columns
    }
    return Labels(
        joined["ts"].to_numpy(dtype=np.float64),
        lab["reported_ts"].to_numpy(dtype=np.float64),
        entities,
    )


def _features(frame: pd.DataFrame, source: Source, labels: Labels | None) -> pd.DataFrame:
    """Scatter every view's features into one preallocated float block (building a frame from
    ~60 separate 1.75M-row columns would copy them twice) plus the few string columns."""
    stream = _stream(frame, source)
    names = feature_names(source)
    text = [n for n in names if default_of(n) is None]
    numeric = [n for n in names if n not in text]
    where = {n: i for i, n in enumerate(numeric)}
    block = np.empty((len(numeric), len(frame)), dtype=np.float64)
    strings: dict[str, Any] = {}
    for view in views_for(source):
        rows, values = view_features(view, stream, labels)
        for name in view.feature_names():
            if name in where:
                column = block[where[name]]
                column.fill(default_of(name) or 0.0)
            else:
                column = strings[name] = np.full(len(frame), None, dtype=object)
            column[rows] = values.pop(name)
    out = pd.DataFrame(block.T, index=frame.index, columns=numeric, copy=False)
    for name in text:
        out.insert(names.index(name), name, strings[name])
    return out


def transaction_features(tx: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every transaction feature for every row of ``tx`` (a ``transaction_events`` frame; a raw
    import frame is normalised first), as of the transaction, excluding itself."""
    if "ts" not in tx.columns:
        tx = transaction_events(tx)
    return _features(tx, Source.TRANSACTION, _labels(tx, fraud_labels(tx, labels)))


def interaction_features(ev: pd.DataFrame) -> pd.DataFrame:
    """Every interaction feature for every row of ``ev`` (an ``interaction_events`` frame; a raw
    import frame is normalised first), as of the event, excluding itself."""
    if "ts" not in ev.columns:
        ev = interaction_events(ev)
    return _features(ev, Source.INTERACTION, None)


def feature_names(source: Source) -> list[str]:
    """The columns of the feature frame of ``source``, in order."""
    return [name for view in views_for(source) for name in view.feature_names()]
