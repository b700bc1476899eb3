"""Shared pieces of the demo-store generator: random streams, ids, time, money, countries.

Every generation stage draws from its own stream, ``stage_rng(seed, "name")``, so a change in one
stage (say, more products) does not reshuffle the random numbers of another. Times are whole
seconds relative to the start of the history window until rows are built.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from engine.commerce.domain import money

DAY = 86_400
HOUR = 3_600

# Customer countries and their share of customers; warehouses and channels cover the big four.
COUNTRIES = ("DE", "FR", "NL", "ES", "BE", "AT", "IT")
COUNTRY_WEIGHTS = np.array([0.38, 0.24, 0.14, 0.12, 0.05, 0.04, 0.03])
WEB_CHANNEL = {
    "DE": "web-de",
    "AT": "web-de",
    "FR": "web-fr",
    "BE": "web-fr",
    "NL": "web-nl",
    "ES": "web-es",
    "IT": "web-es",
}
# Countries fraudsters ship to or whose cards they use (besides the store's own).
FOREIGN = ("GB", "US", "RO", "NG", "BR", "UA", "PL", "TR")
# First octets of the (synthetic) address ranges seen from each country.
IP_OCTETS: dict[str, tuple[int, ...]] = {
    "DE": (79, 84, 87, 91),
    "FR": (82, 86, 90, 92),
    "NL": (77, 83, 145),
    "ES": (80, 88, 95),
    "BE": (81, 109),
    "AT": (62, 178),
    "IT": (79, 93, 151),
    "GB": (81, 86),
    "US": (24, 73, 98),
    "RO": (5, 86),
    "NG": (102, 105),
    "BR": (177, 187),
    "UA": (46, 93),
    "PL": (31, 83),
    "TR": (78, 88),
}
PROXY_OCTETS = (45, 103, 185, 193)  # hosting / proxy ranges used by fraud rings


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """The random stream of one generation stage (independent of every other stage)."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def token(seed: int, kind: str, n: int, length: int = 16) -> str:
    """A stable opaque hex token (card fingerprints, device ids): same inputs, same token."""
    return hashlib.sha256(f"{seed}:{kind}:{n}".encode()).hexdigest()[:length]


def ip_address(rng: np.random.Generator, country: str | None = None) -> str:
    firsts = IP_OCTETS.get(country or "", PROXY_OCTETS)
    a = int(firsts[int(rng.integers(len(firsts)))])
    b, c, d = (int(x) for x in rng.integers(1, 255, size=3))
    return f"{a}.{b}.{c}.{d}"


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def other_country(rng: np.random.Generator, *avoid: str | None) -> str:
    """A country (store or foreign) that is none of ``avoid``."""
    choices = [c for c in (*COUNTRIES, *FOREIGN) if c not in avoid]
    return pick(rng, choices)


def price(value: float) -> Decimal:
    return money(Decimal(f"{value:.4f}"))


@dataclass(frozen=True, slots=True)
class Window:
    """The history window ``[start, end)``; offsets are whole seconds since ``start``."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime | None, days: int) -> Window:
        if end is None:
            end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        if end.tzinfo is None:
            raise ValueError("SeedConfig.end must be timezone-aware")
        end = end.astimezone(UTC)
        return cls(end - timedelta(days=days), end)

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def at(self, offset: int | float) -> datetime:
        return self.start + timedelta(seconds=int(offset))
