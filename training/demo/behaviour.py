"""Browsing sessions: views, searches, carts; some carts turn into checkouts.

What a customer looks at mixes their latent taste (which categories, how price-sensitive) with
the catalogue's power-law popularity, and consecutive views often stay in the same
sub-category. So tastes are learnable from history, while popularity remains a fair baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.demo.catalogue import Catalogue
from training.demo.common import COUNTRIES, DAY, HOUR, WEB_CHANNEL, Window, ip_address, stage_rng
from training.demo.customers import METHODS, Card, Customer

TASTE_WEIGHT = 0.8  # share of views driven by the customer's taste (the rest: popularity)
SAME_LEAF = 0.4  # chance the next view stays in the previous item's sub-category
# Relative session starts per UTC hour: quiet nights, lunch bump, evening peak.
HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 9, 8, 7, 7, 8, 9, 11, 12, 12, 10, 7, 4], dtype=float
)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One payment attempt, ``offset`` seconds after the order was placed."""

    offset: int
    status: str  # authorized | declined
    method: str
    card: Card | None
    device_id: str | None
    ip: str


@dataclass
class Checkout:
    """A cart that became one order per seller (lines: product index, qty)."""

    customer: Customer
    ts: int
    channel_id: str
    lines: list[tuple[int, int]]
    shipping_country: str
    pickup: bool
    attempts: list[Attempt]
    pattern: str | None = None  # fraud pattern name; None for legitimate checkouts


@dataclass
class Session:
    customer_id: str
    start: int
    # (ts, type, product index or None, search query or None)
    events: list[tuple[int, str, int | None, str | None]] = field(default_factory=list)
    channel: str | None = None  # the storefront channel: the checkout's, if it led to one


def browsing_channel(rng: np.random.Generator, customer: Customer) -> str:
    """Where a customer browses: the app for most sessions of app users, else the web shop of
    their country (as checkouts choose)."""
    return "app" if customer.app_user and rng.random() < 0.7 else WEB_CHANNEL[customer.country]


@dataclass(frozen=True)
class Browsing:
    sessions: list[Session]
    checkouts: list[Checkout]


def customer_weights(cat: Catalogue, customer: Customer) -> np.ndarray:
    """Probability of each product being what this customer looks at next (sums to 1)."""
    ratio = cat.list_price / cat.leaf_median
    adjusted = cat.popularity * np.power(ratio, -3.0 * (customer.sensitivity - 0.3))
    per_top = np.bincount(cat.top, weights=adjusted, minlength=len(cat.tops))
    taste = np.where(per_top > 0, customer.taste, 0.0)
    taste = taste / taste.sum()
    within = np.divide(
        adjusted, per_top[cat.top], out=np.zeros_like(adjusted), where=per_top[cat.top] > 0
    )
    weights = TASTE_WEIGHT * taste[cat.top] * within + (1 - TASTE_WEIGHT) * cat.popularity
    return np.asarray(weights / weights.sum())


def session_starts(rng: np.random.Generator, lo: float, hi: float, k: int) -> np.ndarray:
    """``k`` sorted start times in ``[lo, hi)`` following the daily rhythm."""
    raw = rng.uniform(lo, hi, size=k)
    hours = rng.choice(24, size=k, p=HOUR_WEIGHTS)
    t = np.floor(raw / DAY) * DAY + hours * HOUR + rng.uniform(0, HOUR, size=k)
    bad = (t < lo) | (t >= hi)
    t[bad] = raw[bad]
    return np.sort(t.astype(np.int64))


class _LeafSampler:
    """Popularity-weighted draws inside one sub-category."""

    def __init__(self, cat: Catalogue) -> None:
        self.members: list[np.ndarray] = []
        self.cdfs: list[np.ndarray] = []
        for leaf in range(len(cat.leaves)):
            idx = np.flatnonzero((cat.leaf == leaf) & (cat.popularity > 0))
            self.members.append(idx)
            self.cdfs.append(np.cumsum(cat.popularity[idx]) / max(cat.popularity[idx].sum(), 1e-12))

    def draw(self, rng: np.random.Generator, leaf: int) -> int | None:
        if len(self.members[leaf]) == 0:
            return None
        pos = int(np.searchsorted(self.cdfs[leaf], rng.random(), side="right"))
        return int(self.members[leaf][min(pos, len(self.members[leaf]) - 1)])


def _gap(rng: np.random.Generator) -> int:
    return 5 + int(rng.exponential(40))


def legit_attempts(rng: np.random.Generator, customer: Customer, channel: str) -> list[Attempt]:
    """How an ordinary customer pays: usual method, own card and device, mostly the home IP."""
    method = customer.method if rng.random() < 0.85 else METHODS[int(rng.integers(3))]
    card = customer.cards[int(rng.integers(len(customer.cards)))] if method == "card" else None
    device = customer.devices[0 if channel == "app" else int(rng.integers(len(customer.devices)))]
    ip = customer.home_ip if rng.random() < 0.75 else ip_address(rng, customer.country)
    first = 10 + int(rng.integers(0, 60))
    if rng.random() < 0.015:  # never pays (abandons at the payment step)
        return []
    if rng.random() < 0.03:  # declined first, then usually retries
        attempts = [Attempt(first, "declined", method, card, device, ip)]
        if rng.random() < 0.75:
            retry = customer.cards[-1] if method == "card" else None
            attempts.append(
                Attempt(
                    first + 30 + int(rng.integers(0, 270)), "authorized", method, retry, device, ip
                )
            )
        return attempts
    return [Attempt(first, "authorized", method, card, device, ip)]


