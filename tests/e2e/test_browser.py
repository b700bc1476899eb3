"""Browser tests: Debian's Chromium, headless, driven by Playwright against the running Serve app.

The demo storefront's widgets render recommendations with live prices, and a shopper's clicks
and add-to-carts arrive as events carrying the recommendation's id (the widget's stats move);
the dashboard draws its charts from the seeded store's data. Screenshots go to ``reports/``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CARTWISE_CHROMIUM", "/usr/bin/chromium")
REPORTS = Path(__file__).resolve().parents[2] / "reports"
READY = 20_000  # ms
SEEDED = re.compile(r"^SKU-\d{5}$")  # the demo catalogue's SKUs (other tests add their own)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium")
    REPORTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _stats(http: httpx.Client, admin: dict[str, str], widget: str) -> dict[str, Any]:
    res = http.get(f"/v1/widgets/{widget}/stats", headers=admin)
    assert res.status_code == 200, res.text
    return res.json()


def _events_of(http: httpx.Client, admin: dict[str, str], widget: str, key: str, want: int) -> int:
    """Wait for the widget's ``key`` count to reach ``want`` (events are recorded by the
    request that carried them; the recommendation log is written behind its request)."""
    deadline = time.monotonic() + 10
    while True:
        got = int(_stats(http, admin, widget)[key])
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_widget_renders_priced_recommendations_and_sends_its_clicks(
    page: Any, api_url: str, http: httpx.Client, admin: dict[str, str]
) -> None:
    before = _stats(http, admin, "home")
    page.goto(f"{api_url}/demo")
    home = page.locator('#recs-home[data-cartwise-state="ready"]')
    home.wait_for(timeout=READY)
    cards = home.locator(".cw-card")
    assert cards.count() >= 1
    first = cards.first
    sku = first.get_attribute("data-sku")
    assert sku
    assert first.locator(".cw-price").inner_text().strip()
    rec_id = home.get_attribute("data-recommendation-id")
    assert rec_id
    # the live price is this shopper's quote
    customer = page.locator('select[name="customer"]').input_value()
    quote = http.post("/v1/prices/quote", json={"skus": [sku], "customer_id": customer})
    assert quote.status_code == 200, quote.text
    page.locator('#recs-trending[data-cartwise-state="ready"]').wait_for(timeout=READY)
    page.screenshot(path=str(REPORTS / "browser-demo.png"), full_page=True)

    # add to cart from the widget, then click through to the product page
    first.locator(".cw-add").click()
    page.locator(".cw-add:disabled").first.wait_for(timeout=READY)
    with page.expect_navigation(timeout=READY):
        cards.nth(1 if cards.count() > 1 else 0).locator(".cw-title").click()
    assert "/demo/products/" in page.url
    page.locator('#recs-similar[data-cartwise-state="ready"]').wait_for(timeout=READY)
    page.screenshot(path=str(REPORTS / "browser-product.png"), full_page=True)

    assert _events_of(http, admin, "home", "add_to_carts", before["add_to_carts"] + 1) == (
        before["add_to_carts"] + 1
    )
    assert _events_of(http, admin, "home", "clicks", before["clicks"] + 1) == before["clicks"] + 1
    assert _stats(http, admin, "home")["impressions"] > before["impressions"]


def test_product_page_sends_a_view_and_its_add_to_cart(
    page: Any, api_url: str, http: httpx.Client, admin: dict[str, str]
) -> None:
    products = http.get("/v1/products", params={"limit": 200}).json()["items"]
    sku = next(p["sku"] for p in products if SEEDED.match(p["sku"]))  # one the model knows
    page.goto(f"{api_url}/demo/products/{sku}?customer=anonymous")
    page.locator('#recs-similar[data-cartwise-state="ready"]').wait_for(timeout=READY)
    page.locator("#add-to-cart").click()
    page.locator("#cart-note").wait_for(state="visible", timeout=READY)
    session = page.evaluate("window.cartwise.sessionId")
    assert session.startswith("s_")
    deadline = time.monotonic() + 10
    while True:  # the view was sent on load, the add-to-cart on the click
        res = http.get(f"/v1/features/session/{session}", headers=admin)
        assert res.status_code == 200, res.text
        features = res.json()["views"]["session_activity"]["features"]
        if features["session_activity.events_1h"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert features["session_activity.events_1h"] == 2.0
    assert features["session_activity.skus_1h"] == 1.0


def test_dashboard_draws_charts_from_the_store(page: Any, api_url: str, http: httpx.Client) -> None:
    # the seeded history was never scored: a checkout scores one transaction
    scored = http.post(
        "/v1/fraud/score",
        json={
            "transaction_id": "tx-dashboard-1",
            "customer_id": "dash-1",
            "amount": 42.5,
            "currency": "EUR",
        },
    )
    assert scored.status_code == 200, scored.text
    page.goto(f"{api_url}/dashboard#token={ADMIN_TOKEN}")
    page.locator('#board[data-state="ready"]').wait_for(timeout=READY)
    assert "#token" not in page.url  # the token leaves the address bar
    tiles = page.locator("#kpis .tile")
    assert tiles.count() >= 8
    orders = tiles.filter(has_text="Orders").locator("strong").inner_text()
    assert int(orders.replace(",", "").replace("\u202f", "")) > 0
    assert page.locator("#chart-revenue svg rect.bar").count() > 0
    assert page.locator("#chart-funnel svg rect.bar").count() == 3
    assert page.locator("#chart-fraud svg rect.bar").count() == 4
    page.locator('#latency[data-state="ready"]').wait_for(timeout=READY)
    assert page.locator("#latency tbody tr").count() >= 1
    page.screenshot(path=str(REPORTS / "browser-dashboard.png"), full_page=True)


def test_dashboard_review_queue_approves_and_refuses(
    page: Any, api_url: str, http: httpx.Client
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rule = http.post(
        "/v1/fraud/rules",
        headers=admin,
        json={
            "name": "review dashboard shoppers",
            "expression": ":customer_id: in ('dash-review-1', 'dash-review-2')",
            "action": "review",
        },
    )
    assert rule.status_code == 201, rule.text
    try:
        ids = []
        for n in (1, 2):
            body = {
                "transaction_id": f"tx-dash-review-{n}-{time.time_ns()}",
                "customer_id": f"dash-review-{n}",
                "amount": 120 + n,
                "currency": "EUR",
            }
            scored = http.post("/v1/fraud/score", json=body).json()
            assert scored["outcome"] == "review", scored
            ids.append(scored["decision_id"])
        page.goto(f"{api_url}/dashboard#token={ADMIN_TOKEN}")
        page.locator('#reviews[data-state="ready"]').wait_for(timeout=READY)
        first, second = (page.locator(f'#reviews tr[data-decision="{i}"]') for i in ids)
        assert "review dashboard shoppers" in first.inner_text()
        page.screenshot(path=str(REPORTS / "browser-dashboard-reviews.png"), full_page=True)
        first.locator("button.approve").click()
        first.wait_for(state="detached", timeout=READY)
        second.locator("button.refuse").click()
        second.wait_for(state="detached", timeout=READY)
        done = http.get(
            "/v1/fraud/reviews", headers=admin, params={"status": "resolved", "limit": 500}
        ).json()
        verdicts = {r["decision_id"]: r["resolution"] for r in done["items"]}
        assert (verdicts.get(ids[0]), verdicts.get(ids[1])) == ("approve", "refuse")
    finally:
        http.delete(f"/v1/fraud/rules/{rule.json()['id']}", headers=admin)


def test_dashboard_asks_for_the_token_and_refuses_a_wrong_one(page: Any, api_url: str) -> None:
    page.goto(f"{api_url}/dashboard")
    page.locator("#login").wait_for(state="visible", timeout=READY)
    page.fill("#token", "not-the-token")
    page.click("#login button")
    page.locator("#login-error").wait_for(state="visible", timeout=READY)
    assert "refused" in page.locator("#login-error").inner_text()
    assert page.locator("#board").is_hidden()
