"""Routes of recommendations: storefront widgets, item-to-item, and (admin) widget configs and
their click-through and conversion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, Field

from engine.recommend.log import Recommendation
from engine.recommend.widgets import MAX_K, Widget
from serving.api.deps import Admin, Box, Storefront
from serving.api.experiments import ExperimentRef
from serving.api.fastpath import json_response
from serving.api.schemas import Config
from serving.metrics import RECOMMENDATIONS, flag

router = APIRouter(prefix="/v1")
K = Annotated[int | None, Query(description=f"1 to {MAX_K}; default: the widget's")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64)]
SIMILAR = Widget("similar", strategy="similar", exclude_purchased=False, fallback=())
TOGETHER = Widget(
    "bought_together", strategy="bought_together", exclude_purchased=False, fallback=("similar",)
)


class ItemOut(BaseModel):
    sku: str
    score: float
    reason: Literal["personalized", "similar", "trending", "promoted"]


class RecommendationOut(BaseModel):
    recommendation_id: str = Field(description="Send it back on events to measure the widget.")
    widget: str
    items: list[ItemOut]
    model_version: str | None
    degraded: bool = Field(description="Real-time state or the model was unavailable.")
    experiment: ExperimentRef | None = Field(
        default=None, description="The running experiment (and variant) that shaped the answer."
    )


WidgetName = Annotated[str, Query(max_length=64)]
Category = Annotated[str | None, Query(max_length=200)]
ContextSku = Annotated[str | None, Query(max_length=64)]
Channel = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get(
    "/recommendations/{customer_id}",
    response_model=RecommendationOut,
    dependencies=[Storefront],
    tags=["recommendations"],
)
async def recommendations(
    customer_id: Annotated[str, Path(min_length=1, max_length=128)],
    box: Box,
    k: K = None,
    widget: WidgetName = "home",
    category: Category = None,
    context_sku: ContextSku = None,
    session_id: Annotated[str | None, Query(max_length=128)] = None,
    channel: Channel = None,
) -> Response:
    """What this shopper should see in ``widget``: personalized from their history and this
    session's events, filtered (purchased, out of stock, hidden, ``category``), with the
    widget's boosts, promotions, diversity and fallbacks (trending for a new shopper).
    ``channel`` (a known channel id) is logged with the answer for per-channel analytics.

    On the event loop (one Redis round trip and an in-memory index search, less than a hop
    to a worker thread), answered by orjson (serving/api/fastpath.py)."""
    return _recommend(box, customer_id, session_id, widget, k, category, context_sku, channel)


@router.get(
    "/recommendations",
    response_model=RecommendationOut,
    dependencies=[Storefront],
    tags=["recommendations"],
)
async def anonymous_recommendations(
    box: Box,
    session_id: Annotated[str, Query(min_length=1, max_length=128)],
    k: K = None,
    widget: WidgetName = "home",
    category: Category = None,
    context_sku: ContextSku = None,
    channel: Channel = None,
) -> Response:
    """The same for a shopper who has not signed in: from this session's events alone
    (trending until it has some). A running experiment assigns the session; no exposure is
    logged, as exposures are joined with orders, which name a customer."""
    return _recommend(box, None, session_id, widget, k, category, context_sku, channel)


def _recommend(
    box: Box,
    customer_id: str | None,
    session_id: str | None,
    widget: str,
    k: int | None,
    category: str | None,
    context_sku: str | None,
    channel: str | None,
) -> Response:
    box.interactions.channels.check(channel)
    rec = box.recs.recommend(
        customer_id=customer_id,
        widget=widget,
        k=k,
        category=category,
        context_sku=context_sku,
        session_id=session_id,
        channel=channel,
    )
    return _answer(rec)


def _answer(rec: Recommendation) -> Response:
    RECOMMENDATIONS.labels(rec.widget, flag(rec.degraded)).inc()
    return json_response(rec.public())


@router.get(
    "/products/{sku}/similar",
    response_model=RecommendationOut,
    dependencies=[Storefront],
    tags=["recommendations"],
)
async def similar(sku: SkuPath, box: Box, k: K = None) -> Response:
    """Items close to ``sku`` in the model's item space (in stock, not hidden)."""
    rec = box.recs.recommend(customer_id=None, widget=SIMILAR, k=k, context_sku=sku)
    return _answer(rec)


@router.get(
    "/products/{sku}/bought-together",
    response_model=RecommendationOut,
    dependencies=[Storefront],
    tags=["recommendations"],
)
async def bought_together(sku: SkuPath, box: Box, k: K = None) -> Response:
    """Items bought together with ``sku`` (similar items fill the rest)."""
    rec = box.recs.recommend(customer_id=None, widget=TOGETHER, k=k, context_sku=sku)
    return _answer(rec)


# --- admin: widgets ---------------------------------------------------------------------------
@router.get("/widgets", dependencies=[Admin], tags=["admin"])
def list_widgets(box: Box) -> dict[str, Any]:
    return {name: w.config() for name, w in sorted(box.recs.widgets.all().items())}


@router.put("/widgets/{name}", dependencies=[Admin], tags=["admin"])
def put_widget(
    name: Annotated[str, Path(max_length=64)],
    box: Box,
    config: Annotated[Config, Body(examples=[{"strategy": "personalized", "k": 8}])],
) -> dict[str, Any]:
    """Create or replace a widget: strategy, k, filters, boosts, promotions, diversity,
    fallback (see docs/recommendations.md)."""
    return {"name": name, **box.recs.widgets.put(name, config).config()}


@router.delete("/widgets/{name}", status_code=204, dependencies=[Admin], tags=["admin"])
def delete_widget(name: Annotated[str, Path(max_length=64)], box: Box) -> Response:
    box.recs.widgets.delete(name)
    return Response(status_code=204)


@router.get("/widgets/{name}/stats", dependencies=[Admin], tags=["admin"])
def widget_stats(
    name: Annotated[str, Path(max_length=64)],
    box: Box,
    days: Annotated[int, Query(ge=1, le=365)] = 7,
) -> dict[str, Any]:
    """Impressions, clicks, add-to-carts, purchases, click-through and conversion of the
    widget's recommendations (events sent back with their ``recommendation_id``)."""
    box.recs.widgets.get(name)
    return box.recs.log.stats(name, days=days)
