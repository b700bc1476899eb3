"""The store's fixed parts: channels, merchants, categories, brands and products.

Products get a latent **popularity** that follows a power law (Zipf weights over a random
ranking), which later drives browsing, buying and stock levels. It is not stored anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from training.demo.common import DAY, Window, pick, price, stage_rng
from training.demo.vocabulary import (
    COLORS,
    LEGAL,
    MERCHANT_KINDS,
    MERCHANT_WORDS,
    MODELS,
    SYLLABLES,
    TAXONOMY,
    TOP_DEMAND,
)

ZIPF_EXPONENT = 1.1
FIRST_PARTY_SHARE = 0.55  # products the store sells itself (no merchant)


@dataclass(frozen=True)
class Catalogue:
    """Products as parallel arrays (index = product number - 1) plus their table rows."""

    tops: tuple[str, ...]
    leaves: tuple[str, ...]  # "top/sub"
    leaf_top: np.ndarray  # leaf index -> top index
    skus: tuple[str, ...]
    leaf: np.ndarray  # product -> leaf index
    top: np.ndarray  # product -> top index
    list_price: np.ndarray  # float EUR
    leaf_median: np.ndarray  # product -> median price of its leaf
    popularity: np.ndarray  # power-law weights, sum 1, 0 for products nobody can see
    seller: tuple[str | None, ...]  # merchant id, None = sold by the store itself
    rows: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.skus)


def zipf_weights(rng: np.random.Generator, n: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Power-law weights over a random ranking of ``n`` items (sum 1)."""
    ranks = rng.permutation(n)
    weights = 1.0 / np.power(ranks + 1.0, exponent)
    return np.asarray(weights / weights.sum())


def build_channels(window: Window) -> list[dict[str, Any]]:
    created = window.start - timedelta(days=730)
    specs = [
        ("web-de", "Web shop Germany", "DE"),
        ("web-fr", "Web shop France", "FR"),
        ("web-nl", "Web shop Netherlands", "NL"),
        ("web-es", "Web shop Spain", "ES"),
        ("app", "Mobile app", None),
    ]
    return [
        {"id": i, "name": n, "currency": "EUR", "country": c, "created_at": created}
        for i, n, c in specs
    ]


def build_merchants(seed: int, n: int, window: Window) -> list[dict[str, Any]]:
    rng = stage_rng(seed, "merchants")
    rows = []
    for i in range(1, n + 1):
        country = pick(rng, ("DE", "DE", "FR", "NL", "ES"))
        name = f"{pick(rng, MERCHANT_WORDS)} {pick(rng, MERCHANT_KINDS)} {LEGAL[country]}"
        created = window.start - timedelta(days=int(rng.integers(30, 900)))
        rows.append({"id": f"mer_{i:04d}", "name": name, "country": country, "created_at": created})
    return rows


def _brands(rng: np.random.Generator) -> dict[str, list[str]]:
    seen: set[str] = set()
    brands: dict[str, list[str]] = {}
    for top in TAXONOMY:
        names: list[str] = []
        target = int(rng.integers(4, 8))
        while len(names) < target:
            name = "".join(pick(rng, SYLLABLES) for _ in range(int(rng.integers(2, 4))))
            if name.capitalize() not in seen:
                seen.add(name.capitalize())
                names.append(name.capitalize())
        brands[top] = names
    return brands


