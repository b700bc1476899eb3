"""Routes of fraud decisions: scoring at checkout, feedback, and (admin) rules, lists and the
decision log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from engine.fraud.decision import Card, Item, ScoreRequest
from engine.fraud.inputs import INPUTS
from engine.fraud.log import decision_dict
from serving.api.deps import Admin, Box, Checkout, checkout, container
from serving.api.fastpath import REPLAYED, answer_replayed, json_body, json_response, parse_body
from serving.api.schemas import Amount, In
from serving.metrics import FRAUD_DECISIONS, FRAUD_REVIEWS, flag

router = APIRouter(prefix="/v1/fraud")
Text = Annotated[str, Field(max_length=320)]
Id = Annotated[str, Field(min_length=1, max_length=128)]


class CardIn(In):
    fingerprint: Annotated[str, Field(max_length=128)] | None = None
    bin: Annotated[str, Field(max_length=19)] | None = None
    country: Annotated[str, Field(max_length=2)] | None = None
    last4: Annotated[str, Field(max_length=19)] | None = None


class ItemIn(In):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: int = 1
    unit_price: Amount


class ScoreIn(In):
    transaction_id: Id
    customer_id: Id
    amount: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"])]
    timestamp: AwareDatetime | None = None
    payment_method: Annotated[str, Field(max_length=32)] | None = None
    card: CardIn | None = None
    device_id: Annotated[str, Field(max_length=128)] | None = None
    ip: Annotated[str, Field(max_length=64)] | None = None
    email: Text | None = None
    billing_country: Annotated[str, Field(max_length=2)] | None = None
    shipping_country: Annotated[str, Field(max_length=2)] | None = None
    merchant_id: Annotated[str, Field(max_length=64)] | None = None
    channel: Annotated[str, Field(max_length=64)] | None = None
    items: Annotated[list[ItemIn], Field(max_length=500)] = Field(default_factory=list)

    def to_request(self) -> ScoreRequest:
        return ScoreRequest(
            transaction_id=self.transaction_id,
            customer_id=self.customer_id,
            amount=self.amount,
            currency=self.currency,
            ts=self.timestamp or datetime.now(UTC),
            payment_method=self.payment_method,
            card=Card(**self.card.model_dump()) if self.card else None,
            device_id=self.device_id,
            ip=self.ip,
            email=self.email,
            billing_country=self.billing_country,
            shipping_country=self.shipping_country,
            merchant_id=self.merchant_id,
            channel=self.channel,
            items=tuple(Item(i.sku, i.qty, i.unit_price) for i in self.items),
        )


class ReasonOut(BaseModel):
    feature: str
    value: float
    contribution: float = Field(description="Push on the model's log-odds (positive: riskier).")


class MatchedRuleOut(BaseModel):
    id: str
    name: str
    action: str
    mode: Literal["active", "shadow"]
    decisive: bool


class DecisionOut(BaseModel):
    decision_id: str
    transaction_id: str
    risk_score: int = Field(ge=0, le=100)
    probability: float
    risk_level: Literal["normal", "elevated", "highest"]
    outcome: Literal["allow", "review", "block", "challenge"]
    reasons: list[ReasonOut]
    matched_rules: list[MatchedRuleOut]
    model_version: str
    features_degraded: bool
    created_at: datetime


class FeedbackIn(In):
    transaction_id: Id | None = None
    decision_id: Id | None = None
    label: Literal["fraud", "legit", "chargeback"]
    reported_at: AwareDatetime | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None


class FeedbackOut(BaseModel):
    feedback_id: str
    decision_id: str
    transaction_id: str
    label: str
    reported_at: datetime
    note: str | None
    created_at: datetime
    features_degraded: bool


class ReviewIn(In):
    resolution: Literal["approve", "refuse"]
    note: Annotated[str, Field(max_length=1000)] | None = None


class ReviewOut(FeedbackOut):
    resolution: Literal["approve", "refuse"]


class RuleIn(In):
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    expression: Annotated[str, Field(min_length=1, max_length=2000)]
    action: Literal["allow", "block", "review", "challenge"]
    priority: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    mode: Literal["active", "shadow"] = "active"
    description: Annotated[str, Field(max_length=2000)] | None = None


class RulePatch(In):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    expression: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    action: Literal["allow", "block", "review", "challenge"] | None = None
    priority: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    mode: Literal["active", "shadow"] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None


class RuleOut(BaseModel):
    id: str
    name: str
    expression: str
    action: str
    priority: int
    mode: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ListIn(In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["card_fingerprint", "email", "ip", "device_id", "country", "customer_id", "bin"]
    description: Annotated[str, Field(max_length=2000)] | None = None


class ListOut(BaseModel):
    name: str
    kind: str
    description: str | None
    items: int


class ListItemIn(In):
    value: Annotated[str, Field(min_length=1, max_length=320)]
    note: Annotated[str, Field(max_length=1000)] | None = None


class ListItemsIn(In):
    items: Annotated[list[ListItemIn], Field(min_length=1, max_length=1000)]


# --- checkout -----------------------------------------------------------------------------------
@router.post("/score", response_model=DecisionOut, tags=["fraud"], openapi_extra=json_body(ScoreIn))
async def score(request: Request) -> Response:
    """Score a payment before charging it: risk score, outcome, reasons, matched rules.

    Scoring the same ``transaction_id`` again returns the first decision (header
    ``Idempotent-Replayed: true``). On the event loop, body parsed in one step
    (serving/api/fastpath.py): the decision is ~1 ms of in-memory work and one Redis round
    trip, less than FastAPI's general path and a hop to a worker thread."""
    caller = checkout(request)  # a secret key (not a dependency: see fastpath.py)
    body = parse_body(ScoreIn, await request.body())
    caller.check_channel(body.channel)
    decision = container(request).fraud.score(body.to_request())
    if not decision.replayed:
        FRAUD_DECISIONS.labels(
            decision.outcome,
            decision.risk_level,
            str(decision.model_version),
            flag(decision.features_degraded),
        ).inc()
    return json_response(decision.public(), REPLAYED if decision.replayed else None)


