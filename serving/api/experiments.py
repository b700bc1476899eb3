"""Routes of experiments (A/B tests): (admin) define, start, stop, read results; (storefront)
which variant a customer has.  The decisions themselves (recommendations, quotes) apply the
running experiments and carry ``experiment: {key, variant}`` in their answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from serving.api.deps import Admin, Box, Storefront
from serving.api.schemas import In

router = APIRouter(prefix="/v1", tags=["experiments"])
KeyPath = Annotated[str, Path(min_length=1, max_length=64)]
Pair = list[float] | None


class ExperimentRef(BaseModel):
    """The experiment and variant a decision was made under (in recommendations, quotes)."""

    key: str
    variant: str


class TargetIn(In):
    kind: Literal["widget", "recommender", "price_rule"]
    name: Annotated[str, Field(min_length=1, max_length=64)]


class VariantIn(In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    weight: Annotated[float, Field(gt=0, le=100, description="Percent; weights sum to 100.")]
    config: dict[str, Any] = Field(default_factory=dict)


class ExperimentIn(In):
    key: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    target: TargetIn
    variants: Annotated[list[VariantIn], Field(min_length=2, max_length=10)]


class ExperimentPatch(In):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    variants: Annotated[list[VariantIn], Field(min_length=2, max_length=10)] | None = None


class TargetOut(BaseModel):
    kind: str
    name: str


class VariantOut(BaseModel):
    name: str
    weight: float
    config: dict[str, Any]


class ExperimentOut(BaseModel):
    key: str
    name: str
    description: str
    target: TargetOut
    variants: list[VariantOut]
    control: str
    status: Literal["draft", "running", "stopped"]
    created_at: str
    started_at: str | None
    stopped_at: str | None
    version: int


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut]


class VersusOut(BaseModel):
    conversion_lift: float
    conversion_lift_ci: Pair
    conversion_p_value: float | None
    rpv_lift: float
    rpv_lift_ci: Pair
    rpv_p_value: float | None


class VariantResultOut(BaseModel):
    name: str
    weight: float
    visitors: int
    converters: int
    conversion_rate: float
    conversion_ci: Pair = Field(description="Wilson 95 %; null without visitors.")
    revenue: float
    revenue_per_visitor: float
    rpv_ci: Pair = Field(description="Normal 95 %; null with fewer than two visitors.")
    vs_control: VersusOut | None


class ResultsOut(BaseModel):
    key: str
    name: str
    status: str
    target: TargetOut
    started_at: str | None
    stopped_at: str | None
    control: str
    variants: list[VariantResultOut]


class AssignmentOut(BaseModel):
    key: str
    variant: str
    status: str


@router.post("/experiments", status_code=201, response_model=ExperimentOut, dependencies=[Admin])
def create(body: ExperimentIn, box: Box) -> dict[str, Any]:
    """A draft experiment over a widget, the recommender (``recs``) or a segment pricing rule
    (see docs/experiments.md for each kind's variant config)."""
    return box.experiments.create(
        body.key,
        body.name,
        body.target.kind,
        body.target.name,
        [v.model_dump() for v in body.variants],
        description=body.description,
    ).public()


@router.get("/experiments", response_model=ExperimentsOut, dependencies=[Admin])
def list_experiments(
    box: Box,
    status: Annotated[Literal["draft", "running", "stopped"] | None, Query()] = None,
) -> dict[str, Any]:
    return {"experiments": [e.public() for e in box.experiments.list(status)]}


@router.get("/experiments/{key}", response_model=ExperimentOut, dependencies=[Admin])
def get(key: KeyPath, box: Box) -> dict[str, Any]:
    return box.experiments.get(key).public()


@router.patch("/experiments/{key}", response_model=ExperimentOut, dependencies=[Admin])
def update(key: KeyPath, body: ExperimentPatch, box: Box) -> dict[str, Any]:
    """Rename or describe; variants and weights change only while a draft (409 after the
    start: it would move shoppers between variants)."""
    variants = None if body.variants is None else [v.model_dump() for v in body.variants]
    return box.experiments.update(
        key, name=body.name, description=body.description, variants=variants
    ).public()


@router.post("/experiments/{key}/start", response_model=ExperimentOut, dependencies=[Admin])
def start(key: KeyPath, box: Box) -> dict[str, Any]:
    """Start a draft (409 if another experiment runs on the same target)."""
    return box.experiments.start(key).public()


@router.post("/experiments/{key}/stop", response_model=ExperimentOut, dependencies=[Admin])
def stop(key: KeyPath, box: Box) -> dict[str, Any]:
    """Stop a running experiment for good: results count orders until now."""
    return box.experiments.stop(key).public()


@router.get("/experiments/{key}/results", response_model=ResultsOut, dependencies=[Admin])
def results(key: KeyPath, box: Box) -> dict[str, Any]:
    """Per variant: visitors, converters, conversion (Wilson 95 %), revenue, revenue per
    visitor (normal 95 %), and against the control: lifts with 95 % intervals and p-values."""
    return box.experiments.results(key)


@router.get(
    "/experiments/{key}/assignment", response_model=AssignmentOut, dependencies=[Storefront]
)
def assignment(
    key: KeyPath,
    box: Box,
    customer_id: Annotated[str, Query(min_length=1, max_length=128)],
) -> dict[str, Any]:
    """The variant this customer has (or will have) in the experiment; logs no exposure."""
    return box.experiments.assignment(key, customer_id)
