"""Customers with latent tastes, price sensitivity, cards, devices and a home IP.

The tastes are what a recommender should discover: every customer prefers one to three
top-level categories (a Dirichlet draw concentrated on them). Only a coarse ``segment`` hint
(from the price sensitivity) is stored in ``attributes``; the tastes themselves are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.demo.common import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DAY,
    HOUR,
    Window,
    ip_address,
    other_country,
    pick,
    stage_rng,
    token,
)
from training.demo.vocabulary import DOMAINS, FIRST_NAMES, LAST_NAMES

METHODS = ("card", "wallet", "bnpl")
METHOD_SHARE = np.array([0.80, 0.12, 0.08])


@dataclass(frozen=True, slots=True)
class Card:
    fingerprint: str
    bin: str
    last4: str
    country: str


@dataclass(frozen=True)
class Customer:
    index: int
    id: str
    email: str
    name: str
    country: str
    created: int  # seconds since the history start (negative: before it)
    taste: np.ndarray  # preference over the top-level categories (sums to 1)
    sensitivity: float  # 0 = ignores price, 1 = hunts bargains
    activity: float  # relative number of sessions (mean 1)
    app_user: bool
    method: str  # preferred payment method
    cards: tuple[Card, ...]
    devices: tuple[str, ...]
    home_ip: str
    segment: str

    def row(self, window: Window) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "country": self.country,
            "attributes": {"segment": self.segment},
            "created_at": window.at(self.created),
        }


def new_card(rng: np.random.Generator, seed: int, kind: str, n: int, country: str) -> Card:
    """A card with a stable fingerprint ``fp_…`` (same seed/kind/n, same card)."""
    first = "4" if rng.random() < 0.6 else "5"
    bin_ = first + "".join(str(int(d)) for d in rng.integers(0, 10, size=5))
    last4 = "".join(str(int(d)) for d in rng.integers(0, 10, size=4))
    return Card(f"fp_{token(seed, kind, n, 20)}", bin_, last4, country)


def new_device(seed: int, kind: str, n: int) -> str:
    return f"dev_{token(seed, kind, n)}"


def draw_taste(rng: np.random.Generator, demand: np.ndarray) -> np.ndarray:
    """A preference over categories concentrated on 1-3 favourites (90 % of the mass).

    Favourites are drawn in proportion to ``demand``; the remaining 10 % is spread thinly.
    """
    n = len(demand)
    k = min(n, int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.20])))
    favourites = rng.choice(n, size=k, replace=False, p=demand / demand.sum())
    taste = 0.10 * rng.dirichlet(np.ones(n))
    taste[favourites] += 0.90 * rng.dirichlet(np.full(k, 2.0))
    return np.asarray(taste / taste.sum())


def _segment(sensitivity: float) -> str:
    if sensitivity > 0.6:
        return "bargain_hunter"
    return "premium" if sensitivity < 0.2 else "mainstream"


def generate_customers(seed: int, n: int, window: Window, demand: np.ndarray) -> list[Customer]:
    """``n`` customers, numbered ``cus_000001``… in order of sign-up.

    About 70 % signed up before the history window, the rest during it.
    """
    rng = stage_rng(seed, "customers")
    before = rng.random(n) < 0.7
    age = np.minimum(rng.exponential(250 * DAY, size=n), 1000 * DAY) + HOUR
    during = rng.uniform(0, max(window.seconds - 6 * HOUR, 1), size=n)
    created = np.where(before, -age, during).astype(np.int64)
    order = np.argsort(created, kind="stable")
    customers = []
    for number, src in enumerate(order, start=1):
        country = str(rng.choice(COUNTRIES, p=COUNTRY_WEIGHTS))
        first, last = pick(rng, FIRST_NAMES[country]), pick(rng, LAST_NAMES[country])
        email = f"{first}.{last.replace(' ', '')}{number}@{pick(rng, DOMAINS)}".lower()
        sensitivity = float(rng.beta(2.0, 3.0))
        cards = tuple(
            new_card(
                rng,
                seed,
                "card",
                number * 4 + k,
                country if rng.random() < 0.95 else other_country(rng, country),
            )
            for k in range(1 if rng.random() < 0.8 else 2)
        )
        devices = tuple(
            new_device(seed, "device", number * 4 + k)
            for k in range(1 if rng.random() < 0.6 else 2)
        )
        customers.append(
            Customer(
                index=number - 1,
                id=f"cus_{number:06d}",
                email=email,
                name=f"{first} {last}",
                country=country,
                created=int(created[src]),
                taste=draw_taste(rng, demand),
                sensitivity=sensitivity,
                activity=float(rng.lognormal(-0.18, 0.6)),
                app_user=bool(rng.random() < 0.35),
                method=str(rng.choice(METHODS, p=METHOD_SHARE)),
                cards=cards,
                devices=devices,
                home_ip=ip_address(rng, country),
                segment=_segment(sensitivity),
            )
        )
    return customers
