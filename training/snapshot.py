"""What a training run was trained on, logged with it: the data's time range, row count and a
content hash (the same rows give the same hash, whatever their order), and the version of the
feature definitions that turned them into model inputs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.definitions import DEFINITIONS_VERSION


def snapshot(frame: pd.DataFrame, time_column: str, prefix: str = "data") -> dict[str, Any]:
    """``{prefix}.from``/``.to`` (ISO 8601 UTC), ``.rows`` and ``.sha256`` of ``frame``, plus
    ``features.definitions_version``; flat, ready for MLflow params."""
    rows = len(frame)
    out: dict[str, Any] = {
        f"{prefix}.rows": rows,
        f"{prefix}.sha256": content_hash(frame),
        "features.definitions_version": DEFINITIONS_VERSION,
    }
    if rows and time_column in frame:
        ts = frame[time_column]
        if pd.api.types.is_numeric_dtype(ts.dtype):  # seconds since the epoch
            ts = pd.to_datetime(ts, unit="s", utc=True)
        elif pd.api.types.is_datetime64_any_dtype(ts) or isinstance(ts.iloc[0], datetime):
            ts = pd.to_datetime(ts, utc=True)
        else:  # ISO 8601 text, as an imported file has it (naive means UTC)
            ts = pd.to_datetime(ts, utc=True, format="ISO8601")
        out[f"{prefix}.from"] = ts.min().to_pydatetime().astimezone(UTC).isoformat()
        out[f"{prefix}.to"] = ts.max().to_pydatetime().astimezone(UTC).isoformat()
    return out


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 over the columns (sorted by name) and the sorted per-row hashes: independent of
    row and column order, different for any changed value."""
    digest = hashlib.sha256()
    columns = sorted(map(str, frame.columns))
    digest.update("\x1f".join(columns).encode())
    if len(frame):
        rows = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(np.uint64)
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()
