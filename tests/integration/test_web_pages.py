"""The storefront pages and the widget's card endpoint on a seeded store (SQLite, real Redis),
through the FastAPI app in-process: cards carry the shopper's quoted price and never the cost,
errors name their field, pages render the catalogue, and CORS admits only configured origins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.commerce.db import Database
from serving.api.app import create_app
from serving.bootstrap import bootstrap
from serving.settings import Settings
from training.demo.seed import SeedConfig, seed_store

pytestmark = pytest.mark.integration
REDIS = os.environ.get("CARTWISE_TEST_REDIS_URL_WEB", "redis://127.0.0.1:6379/2")
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("web")
    s = Settings(
        data_dir=data,
        redis_url=REDIS,
        admin_token="web-token",
        recs_model=str(Path(data) / "no-model"),
        cors_origins=[SHOP],
    )
    db = Database(s.resolved_database_url())
    db.migrate()
    seed_store(db, SeedConfig(seed=3, customers=60, products=40, merchants=2, days=10))
    db.dispose()
    return s


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[TestClient]:
    container = bootstrap(settings, load_models=False)
    try:
        with TestClient(create_app(container)) as client:
            yield client
    finally:
        container.close()


def _skus(http: TestClient, n: int) -> list[str]:
    return [p["sku"] for p in http.get("/v1/products", params={"limit": n}).json()["items"]]


def test_cards_come_in_the_order_asked_with_the_quoted_price_and_no_cost(
    http: TestClient,
) -> None:
    skus = _skus(http, 5)[::-1]
    res = http.get("/v1/storefront/cards", params={"skus": ",".join([*skus, skus[0]])})
    assert res.status_code == 200, res.text
    cards = res.json()["cards"]
    assert [c["sku"] for c in cards] == skus  # order kept, the repeat once
    quotes = http.post("/v1/prices/quote", json={"skus": skus}).json()["quotes"]
    assert [c["price"] for c in cards] == [q["price"] for q in quotes]
    assert all("cost" not in c and c["title"] and c["category"] for c in cards)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"skus": "NOPE-1"}, "skus"),
        ({"skus": ",,"}, "skus"),
        ({"skus": ",".join(f"S{i}" for i in range(101))}, "skus"),
        ({"skus": "SKU-00001", "channel": "no-such-channel"}, "channel"),
        ({"skus": "SKU-00001", "customer_id": "no-such-customer"}, "customer_id"),
    ],
)
def test_bad_card_requests_are_422_naming_the_field(
    http: TestClient, params: dict[str, str], field: str
) -> None:
    res = http.get("/v1/storefront/cards", params=params)
    assert res.status_code == 422, res.text
    assert res.json()["error"]["field"] == field


def test_demo_store_renders_the_catalogue_and_the_widget_tag(http: TestClient) -> None:
    res = http.get("/demo", params={"channel": "web-de"})
    assert res.status_code == 200
    page = res.text
    assert 'data-cartwise-widget="home"' in page
    assert 'src="/static/widget.js" data-channel="web-de" data-customer="cus_' in page
    assert page.count('class="cw-card"') >= 1
    anonymous = http.get("/demo", params={"customer": "anonymous"}).text
    assert "data-customer=" not in anonymous
    assert http.get("/demo", params={"customer": "nobody"}).status_code == 404
    assert http.get("/demo", params={"channel": "nowhere"}).json()["error"]["field"] == "channel"


def test_demo_product_page_shows_the_price_and_its_widgets(http: TestClient) -> None:
    sku = _skus(http, 1)[0]
    res = http.get(f"/demo/products/{sku}")
    assert res.status_code == 200
    assert f'data-context-sku="{sku}"' in res.text
    assert 'data-cartwise-widget="product_page"' in res.text
    assert http.get("/demo/products/NOPE-1").status_code == 422


def test_static_scripts_and_a_dashboard_without_data_or_token(http: TestClient) -> None:
    widget = http.get("/static/widget.js")
    assert widget.status_code == 200
    assert "javascript" in widget.headers["content-type"]
    assert "data-cartwise-widget" in widget.text
    dash = http.get("/dashboard")
    assert dash.status_code == 200
    assert "/static/dashboard.js" in dash.text
    assert "web-token" not in dash.text


def test_cors_admits_configured_storefront_origins_only(http: TestClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = http.options("/v1/events", headers={"Origin": SHOP, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    other = http.options("/v1/events", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_fast_path_routes_keep_their_bodies_and_errors_in_the_api(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, model in (("/v1/fraud/score", "ScoreIn"), ("/v1/prices/quote", "QuoteIn")):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
        for ref in _refs(schemas[model]):  # nested models resolve too (CardIn, ItemIn)
            assert ref.rsplit("/", 1)[-1] in schemas, ref
    assert "DecisionOut" in schemas and "QuotesOut" in schemas
    malformed = http.post("/v1/prices/quote", content=b"{nope", headers={"content-type": "x"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    extra = http.post("/v1/prices/quote", json={"skus": ["SKU-00001"], "colour": "red"})
    assert extra.status_code == 422
    assert extra.json()["error"]["field"] == "colour"
    nested = http.post(
        "/v1/fraud/score",
        json={"transaction_id": "t", "customer_id": "c", "amount": 5, "currency": "EUR",
              "card": {"number": "x"}},
    )  # fmt: skip
    assert nested.status_code == 422
    assert nested.json()["error"]["field"] == "card.number"


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
