"""Labelled fraud: four patterns injected as checkouts next to the legitimate ones.

- ``card_testing``: a fresh account fires many small payments on one new card from one device
  and IP within minutes; most are declined, a few go through.
- ``stolen_card``: an existing customer pays with a new card, several times their usual basket,
  shipped to a country that is neither theirs nor the card's.
- ``account_takeover``: an existing customer's account (and saved card) used from a new device
  and IP for a high-value order shipped abroad.
- ``compromised_merchant``: for one or two marketplace merchants, a window of days in which
  most of their transactions are fraudulent.

Legitimate payments dominate: the patterns share a budget of about ``fraud_rate`` of all
payments (each pattern appears at least once, the first time early enough in the history
for its chargebacks to be known).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from training.demo.behaviour import Attempt, Checkout, Session
from training.demo.catalogue import Catalogue
from training.demo.common import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DAY,
    HOUR,
    WEB_CHANNEL,
    Window,
    ip_address,
    other_country,
    stage_rng,
    token,
)
from training.demo.customers import Card, Customer, new_card, new_device

PATTERNS = ("card_testing", "stolen_card", "account_takeover", "compromised_merchant")
SHARES = {
    "card_testing": 0.35,
    "stolen_card": 0.25,
    "account_takeover": 0.15,
    "compromised_merchant": 0.25,
}


@dataclass(frozen=True)
class FraudPlan:
    accounts: list[Customer]  # accounts the fraudsters opened
    checkouts: list[Checkout]
    sessions: list[Session]
    merchants: dict[str, tuple[int, int]]  # compromised merchant -> (window start, end) offsets


def legit_payment_count(checkouts: list[Checkout], cat: Catalogue) -> int:
    return sum(len({cat.seller[i] for i, _ in c.lines}) * len(c.attempts) for c in checkouts)


class _Fraudsters:
    def __init__(
        self,
        seed: int,
        customers: list[Customer],
        cat: Catalogue,
        legit: list[Checkout],
        window: Window,
    ) -> None:
        self.seed, self.cat, self.customers = seed, cat, customers
        self.rng = stage_rng(seed, "fraud")
        self.hi = window.seconds - 2 * HOUR
        self.plan = FraudPlan([], [], [], {})
        self.counter = Counter[str]()
        visible = np.flatnonzero(cat.popularity > 0)
        self.visible = visible
        cheap = visible[cat.list_price[visible] <= 15]
        self.cheap = cheap if len(cheap) else visible[np.argsort(cat.list_price[visible])[:5]]
        history: dict[int, list[tuple[int, float]]] = {}
        for c in legit:
            value = sum(float(cat.list_price[i]) * q for i, q in c.lines)
            history.setdefault(c.customer.index, []).append((c.ts, value))
        self.history = {k: sorted(v) for k, v in history.items()}
        self.by_first = sorted(self.history, key=lambda k: (self.history[k][0][0], k))
        self.first_ts = np.array([self.history[k][0][0] for k in self.by_first], dtype=np.int64)
        values = [v for h in self.history.values() for _, v in h]
        self.median_basket = float(np.median(values)) if values else 50.0

    # --- building blocks ---------------------------------------------------------------------
    def when(self, k: int) -> int:
        """Time of the k-th instance of a pattern (the first one early in the history)."""
        lo, hi = (0.03, 0.2) if k == 0 else (0.03, 1.0)
        return int(self.rng.uniform(lo, hi) * self.hi)

    def _n(self, kind: str) -> int:
        self.counter[kind] += 1
        return self.counter[kind]

    def account(self, t: int) -> Customer:
        rng = self.rng
        number = len(self.customers) + len(self.plan.accounts) + 1
        country = str(rng.choice(COUNTRIES, p=COUNTRY_WEIGHTS))
        handle = token(self.seed, "fraud-account", number, 10)
        acct = Customer(
            index=number - 1,
            id=f"cus_{number:06d}",
            email=f"{handle}@inbox.example",
            name=f"{handle[:5].capitalize()} {handle[5:].capitalize()}",
            country=country,
            created=t - int(rng.uniform(2, 30) * 60),
            taste=np.full(len(self.cat.tops), 1.0),
            sensitivity=0.0,
            activity=0.0,
            app_user=False,
            method="card",
            cards=(),
            devices=(),
            home_ip=ip_address(rng),
            segment="new",
        )
        self.plan.accounts.append(acct)
        return acct

    def card(self, country: str) -> Card:
        return new_card(self.rng, self.seed, "fraud-card", self._n("card"), country)

    def device(self) -> str:
        return new_device(self.seed, "fraud-device", self._n("device"))

    def victim(self, t: int) -> tuple[Customer, float, int]:
        """An existing customer with orders before ``t``, their usual basket value, and ``t``."""
        n = int(np.searchsorted(self.first_ts, t - HOUR))
        if n == 0:  # nobody has ordered yet: move to shortly after someone's first order
            n = min(10, len(self.by_first))
            t = min(int(self.first_ts[n - 1]) + int(self.rng.uniform(1, 48) * HOUR), self.hi)
        idx = self.by_first[int(self.rng.integers(n))]
        values = [v for ts, v in self.history[idx] if ts < t] or [self.median_basket]
        return self.customers[idx], float(np.mean(values)), t

    def basket(self, target: float, pool: np.ndarray | None = None) -> list[tuple[int, int]]:
        """One product worth about ``target`` EUR (qty > 1 only when nothing is that dear)."""
        pool = self.visible if pool is None else pool
        prices = self.cat.list_price[pool]
        near = pool[(prices >= 0.75 * target) & (prices <= 1.5 * target)]
        if len(near):
            w = self.cat.popularity[near] + 1e-9
            return [(int(self.rng.choice(near, p=w / w.sum())), 1)]
        dearest = int(pool[np.argmax(prices)])
        qty = int(np.clip(math.ceil(target / self.cat.list_price[dearest]), 1, 5))
        return [(dearest, qty)]

    def emit(
        self,
        customer: Customer,
        t: int,
        lines: list[tuple[int, int]],
        ship: str,
        attempts: list[Attempt],
        pattern: str,
        browse: int = 2,
    ) -> int:
        """The checkout plus the short session that led to it; returns its payment count."""
        channel = WEB_CHANNEL.get(customer.country, "web-de")
        session = Session(customer.id, t, channel=channel)
        extra = [int(i) for i in self.rng.choice(self.visible, size=browse)] if browse else []
        for item in extra + [i for i, _ in lines]:
            session.events.append((t, "view", item, None))
            t += 5 + int(self.rng.integers(0, 40))
        for i, _ in lines:
            session.events.append((t, "add_to_cart", i, None))
            t += 5 + int(self.rng.integers(0, 20))
        session.events += [(t, "purchase", i, None) for i, _ in lines]
        self.plan.sessions.append(session)
        self.plan.checkouts.append(
            Checkout(customer, t, channel, lines, ship, False, attempts, pattern)
        )
        return len(attempts)

    # --- patterns ----------------------------------------------------------------------------
    def card_testing(self, k: int) -> int:
        rng = self.rng
        t = self.when(k)
        acct = self.account(t)
        card, device, ip = (
            self.card(other_country(rng, acct.country)),
            self.device(),
            ip_address(rng),
        )
        tries: list[list[Attempt]] = []
        for _ in range(int(rng.integers(4, 8))):
            attempts, offset = [], 5
            for _ in range(int(rng.integers(2, 7))):
                offset += int(rng.integers(8, 40))
                ok = bool(rng.random() < 0.1)
                attempts.append(
                    Attempt(offset, "authorized" if ok else "declined", "card", card, device, ip)
                )
                if ok:
                    break
            tries.append(attempts)
        if not any(a.status == "authorized" for attempts in tries for a in attempts):
            last = tries[-1][-1]
            tries[-1][-1] = Attempt(last.offset, "authorized", "card", card, device, ip)
        for attempts in tries:
            item = int(self.cheap[int(rng.integers(len(self.cheap)))])
            self.emit(acct, t, [(item, 1)], acct.country, attempts, "card_testing", browse=0)
            t = self.plan.checkouts[-1].ts + attempts[-1].offset + int(rng.integers(10, 40))
        return sum(len(a) for a in tries)

    def stolen_card(self, k: int) -> int:
        rng = self.rng
        customer, usual, t = self.victim(self.when(k))
        card = self.card(other_country(rng, customer.country))
        ship = other_country(rng, customer.country, card.country)
        ip = customer.home_ip if rng.random() < 0.5 else ip_address(rng)
        attempts = [
            Attempt(
                15 + int(rng.integers(0, 60)), "authorized", "card", card, customer.devices[0], ip
            )
        ]
        if rng.random() < 0.3:
            attempts.insert(0, Attempt(8, "declined", "card", card, customer.devices[0], ip))
        target = max(usual * rng.uniform(3, 8), 120.0)
        return self.emit(customer, t, self.basket(target), ship, attempts, "stolen_card")

    def account_takeover(self, k: int) -> int:
        rng = self.rng
        customer, usual, t = self.victim(self.when(k))
        device, ip = self.device(), ip_address(rng, other_country(rng, customer.country))
        attempts = [
            Attempt(
                10 + int(rng.integers(0, 50)), "authorized", "card", customer.cards[0], device, ip
            )
        ]
        target = max(usual * rng.uniform(3, 6), 250.0)
        ship = other_country(rng, customer.country)
        return self.emit(
            customer, t, self.basket(target), ship, attempts, "account_takeover", browse=1
        )

    def compromised_merchant(self, budget: int, legit: list[Checkout], days: float) -> None:
        rng, cat = self.rng, self.cat
        volume = Counter(s for c in legit for s in {cat.seller[i] for i, _ in c.lines})
        listed = Counter(cat.seller[int(i)] for i in self.visible)
        candidates = sorted(
            (m for m in volume if m is not None and listed[m] >= 2), key=lambda m: (-volume[m], m)
        )
        if not candidates:
            return
        n_merchants = 1 if len(candidates) < 6 else int(rng.integers(1, 3))
        target = max(3, round(budget / n_merchants / 1.15))  # ~15 % retry after a decline
        # merchants small enough that the fraud outnumbers their trade in the shortest window
        small = [m for m in candidates if 1.5 * volume[m] / days <= 0.7 * target]
        pool = small[: max(n_merchants, (len(small) + 1) // 2)]
        if len(pool) < n_merchants:
            pool = candidates[-n_merchants:]
        chosen = rng.choice(pool, size=n_merchants, replace=False)
        for j, merchant in enumerate(str(m) for m in chosen):
            items = np.array([i for i in self.visible if cat.seller[int(i)] == merchant])
            rate = volume[merchant] / days
            # long enough for ~0.7 legit orders per fraudulent one: fraud is ~60 % of the trade
            length = float(np.clip(0.7 * target / max(rate, 0.1), 1.5, 7)) * DAY
            start = int(rng.uniform(0.05, 0.3 if j == 0 else 0.75) * self.hi)
            stop = int(min(start + length, self.hi))
            own = sum(
                1
                for c in legit
                if start <= c.ts < stop and any(cat.seller[i] == merchant for i, _ in c.lines)
            )
            self.plan.merchants[merchant] = (start, stop)
            weights = cat.list_price[items] * np.sqrt(cat.popularity[items])
            for t in np.sort(rng.uniform(start, stop, size=max(target, own + 1))):
                self._merchant_order(int(t), items, weights / weights.sum())

    def _merchant_order(self, t: int, items: np.ndarray, p: np.ndarray) -> int:
        rng = self.rng
        if rng.random() < 0.6:
            buyer, device = self.account(t), self.device()
        else:
            n = int(np.searchsorted(self.first_ts, t)) or len(self.by_first)
            buyer = self.customers[self.by_first[int(rng.integers(n))]]
            device = buyer.devices[0]
        card = self.card(str(rng.choice([buyer.country, other_country(rng, buyer.country)])))
        ip = ip_address(rng) if rng.random() < 0.5 else ip_address(rng, buyer.country)
        attempts = [Attempt(10 + int(rng.integers(0, 40)), "authorized", "card", card, device, ip)]
        if rng.random() < 0.15:
            attempts.insert(0, Attempt(6, "declined", "card", card, device, ip))
        ship = buyer.country if rng.random() < 0.5 else other_country(rng, buyer.country)
        lines = [(int(rng.choice(items, p=p)), 1 if rng.random() < 0.8 else 2)]
        return self.emit(buyer, t, lines, ship, attempts, "compromised_merchant", browse=1)


def plan_fraud(
    seed: int,
    customers: list[Customer],
    cat: Catalogue,
    legit: list[Checkout],
    window: Window,
    fraud_rate: float,
) -> FraudPlan:
    """Fraudulent checkouts worth about ``fraud_rate`` of all payments (none if it is 0)."""
    f = _Fraudsters(seed, customers, cat, legit, window)
    if fraud_rate <= 0 or not legit:
        return f.plan
    budget = fraud_rate / (1 - fraud_rate) * legit_payment_count(legit, cat)
    spent, k = 0, 0
    # bursts are coarse (~20 payments): stop at the one that lands nearest to the target
    while k == 0 or spent + 10 < SHARES["card_testing"] * budget:
        spent += f.card_testing(k)
        k += 1
    # the other patterns share what is left, in proportion to their shares
    left = max(budget - spent, 0.0) / (1 - SHARES["card_testing"])
    for pattern, make in (("stolen_card", f.stolen_card), ("account_takeover", f.account_takeover)):
        done, k = 0, 0
        while done < SHARES[pattern] * left - 0.5 or k < 2:
            done += make(k)
            k += 1
    f.compromised_merchant(
        round(SHARES["compromised_merchant"] * left), legit, window.seconds / DAY
    )
    return f.plan
