"""What the load generators read of the demo store before they start."""

from __future__ import annotations

import httpx


def active_skus(base: str, headers: dict[str, str]) -> list[str]:
    """Every active SKU (an inactive one's quote is a 422), paging through ``/v1/products``
    (a channel's secret key, or the admin token, in ``headers``)."""
    skus: list[str] = []
    cursor: str | None = None
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        while True:
            params: dict[str, str | int] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/products", params=params).raise_for_status().json()
            skus += [p["sku"] for p in page["items"] if p.get("active", True)]
            cursor = page.get("next_cursor")
            if not cursor:
                return skus
