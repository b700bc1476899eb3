"""Warehouses (distribution centres and click-and-collect stores) and their stock levels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from training.demo.catalogue import Catalogue
from training.demo.common import Window, stage_rng

DC_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "AT", "BE")
STORE_CITIES = (
    ("Berlin", "DE"),
    ("Paris", "FR"),
    ("Amsterdam", "NL"),
    ("Madrid", "ES"),
    ("Munich", "DE"),
    ("Lyon", "FR"),
    ("Rotterdam", "NL"),
    ("Barcelona", "ES"),
)


@dataclass(frozen=True, slots=True)
class Warehouse:
    id: str
    name: str
    country: str
    click_and_collect: bool


def build_warehouses(n: int) -> list[Warehouse]:
    """Distribution centres in a few countries; about a third are click-and-collect stores."""
    n_stores = 0 if n < 2 else max(1, n // 3)
    result: list[Warehouse] = []
    for i in range(n - n_stores):
        country = DC_COUNTRIES[i % len(DC_COUNTRIES)]
        suffix = f" {i // len(DC_COUNTRIES) + 1}" if i >= len(DC_COUNTRIES) else ""
        result.append(
            Warehouse(
                f"wh_{len(result) + 1:02d}",
                f"Distribution centre {country}{suffix}",
                country,
                False,
            )
        )
    for i in range(n_stores):
        city, country = STORE_CITIES[i % len(STORE_CITIES)]
        suffix = f" {i // len(STORE_CITIES) + 1}" if i >= len(STORE_CITIES) else ""
        result.append(
            Warehouse(f"wh_{len(result) + 1:02d}", f"Store {city}{suffix}", country, True)
        )
    return result


def warehouse_rows(warehouses: list[Warehouse], window: Window) -> list[dict[str, Any]]:
    created = window.start - timedelta(days=400)
    return [
        {
            "id": w.id,
            "name": w.name,
            "country": w.country,
            "click_and_collect": w.click_and_collect,
            "created_at": created,
        }
        for w in warehouses
    ]


def stock_levels(
    seed: int, catalogue: Catalogue, warehouses: list[Warehouse]
) -> dict[tuple[str, int], int]:
    """Free (unallocated) units at the end of history per carried (warehouse id, product index).

    Distribution centres carry nearly everything (the first carries all); stores carry the
    popular part of the range. Popular items have more stock; some rows are sold out (0).
    """
    rng = stage_rng(seed, "stock")
    n = len(catalogue)
    rel = catalogue.popularity / max(float(catalogue.popularity.max()), 1e-12)
    order = np.argsort(-catalogue.popularity, kind="stable")
    top_rank = np.empty(n, dtype=np.int64)
    top_rank[order] = np.arange(n)
    levels: dict[tuple[str, int], int] = {}
    for w_no, w in enumerate(warehouses):
        for i in range(n):
            if w.click_and_collect:
                carried = top_rank[i] < max(1, int(0.4 * n)) and rng.random() < 0.85
                scale = 12.0
            else:
                carried = w_no == 0 or rng.random() < 0.9
                scale = 150.0
            if not carried:
                continue
            sold_out = rng.random() < 0.07 or not catalogue.rows[i]["active"]
            level = 0 if sold_out else int(rng.poisson(2 + scale * np.sqrt(rel[i])))
            levels[(w.id, i)] = level
    return levels
