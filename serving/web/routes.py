"""What people see: the storefront widget's script and its product cards, the demo storefront
over the store's own catalogue, and the operations dashboard.

``/static/widget.js`` is the one tag a shop embeds; ``/v1/storefront/cards`` gives the widget
product cards with live prices (quotes for the shopper and channel) without exposing costs.
``/demo`` is a small shop built on that widget. ``/dashboard`` is a page with no data of its
own: its script asks for the admin token and reads the admin APIs (analytics, experiments,
segments, latency) with it.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from engine.errors import ValidationError
from serving.api.deps import Box, Storefront

HERE = FsPath(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter()
DEMO_PRODUCTS = 12


class CardOut(BaseModel):
    sku: str
    title: str
    category: str
    brand: str | None
    price: float
    list_price: float
    currency: str
    strategy: str
    valid_until: str


class CardsOut(BaseModel):
    cards: list[CardOut]


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def product_cards(
    box: Box, skus: list[str], customer_id: str | None, channel: str | None
) -> list[dict[str, Any]]:
    products = box.catalog.storefront_products(skus)
    quotes = box.pricing.quote([p.sku for p in products], customer_id=customer_id, channel=channel)
    return [
        {
            "sku": p.sku,
            "title": p.title,
            "category": p.category,
            "brand": p.brand,
            "price": float(q.price),
            "list_price": float(q.list_price),
            "currency": q.currency,
            "strategy": q.strategy,
            "valid_until": q.valid_until.isoformat(),
        }
        for p, q in zip(products, quotes, strict=True)
    ]


@router.get(
    "/v1/storefront/cards", response_model=CardsOut, dependencies=[Storefront], tags=["storefront"]
)
def cards(
    box: Box,
    skus: Annotated[str, Query(min_length=1, max_length=6500, description="Comma-separated.")],
    customer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    channel: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, Any]:
    """Product cards for a widget: title, category, brand and the price this shopper pays
    now on this channel (a quote), in the order of ``skus``."""
    wanted = [s.strip() for s in skus.split(",") if s.strip()]
    if not wanted:
        raise ValidationError("name at least one sku", field="skus")
    return {"cards": product_cards(box, wanted, customer_id, channel)}


def _shopper(box: Box, customer: str | None) -> dict[str, Any]:
    """The demo's shopper picker: the most frequent customers and an anonymous visitor."""
    frequent = box.catalog.frequent_customers(8)
    ids = [c.id for c, _ in frequent]
    if customer is None:
        customer = ids[0] if ids else "anonymous"
    if customer != "anonymous" and customer not in ids:
        box.catalog.get_customer(customer)  # 404 for an unknown customer
        ids.insert(0, customer)
    channels = [c.id for c in box.catalog.list_channels()]
    return {"customer": customer, "customers": ids, "channels": channels}


def _channel(box: Box, channels: list[str], channel: str | None) -> dict[str, Any]:
    """The page's channel and the publishable key its widget tag carries (public by design;
    none yet: the widget's requests are refused until an admin makes one)."""
    box.interactions.channels.check(channel)  # 422 unknown_channel, as events and widgets
    channel = channel or (channels[0] if channels else None)
    return {"channel": channel, "key": box.keys.publishable(channel) if channel else None}


DemoCustomer = Annotated[str | None, Query(max_length=128)]
DemoChannel = Annotated[str | None, Query(max_length=64)]


@router.get("/demo", response_class=HTMLResponse, include_in_schema=False)
def demo(
    request: Request,
    box: Box,
    customer: DemoCustomer = None,
    channel: DemoChannel = None,
    category: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    shopper = _shopper(box, customer)
    page_channel = _channel(box, shopper["channels"], channel)
    channel = page_channel["channel"]
    categories = box.catalog.categories()
    category = category or (categories[0][0] if categories else None)
    page = box.catalog.list_products(category=category, limit=DEMO_PRODUCTS)
    named = None if shopper["customer"] == "anonymous" else shopper["customer"]
    grid = product_cards(box, [p.sku for p in page.items], named, channel) if page.items else []
    return templates.TemplateResponse(
        request,
        "demo.html",
        {
            **shopper,
            **page_channel,
            "categories": categories,
            "category": category,
            "grid": grid,
            "named": named,
        },
    )


@router.get("/demo/products/{sku}", response_class=HTMLResponse, include_in_schema=False)
def demo_product(
    request: Request,
    box: Box,
    sku: Annotated[str, Path(min_length=1, max_length=64)],
    customer: DemoCustomer = None,
    channel: DemoChannel = None,
) -> HTMLResponse:
    shopper = _shopper(box, customer)
    page_channel = _channel(box, shopper["channels"], channel)
    named = None if shopper["customer"] == "anonymous" else shopper["customer"]
    (card,) = product_cards(box, [sku], named, page_channel["channel"])
    return templates.TemplateResponse(
        request,
        "product.html",
        {**shopper, **page_channel, "product": card, "named": named},
    )


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "dashboard.html", {})
