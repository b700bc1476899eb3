"""RFM scoring: recency, frequency and monetary value per customer, scored 1-5 by quintiles,
and the named segment each (R, F) pair falls in.  Pure: numpy arrays in, arrays out.

Scores.  Each measure is scored against the other scored customers: a customer's score is
``1 + floor(5 * below / n)``, where ``below`` counts the customers with a *strictly worse*
value (recency: more days since the last order; frequency and monetary: less) and ``n`` all
scored customers.  Equal values therefore always get the same score, whatever the input order
(ties are deterministic); with many ties (most customers ordered once) some scores stay unused
rather than splitting equal customers arbitrarily.  Five distinct values score 1 to 5; ten
distinct values score 1, 1, 2, 2, ... 5, 5.

Segments (the usual R/F grid; M is scored and stored but does not pick the segment)::

        F=1                 F=2                 F=3             F=4        F=5
  R=5   new                 potential_loyalist  potential_loy.  champions  champions
  R=4   promising           potential_loyalist  potential_loy.  loyal      loyal
  R=3   about_to_sleep      about_to_sleep      need_attention  loyal      loyal
  R=2   hibernating         hibernating         at_risk         at_risk    cannot_lose
  R=1   lost                lost                at_risk         at_risk    cannot_lose
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
)

# GRID[r - 1][f - 1]
GRID: tuple[tuple[str, ...], ...] = (
    ("lost", "lost", "at_risk", "at_risk", "cannot_lose"),
    ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"),
    ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),
    ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
)
_GRID = np.array(GRID, dtype=object)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def quintile_scores(values: npt.ArrayLike, *, higher_is_better: bool = True) -> I64:
    """Scores 1-5: ``1 + floor(5 * (customers strictly worse) / n)``; ties score alike."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(v)):
        raise ValueError("RFM values must be finite")
    keyed = v if higher_is_better else -v
    below = np.searchsorted(np.sort(keyed, kind="stable"), keyed, side="left")
    return (1 + (5 * below) // v.size).astype(np.int64)


def segment_of(r: int, f: int) -> str:
    if not (1 <= r <= 5 and 1 <= f <= 5):
        raise ValueError(f"scores are 1 to 5, got r={r} f={f}")
    return GRID[r - 1][f - 1]


@dataclass(frozen=True)
class Scores:
    """Per customer, in input order: the R, F and M scores and the segment."""

    r: I64
    f: I64
    m: I64
    segment: npt.NDArray[np.object_]


def score(recency_days: npt.ArrayLike, frequency: npt.ArrayLike, monetary: npt.ArrayLike) -> Scores:
    """Score customers (same length arrays): recency in days (lower is better), frequency in
    orders and monetary in the store currency (higher is better)."""
    rec = np.asarray(recency_days, dtype=np.float64)
    freq = np.asarray(frequency, dtype=np.float64)
    mon = np.asarray(monetary, dtype=np.float64)
    if not rec.shape == freq.shape == mon.shape or rec.ndim != 1:
        raise ValueError("recency, frequency and monetary must be 1-d arrays of one length")
    r = quintile_scores(rec, higher_is_better=False)
    f = quintile_scores(freq)
    m = quintile_scores(mon)
    segment = _GRID[r - 1, f - 1] if r.size else np.zeros(0, dtype=object)
    return Scores(r=r, f=f, m=m, segment=np.asarray(segment, dtype=object))
