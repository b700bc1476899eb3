"""The data snapshot a training run logs: its time range whatever form the timestamps take."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from training.snapshot import snapshot

pytestmark = pytest.mark.unit
FIRST, LAST = datetime(2018, 7, 1, 0, 2, 6, tzinfo=UTC), datetime(2018, 8, 14, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamps",
    [
        [LAST.timestamp(), FIRST.timestamp()],  # seconds since the epoch
        ["2018-08-14T23:59:00", "2018-07-01T00:02:06"],  # ISO text, as an imported CSV has it
        ["2018-08-15T01:59:00+02:00", "2018-07-01 00:02:06Z"],
        [LAST, FIRST],
        pd.to_datetime([LAST, FIRST]),
    ],
    ids=["seconds", "iso-naive", "iso-zoned", "datetimes", "datetime64"],
)
def test_time_range_from_any_timestamp_form(timestamps: list[object]) -> None:
    frame = pd.DataFrame({"timestamp": timestamps, "amount": [1.0, 2.0]})
    out = snapshot(frame, "timestamp")
    assert (out["data.from"], out["data.to"]) == (FIRST.isoformat(), LAST.isoformat())
    assert out["data.rows"] == 2
