"""The benchmark data sets some tests read: they live beside the repository
(``../shared/datasets``, or ``CARTWISE_DATASETS``), never inside it; a test that needs one is
skipped where it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

DATASETS = Path(
    os.environ.get("CARTWISE_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
HANDBOOK = DATASETS / "fraud-handbook" / "transactions.csv.gz"


def handbook_slice(directory: Path, *, customers_every: int, start: str, end: str) -> Path:
    """``directory/transactions.csv``: every transaction of one customer in
    ``customers_every`` from ``start`` to before ``end`` (ISO dates), without the
    ``fraud_scenario`` column (never a model input)."""
    if not HANDBOOK.exists():
        pytest.skip(f"{HANDBOOK} is not available")
    df = pd.read_csv(HANDBOOK)
    df = df[
        (df.customer_id % customers_every == 0) & (df.timestamp >= start) & (df.timestamp < end)
    ].drop(columns=["fraud_scenario"])
    path = directory / "transactions.csv"
    df.to_csv(path, index=False)
    return path