@router.post(
    "/feedback",
    response_model=FeedbackOut,
    status_code=201,
    dependencies=[Checkout],
    tags=["fraud"],
    responses={200: {"model": FeedbackOut, "description": "this label was stored before"}},
)
def feedback(body: FeedbackIn, box: Box, response: Response) -> dict[str, Any]:
    """A label for a decision (by ``decision_id`` or ``transaction_id``): fraud and chargeback
    labels update the label-delayed features; every label is kept with the decision log.

    Idempotent: the same label for the same decision again answers the feedback stored first
    (200, header ``Idempotent-Replayed: true``) and counts nothing twice."""
    stored = box.fraud.feedback(
        decision_id=body.decision_id,
        transaction_id=body.transaction_id,
        label=body.label,
        reported_at=body.reported_at,
        note=body.note,
    )
    if stored["replayed"]:
        answer_replayed(response)
    return stored


# --- admin: decision log ------------------------------------------------------------------------
@router.get("/decisions/{decision_id}", dependencies=[Admin], tags=["admin"])
def get_decision(decision_id: Annotated[str, Path(max_length=64)], box: Box) -> dict[str, Any]:
    """One logged decision with its request attributes, model inputs and feedback."""
    decision = box.fraud.decisions.get(decision_id)
    return {
        **decision_dict(decision),
        "inputs": dict(zip(INPUTS, decision.inputs, strict=True)),
        "feedback": box.fraud.decisions.feedback(decision_id),
    }


