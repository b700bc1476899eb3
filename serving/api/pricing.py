"""Routes of pricing: quotes for product pages and carts, the competitor feed, and (admin)
repricing, the audit trail, suggestions, rules, guardrails, FX and elasticities."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from engine.pricing.service import Quote
from serving.api.deps import Admin, Box, Storefront, container, storefront
from serving.api.experiments import ExperimentRef
from serving.api.fastpath import json_body, json_response, parse_body
from serving.api.schemas import Config, In

router = APIRouter(prefix="/v1")
Sku = Annotated[str, Field(min_length=1, max_length=64)]
Actor = Annotated[str, Field(min_length=1, max_length=64)]
Note = Annotated[str, Field(max_length=2000)]
RuleName = Annotated[str, Path(max_length=64)]


class QuoteIn(In):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=100)]
    customer_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    channel: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"])] | None = None


class QuoteOut(BaseModel):
    sku: str
    price: float
    list_price: float
    currency: str
    strategy: str = Field(description="What set the price: a rule's strategy, or list.")
    rule: str | None
    bounded_by: Literal["floor", "ceiling", "map", "change_limit"] | None
    valid_until: str
    experiment: ExperimentRef | None = Field(
        default=None, description="The experiment on a pricing rule this customer is in."
    )


class QuotesOut(BaseModel):
    quotes: list[QuoteOut]


@router.post(
    "/prices/quote", response_model=QuotesOut, tags=["pricing"], openapi_extra=json_body(QuoteIn)
)
async def quote(request: Request) -> Response:
    """The price of each SKU right now: its current price, the customer's segment discount
    (within floor, MAP and ceiling) and the currency asked for (or the channel's).

    Runs on the event loop, not in the thread pool: a quote is ~20 µs of in-memory work (a
    customer not yet cached costs one short SQL read), less than the hop to a worker thread;
    the body is parsed in one step and the answer made by orjson (serving/api/fastpath.py)."""
    caller = storefront(request)  # a publishable or secret key (see fastpath.py)
    body = parse_body(QuoteIn, await request.body())
    caller.check_channel(body.channel)
    quotes = container(request).pricing.quote(
        body.skus, customer_id=body.customer_id, channel=body.channel, currency=body.currency
    )
    return json_response(_quotes(quotes))


def _quotes(quotes: list[Quote]) -> dict[str, Any]:
    return {
        "quotes": [
            {
                "sku": q.sku,
                "price": q.price,
                "list_price": q.list_price,
                "currency": q.currency,
                "strategy": q.strategy,
                "rule": q.rule,
                "bounded_by": q.bounded_by,
                "valid_until": q.valid_until.isoformat(),
                "experiment": q.experiment,
            }
            for q in quotes
        ]
    }


class CompetitorPriceIn(In):
    sku: Sku
    competitor: Annotated[str, Field(min_length=1, max_length=64)]
    price: Annotated[float, Field(allow_inf_nan=False)]
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    observed_at: AwareDatetime


@router.post("/competitor-prices", dependencies=[Admin], tags=["pricing"])
def competitor_prices(
    body: Annotated[list[CompetitorPriceIn], Body(max_length=10_000)], box: Box
) -> dict[str, int]:
    """A competitor price feed: kept in the online store for ``competitor_ttl_s`` (the
    newest observation per competitor and SKU), converted to the SKU's currency."""
    return box.pricing.put_competitor_prices([row.model_dump() for row in body])


@router.get("/competitor-prices/{sku}", dependencies=[Admin], tags=["pricing"])
def competitor_prices_of(sku: Annotated[str, Path(max_length=64)], box: Box) -> dict[str, Any]:
    return {"sku": sku, "prices": box.pricing.competitor_prices(sku)}


# --- admin: repricing, audit, suggestions ------------------------------------------------------
class RepriceIn(In):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=100_000)] | None = None
    dry_run: bool = False
    actor: Actor = "admin"


@router.post("/pricing/reprice", dependencies=[Admin], tags=["pricing"])
def reprice(box: Box, body: RepriceIn | None = None) -> dict[str, Any]:
    """Run the rules over the catalogue (or ``skus``): ``auto`` rules' prices are applied and
    audited, ``suggest`` rules' wait for approval.  Returns counts and durations."""
    body = body or RepriceIn()
    return box.pricing.reprice(body.skus, actor=body.actor, dry_run=body.dry_run).public()


@router.get("/pricing/history", dependencies=[Admin], tags=["pricing"])
def history(
    box: Box,
    sku: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="Changes older than this id.")] = None,
) -> dict[str, Any]:
    """Every change of one SKU's price, newest first: old, new, rule, actor, reason, time."""
    return {"sku": sku, "changes": box.pricing.history(sku, limit=limit, before=before)}


