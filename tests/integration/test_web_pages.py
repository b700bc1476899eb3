"""The storefront pages and the widget's card endpoint on a seeded store (SQLite, real Redis),
through the FastAPI app in-process: cards carry the shopper's quoted price and never the cost,
errors name their field, pages render the catalogue with the channel's publishable key, and
CORS admits only configured origins (and the widget's Authorization header).

The client sends the admin token (accepted on every route); the widget's own requests are
made with the page's publishable key."""

from __future__ import annotations

import logging
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
        # /openapi.json is built on the event loop at its first call; the requests right behind
        # that stall would be refused by admission control (tests/integration/test_admission.py)
        max_loop_lag_ms=0,
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
        app = create_app(container)
        with TestClient(app, headers={"Authorization": "Bearer web-token"}) as client:
            yield client
    finally:
        container.close()


@pytest.fixture(scope="module")
def publishable(http: TestClient) -> str:
    r = http.post("/v1/channels/web-de/keys", json={"kind": "publishable"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


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


def test_demo_store_renders_the_catalogue_and_the_widget_tag(
    http: TestClient, publishable: str
) -> None:
    res = http.get("/demo", params={"channel": "web-de"}, headers={"Authorization": ""})
    assert res.status_code == 200
    page = res.text
    assert 'data-cartwise-widget="home"' in page
    tag = f'src="/static/widget.js" data-channel="web-de" data-key="{publishable}" data-customer='
    assert tag in page
    assert "web-token" not in page
    customer = page.split('data-customer="', 1)[1].split('"', 1)[0]
    as_widget = {"Authorization": f"Bearer {publishable}"}  # what the widget then asks
    recs = http.get(
        f"/v1/recommendations/{customer}", params={"channel": "web-de"}, headers=as_widget
    )
    assert recs.status_code == 200, recs.text
    other = http.get("/v1/storefront/cards", params={"skus": _skus(http, 1)[0], "channel": "app"},
                     headers=as_widget)  # fmt: skip
    assert other.status_code == 403 and other.json()["error"]["code"] == "channel_mismatch"
    no_key = http.get("/demo", params={"channel": "app"}).text  # no key made for this channel
    assert "data-key=" not in no_key
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
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    ok = http.options("/v1/events", headers={"Origin": SHOP, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
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


def test_card_numbers_and_credentials_leave_no_trace_in_the_logs(
    http: TestClient, publishable: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG while requests carry a card number (refused, 422) and tokens
    and keys (right and wrong); none of them is in any log record."""
    pan, wrong_token, wrong_key = "4539578763621486", "not-the-web-token", "cw_pk_" + "z" * 43
    sku = _skus(http, 1)[0]
    with caplog.at_level(logging.DEBUG):
        refused = [
            http.post("/v1/customers", json={"email": "a@b.c", "name": f"Ana {pan}"}),
            http.post("/v1/prices/quote", json={"skus": [sku], "customer_id": pan}),
            http.get(f"/v1/storefront/cards?skus={sku}&customer_id={pan}"),
            http.post("/v1/pricing/reprice", json={"actor": pan}),
        ]
        assert [r.status_code for r in refused] == [422] * 4
        assert {r.json()["error"]["code"] for r in refused} == {"card_number_refused"}
        assert (
            http.get("/v1/widgets", headers={"Authorization": f"Bearer {wrong_token}"}).status_code
            == 401
        )
        assert (
            http.get("/v1/channels", headers={"Authorization": f"Bearer {wrong_key}"}).status_code
            == 401
        )
        assert http.get(
            "/v1/channels", headers={"Authorization": f"Bearer {publishable}"}
        ).is_success
        made = http.post("/v1/channels/app/keys", json={"kind": "secret"}).json()["key"]
        assert http.get("/v1/channels", headers={"Authorization": f"Bearer {made}"}).is_success
    assert caplog.records  # the capture worked: the test client logs each request it sends
    server = [r for r in caplog.records if not r.name.startswith("httpx")]  # not the client's
    logged = " ".join(f"{r.getMessage()} {r.args} {r.exc_text}" for r in server)
    for secret in (pan, wrong_token, wrong_key, publishable, made, "web-token"):
        assert secret not in logged, secret