# --- admin: the review queue ---------------------------------------------------------------------
@router.get("/reviews", dependencies=[Admin], tags=["admin"])
def list_reviews(
    box: Box,
    status: Annotated[
        Literal["open", "resolved", "all"],
        Query(description="open: no label yet; resolved: labelled; all."),
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Decisions sent to manual review (outcome ``review``), newest first, with what a
    reviewer needs: the request, the score, reasons and matched rules, and any label."""
    items, next_cursor = box.fraud.decisions.reviews(status, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "/reviews/{decision_id}",
    response_model=ReviewOut,
    status_code=201,
    dependencies=[Admin],
    tags=["admin"],
    responses={200: {"model": ReviewOut, "description": "this verdict was stored before"}},
)
def resolve_review(
    decision_id: Annotated[str, Path(max_length=64)],
    body: ReviewIn,
    box: Box,
    response: Response,
) -> dict[str, Any]:
    """A reviewer's verdict: ``approve`` labels the payment ``legit``, ``refuse`` labels it
    ``fraud`` (feeding the label-delayed features like any fraud feedback). The same verdict
    again answers the one stored (200, ``Idempotent-Replayed: true``); a different verdict on a
    labelled decision is 409 ``review_resolved``; a decision not sent to review, 409
    ``not_in_review``."""
    stored = box.fraud.resolve_review(decision_id, body.resolution, note=body.note)
    if stored["replayed"]:
        answer_replayed(response)
    else:
        FRAUD_REVIEWS.labels(body.resolution).inc()
    return stored


# --- admin: rules -------------------------------------------------------------------------------
@router.get("/rules", response_model=list[RuleOut], dependencies=[Admin], tags=["admin"])
def list_rules(box: Box) -> list[dict[str, Any]]:
    """Every rule, in evaluation order (challenge → allow → block → review, then priority)."""
    return box.fraud.config.rules()


@router.post(
    "/rules", response_model=RuleOut, status_code=201, dependencies=[Admin], tags=["admin"]
)
def create_rule(body: RuleIn, box: Box) -> dict[str, Any]:
    return box.fraud.config.create_rule(body.model_dump(exclude_none=True))


@router.get("/rules/{rule_id}", response_model=RuleOut, dependencies=[Admin], tags=["admin"])
def get_rule(rule_id: Annotated[str, Path(max_length=64)], box: Box) -> dict[str, Any]:
    return box.fraud.config.rule(rule_id)


@router.patch("/rules/{rule_id}", response_model=RuleOut, dependencies=[Admin], tags=["admin"])
def update_rule(
    rule_id: Annotated[str, Path(max_length=64)], body: RulePatch, box: Box
) -> dict[str, Any]:
    return box.fraud.config.update_rule(rule_id, body.model_dump(exclude_unset=True))


@router.delete("/rules/{rule_id}", status_code=204, dependencies=[Admin], tags=["admin"])
def delete_rule(rule_id: Annotated[str, Path(max_length=64)], box: Box) -> Response:
    box.fraud.config.delete_rule(rule_id)
    return Response(status_code=204)


# --- admin: lists -------------------------------------------------------------------------------
@router.get("/lists", response_model=list[ListOut], dependencies=[Admin], tags=["admin"])
def list_lists(box: Box) -> list[dict[str, Any]]:
    return box.fraud.config.lists()


@router.post(
    "/lists", response_model=ListOut, status_code=201, dependencies=[Admin], tags=["admin"]
)
def create_list(body: ListIn, box: Box) -> dict[str, Any]:
    return box.fraud.config.create_list(body.name, body.kind, body.description)


@router.delete("/lists/{name}", status_code=204, dependencies=[Admin], tags=["admin"])
def delete_list(name: Annotated[str, Path(max_length=64)], box: Box) -> Response:
    box.fraud.config.delete_list(name)
    return Response(status_code=204)


@router.get("/lists/{name}/items", dependencies=[Admin], tags=["admin"])
def list_items(
    name: Annotated[str, Path(max_length=64)],
    box: Box,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=320)] = None,
) -> dict[str, Any]:
    """Items in value order; pass ``next_after`` as ``after`` for the next page."""
    return box.fraud.config.items(name, limit=limit, after=after)


@router.post("/lists/{name}/items", status_code=201, dependencies=[Admin], tags=["admin"])
def add_items(
    name: Annotated[str, Path(max_length=64)], body: ListItemsIn, box: Box
) -> dict[str, Any]:
    return box.fraud.config.add_items(name, [(i.value, i.note) for i in body.items])


@router.delete("/lists/{name}/items/{value}", status_code=204, dependencies=[Admin], tags=["admin"])
def remove_item(
    name: Annotated[str, Path(max_length=64)],
    value: Annotated[str, Path(max_length=320)],
    box: Box,
) -> Response:
    box.fraud.config.remove_item(name, value)
    return Response(status_code=204)