def _attributes(rng: np.random.Generator, top: str, sub: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if top in ("electronics", "fashion", "home", "sports"):
        attrs["color"] = pick(rng, COLORS)
    if top == "electronics" and sub in ("phones", "tablets", "laptops"):
        attrs["storage_gb"] = int(pick(rng, ("64", "128", "256", "512")))
    if top == "electronics":
        attrs["warranty_years"] = int(rng.integers(1, 4))
    if top == "fashion":
        attrs["size"] = (
            pick(rng, ("38", "40", "42", "44"))
            if sub == "shoes"
            else pick(rng, ("XS", "S", "M", "L", "XL"))
        )
        attrs["material"] = pick(rng, ("cotton", "wool", "polyester", "leather", "linen"))
    if top in ("home", "sports"):
        attrs["material"] = pick(rng, ("wood", "metal", "glass", "ceramic", "cotton", "nylon"))
    if top == "beauty":
        attrs["volume_ml"] = int(pick(rng, ("15", "30", "50", "100")))
    if top == "toys":
        attrs["age_min"] = int(pick(rng, ("3", "6", "8", "12")))
    if top == "books":
        attrs["format"] = pick(rng, ("paperback", "hardcover"))
        attrs["language"] = pick(rng, ("en", "de", "fr", "nl", "es"))
        attrs["pages"] = int(rng.integers(60, 700))
    if top == "grocery":
        attrs["weight_g"] = int(pick(rng, ("100", "250", "500", "1000")))
        attrs["organic"] = bool(rng.random() < 0.3)
    return attrs


def _shop_price(value: float) -> float:
    """Round like a shop does: x.99 above 5 EUR, to 0.49/0.99 below."""
    if value >= 5:
        return max(float(np.floor(value)) + 0.99, 0.99)
    return float(np.floor(value * 2) / 2 + 0.49)


def build_catalogue(
    seed: int, n_products: int, merchant_ids: list[str], window: Window
) -> Catalogue:
    rng = stage_rng(seed, "catalogue")
    tops = tuple(TAXONOMY)
    leaves = tuple(f"{t}/{s}" for t in tops for s in TAXONOMY[t])
    leaf_top = np.array([tops.index(leaf.split("/")[0]) for leaf in leaves])
    medians = np.array([TAXONOMY[leaf.split("/")[0]][leaf.split("/")[1]][0] for leaf in leaves])
    # every leaf gets products (when there are enough), bigger leaves where demand is larger
    leaf_weight = TOP_DEMAND[leaf_top] * rng.dirichlet(np.full(len(leaves), 3.0))
    leaf_weight /= leaf_weight.sum()
    base = np.arange(min(n_products, len(leaves)))
    extra = rng.choice(len(leaves), size=n_products - len(base), p=leaf_weight)
    leaf = rng.permutation(np.concatenate([base, extra]).astype(np.int64))
    brands = _brands(rng)
    brand_premium = {b: float(rng.lognormal(0.0, 0.25)) for bs in brands.values() for b in bs}
    popularity = zipf_weights(rng, n_products)
    merchant_weight = zipf_weights(rng, len(merchant_ids), 1.0) if merchant_ids else None

    rows: list[dict[str, Any]] = []
    prices = np.zeros(n_products)
    sellers: list[str | None] = []
    visible = np.ones(n_products, dtype=bool)
    for i in range(n_products):
        top, sub = leaves[leaf[i]].split("/")
        median, nouns = TAXONOMY[top][sub]
        brand = pick(rng, brands[top])
        list_price = _shop_price(median * brand_premium[brand] * float(rng.lognormal(0.0, 0.45)))
        prices[i] = list_price
        cost = list_price * float(rng.uniform(0.40, 0.75))
        has_map = rng.random() < (0.5 if top == "electronics" else 0.08)
        map_price = price(list_price * float(rng.uniform(0.85, 0.95))) if has_map else None
        seller: str | None = None
        attrs = _attributes(rng, top, sub)
        if merchant_weight is not None and rng.random() > FIRST_PARTY_SHARE:
            seller = merchant_ids[int(rng.choice(len(merchant_ids), p=merchant_weight))]
            attrs["merchant_id"] = seller
        sellers.append(seller)
        state = rng.random()
        active, hidden = state >= 0.03, 0.03 <= state < 0.05
        visible[i] = active and not hidden
        created = window.start - timedelta(seconds=int(rng.integers(30 * DAY, 720 * DAY)))
        title = f"{brand} {pick(rng, nouns)} {pick(rng, MODELS)}"
        if "color" in attrs:
            title += f", {attrs['color']}"
        rows.append(
            {
                "sku": f"SKU-{i + 1:05d}",
                "title": title,
                "category": f"{top}/{sub}",
                "brand": brand,
                "attributes": attrs,
                "cost": price(cost),
                "list_price": price(list_price),
                "map_price": map_price,
                "currency": "EUR",
                "active": bool(active),
                "hidden": bool(hidden),
                "created_at": created,
                "updated_at": created,
            }
        )
    if not visible.any():
        visible[:] = True
        for row in rows:
            row["active"], row["hidden"] = True, False
    shown = np.where(visible, popularity, 0.0)
    return Catalogue(
        tops=tops,
        leaves=leaves,
        leaf_top=leaf_top,
        skus=tuple(r["sku"] for r in rows),
        leaf=leaf,
        top=leaf_top[leaf],
        list_price=prices,
        leaf_median=medians[leaf],
        popularity=shown / shown.sum(),
        seller=tuple(sellers),
        rows=tuple(rows),
    )