@router.get("/pricing/suggestions", dependencies=[Admin], tags=["pricing"])
def suggestions(
    box: Box,
    status: Annotated[str | None, Query(max_length=16)] = "pending",
    sku: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"suggestions": box.pricing.suggestions(status=status, sku=sku, limit=limit)}


class DecisionIn(In):
    actor: Actor = "admin"
    note: Note | None = None


@router.post("/pricing/suggestions/{suggestion_id}/approve", dependencies=[Admin], tags=["pricing"])
def approve(
    suggestion_id: Annotated[str, Path(max_length=64)],
    box: Box,
    body: DecisionIn | None = None,
) -> dict[str, Any]:
    """Apply the suggested price (409 if the price moved since, or the guardrails no longer
    allow it)."""
    body = body or DecisionIn()
    return box.pricing.approve(suggestion_id, actor=body.actor, note=body.note)


@router.post("/pricing/suggestions/{suggestion_id}/reject", dependencies=[Admin], tags=["pricing"])
def reject(
    suggestion_id: Annotated[str, Path(max_length=64)],
    box: Box,
    body: DecisionIn | None = None,
) -> dict[str, Any]:
    body = body or DecisionIn()
    return box.pricing.reject(suggestion_id, actor=body.actor, note=body.note)


# --- admin: rules, guardrails, FX, elasticities ------------------------------------------------
@router.get("/pricing/rules", dependencies=[Admin], tags=["pricing"])
def rules(box: Box) -> dict[str, Any]:
    ruleset = box.pricing.config.rules()
    return {
        "guardrails": ruleset.defaults.config(),
        "rules": {r.name: r.config() for r in sorted(ruleset.rules, key=lambda r: r.name)},
    }


@router.get("/pricing/rules/{name}", dependencies=[Admin], tags=["pricing"])
def rule(name: RuleName, box: Box) -> dict[str, Any]:
    return {"name": name, **box.pricing.config.rule(name).config()}


@router.put("/pricing/rules/{name}", dependencies=[Admin], tags=["pricing"])
def put_rule(
    name: RuleName,
    box: Box,
    config: Annotated[
        Config,
        Body(
            examples=[
                {
                    "strategy": "competitor",
                    "scope": "category",
                    "scope_value": "electronics/phones",
                    "priority": 50,
                    "mode": "suggest",
                    "params": {"reference": "min", "action": "beat", "percent": 2},
                    "guardrails": {"min_margin_pct": 8},
                }
            ]
        ),
    ],
) -> dict[str, Any]:
    """Create or replace a rule (see docs/pricing.md for strategies and parameters)."""
    return {"name": name, **box.pricing.config.put_rule(name, config).config()}


@router.delete("/pricing/rules/{name}", status_code=204, dependencies=[Admin], tags=["pricing"])
def delete_rule(name: RuleName, box: Box) -> Response:
    box.pricing.config.delete_rule(name)
    return Response(status_code=204)


@router.get("/pricing/guardrails", dependencies=[Admin], tags=["pricing"])
def guardrails(box: Box) -> dict[str, Any]:
    return box.pricing.config.guardrails().config()


@router.put("/pricing/guardrails", dependencies=[Admin], tags=["pricing"])
def put_guardrails(box: Box, config: Annotated[Config, Body()]) -> dict[str, Any]:
    """Change the store-wide defaults every rule starts from (fields not given keep their
    values; a rule overrides any field)."""
    return box.pricing.config.put_guardrails(config).config()


@router.get("/pricing/fx", dependencies=[Storefront], tags=["pricing"])
def fx(box: Box) -> dict[str, Any]:
    """The FX table: units of each currency per unit of the base currency."""
    return box.pricing.config.fx()


class FxIn(In):
    rates: dict[str, Any]
    actor: Actor = "admin"


@router.put("/pricing/fx", dependencies=[Admin], tags=["pricing"])
def put_fx(body: FxIn, box: Box) -> dict[str, Any]:
    return box.pricing.config.put_fx(body.rates, actor=body.actor)


@router.delete("/pricing/fx/{currency}", status_code=204, dependencies=[Admin], tags=["pricing"])
def delete_fx(currency: Annotated[str, Path(max_length=3)], box: Box) -> Response:
    box.pricing.config.delete_fx(currency)
    return Response(status_code=204)


@router.get("/pricing/elasticities", dependencies=[Admin], tags=["pricing"])
def elasticities(
    box: Box,
    level: Annotated[Literal["category", "sku"] | None, Query()] = None,
    category: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The elasticity fit in use (the model registry's pricing champion, else the newest): each
    estimate with its standard error, 95 % interval, observations and status."""
    fit = box.pricing.elasticities.latest()
    estimates = [
        e.public()
        for e in fit.estimates
        if (level is None or e.level == level) and (category is None or e.category == category)
    ]
    return {"fit_id": fit.id, "fitted_at": fit.created_at, "estimates": estimates}
