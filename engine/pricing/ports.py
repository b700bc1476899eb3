"""What pricing needs from the online store (implemented in ``features/pricing.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class CompetitorPrice:
    sku: str
    competitor: str
    cents: int  # in the SKU's catalogue currency
    observed_at: float  # seconds since the epoch


class MarketInputs(Protocol):
    def activity(self, skus: Sequence[str], now: float) -> tuple[np.ndarray, bool]:
        """float32 [4, n]: units sold in 1 day and 7 days, views in 1 day and 7 days (NaN:
        unknown), and whether the store was unreachable."""
        ...

    def stock(self, skus: Sequence[str]) -> tuple[np.ndarray, bool]:
        """float32 [n]: available units over every warehouse (NaN: unknown)."""
        ...

    def competitor_prices(
        self, skus: Sequence[str], now: float, max_age_s: float
    ) -> tuple[list[list[CompetitorPrice]], bool]:
        """Per SKU, each competitor's newest price observed within ``max_age_s``."""
        ...

    def put_competitor_prices(self, prices: Sequence[CompetitorPrice], ttl_s: int) -> int:
        """Keep each price unless a newer observation of that competitor is kept already;
        returns how many were kept."""
        ...
