"""Routes of customer segments (admin): compute the RFM segments, their summary, and the
high-value customers.  A customer's own segment is on ``GET /v1/customers/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from engine.crm.service import (
    DEFAULT_LOOKBACK_DAYS,
    MAX_HIGH_VALUE,
    MAX_LOOKBACK_DAYS,
    parse_as_of,
)
from serving.api.deps import Admin, Box
from serving.api.schemas import In

router = APIRouter(prefix="/v1/crm", dependencies=[Admin], tags=["crm"])


class ComputeIn(In):
    as_of: Annotated[str, Field(max_length=40)] | None = Field(
        None, description="ISO datetime with zone, or a date (its end, UTC); default: now."
    )
    lookback_days: Annotated[int, Field(ge=1, le=MAX_LOOKBACK_DAYS)] = DEFAULT_LOOKBACK_DAYS


class SegmentOut(BaseModel):
    segment: str
    customers: int
    share: float
    avg_monetary: float
    avg_frequency: float


class SummaryOut(BaseModel):
    computed_at: datetime | None
    segments: list[SegmentOut]


class HighValueCustomerOut(BaseModel):
    customer_id: str
    email: str
    name: str | None
    segment: str
    r: int
    f: int
    m: int
    monetary: float
    frequency: int
    recency_days: int


class HighValueOut(BaseModel):
    customers: list[HighValueCustomerOut]


@router.post("/segments/compute")
def compute(box: Box, body: ComputeIn | None = None) -> dict[str, Any]:
    """Recompute every customer's RFM scores and segment from their bought orders in the
    lookback window (one transaction); returns the customers per segment and the duration."""
    body = body or ComputeIn()
    return box.crm.compute(as_of=parse_as_of(body.as_of), lookback_days=body.lookback_days)


@router.get("/segments", response_model=SummaryOut)
def segments(box: Box) -> dict[str, Any]:
    """Per segment: customers, share of the scored customers, average value and orders."""
    return box.crm.summary()


@router.get("/high-value", response_model=HighValueOut)
def high_value(
    box: Box,
    limit: Annotated[int, Query(ge=1, le=MAX_HIGH_VALUE)] = 50,
    segment: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> dict[str, Any]:
    """The scored customers with the highest monetary value (in one segment, if given)."""
    return {"customers": box.crm.high_value(limit, segment)}