def simulate_browsing(
    seed: int,
    customers: list[Customer],
    cat: Catalogue,
    window: Window,
    sessions_per_customer: float,
) -> Browsing:
    rng = stage_rng(seed, "behaviour")
    channels = stage_rng(seed, "channels")  # its own stream: browsing draws stay as they were
    leaves = _LeafSampler(cat)
    sessions: list[Session] = []
    checkouts: list[Checkout] = []
    hi = window.seconds - HOUR
    for customer in customers:
        lo = max(customer.created + 60, 0)
        if lo >= hi:
            continue
        expected = sessions_per_customer * customer.activity * (hi - lo) / window.seconds
        n = int(rng.poisson(expected))
        if n == 0:
            continue
        cdf = np.cumsum(customer_weights(cat, customer))
        cdf /= cdf[-1]
        for start in session_starts(rng, lo, hi, n):
            session, checkout = _session(
                rng, customer, cat, leaves, cdf, int(start), window.seconds - 600
            )
            session.events[:] = [e for e in session.events if e[0] < window.seconds]
            browsing = browsing_channel(channels, customer)
            session.channel = checkout.channel_id if checkout is not None else browsing
            sessions.append(session)
            if checkout is not None:
                checkouts.append(checkout)
    return Browsing(sessions, checkouts)


def _session(
    rng: np.random.Generator,
    customer: Customer,
    cat: Catalogue,
    leaves: _LeafSampler,
    cdf: np.ndarray,
    start: int,
    limit: int,
) -> tuple[Session, Checkout | None]:
    session = Session(customer.id, start)
    events = session.events
    n_views = min(int(rng.geometric(0.3)), 12)
    draws = np.minimum(np.searchsorted(cdf, rng.random(n_views), side="right"), len(cdf) - 1)
    items = [int(draws[0])]
    for k in range(1, n_views):
        related = leaves.draw(rng, int(cat.leaf[items[-1]])) if rng.random() < SAME_LEAF else None
        items.append(int(draws[k]) if related is None else related)
    t = start
    if rng.random() < 0.3:
        events.append((t, "search", None, cat.leaves[int(cat.leaf[items[0]])].split("/")[1]))
        t += _gap(rng)
    cart: list[int] = []
    for item in items:
        events.append((t, "view", item, None))
        t += _gap(rng)
        cheapness = min(1.0, float(cat.leaf_median[item] / cat.list_price[item]))
        if item not in cart and rng.random() < 0.25 * cheapness**customer.sensitivity:
            events.append((t, "add_to_cart", item, None))
            cart.append(item)
            t += _gap(rng)
    for item in list(cart):
        if rng.random() < 0.1:
            events.append((t, "remove_from_cart", item, None))
            cart.remove(item)
            t += _gap(rng)
    value = float(sum(cat.list_price[i] for i in cart))
    if not cart or rng.random() >= 0.6 - 0.3 * customer.sensitivity * (value > 150):
        return session, None
    t += 30 + int(rng.integers(0, 120))
    if t >= limit:  # the history ends before this customer gets to pay
        return session, None
    lines = []
    for item in cart:
        bulky = cat.tops[int(cat.top[item])] in ("grocery", "books")
        qty = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1] if bulky else [0.87, 0.1, 0.03]))
        lines.append((item, qty))
        events.append((t, "purchase", item, None))
    channel = "app" if customer.app_user and rng.random() < 0.7 else WEB_CHANNEL[customer.country]
    ship = customer.country if rng.random() < 0.97 else COUNTRIES[int(rng.integers(4))]
    checkout = Checkout(
        customer,
        t,
        channel,
        lines,
        ship,
        bool(rng.random() < 0.12),
        legit_attempts(rng, customer, channel),
    )
    return session, checkout


def interaction_rows(
    sessions: list[Session], cat: Catalogue, window: Window
) -> list[dict[str, Any]]:
    """Rows of ``interactions``; sessions ``ses_…`` and events ``ev_…`` numbered in time order."""
    ordered = sorted(sessions, key=lambda s: (s.start, s.customer_id))
    flat: list[tuple[int, int, int, str, str, int | None, str | None, str | None]] = []
    for s_no, s in enumerate(ordered, start=1):
        for seq, (ts, kind, item, query) in enumerate(s.events):
            flat.append((ts, s_no, seq, s.customer_id, kind, item, query, s.channel))
    flat.sort(key=lambda e: (e[0], e[1], e[2]))
    return [
        {
            "event_id": f"ev_{n:08d}",
            "type": kind,
            "customer_id": customer_id,
            "session_id": f"ses_{s_no:07d}",
            "sku": None if item is None else cat.skus[item],
            "query": query,
            "recommendation_id": None,
            "ts": window.at(ts),
            "channel_id": channel,
        }
        for n, (ts, s_no, _seq, customer_id, kind, item, query, channel) in enumerate(flat, start=1)
    ]
