"""Routes of the feature store: storefront event ingestion, and (admin) the catalogue and one
entity's current values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from engine.commerce.interactions import MAX_BATCH, InteractionRequest
from features.catalog import catalog
from features.definitions import Entity, Source
from serving.api.deps import Admin, Box, Caller, container, storefront
from serving.api.fastpath import body_errors, json_response
from serving.api.schemas import In
from serving.bootstrap import Container
from serving.metrics import EVENTS

router = APIRouter(prefix="/v1")
Id = Annotated[str, Field(min_length=1, max_length=128)]


class EventIn(In):
    event_id: Id
    type: Literal["view", "add_to_cart", "remove_from_cart", "purchase", "search"]
    customer_id: Id | None = None
    session_id: Id | None = None
    sku: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    query: Annotated[str, Field(max_length=300)] | None = None
    timestamp: AwareDatetime
    recommendation_id: Annotated[str, Field(max_length=64)] | None = None
    channel: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class EventsOut(BaseModel):
    accepted: int
    duplicates: int
    degraded: bool = Field(description="True when the online store could not be updated now.")


class FeaturesOut(BaseModel):
    entity: str
    id: str
    as_of: datetime
    degraded: bool
    views: dict[str, Any]


_BATCH = TypeAdapter(list[EventIn])
_LIST_SCHEMA = {
    "type": "array",
    "items": EventIn.model_json_schema(),
    "minItems": 1,
    "maxItems": MAX_BATCH,
}
_BODY_SCHEMA = {
    "anyOf": [
        _LIST_SCHEMA,
        {
            "type": "object",
            "properties": {"events": _LIST_SCHEMA},
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
}


def _parse_events(raw: Any) -> list[EventIn]:
    """The body is the bare list of events, or ``{"events": [...]}``; errors name
    ``events[i].field`` either way."""
    payload = raw.get("events") if isinstance(raw, dict) and set(raw) == {"events"} else raw
    if not isinstance(payload, list) or not 1 <= len(payload) <= MAX_BATCH:
        raise RequestValidationError(
            [
                {
                    "type": "events",
                    "loc": ("body", "events"),
                    "input": None,
                    "msg": f"send a list of 1 to {MAX_BATCH} events",
                }
            ]
        )
    try:
        return _BATCH.validate_python(payload)
    except ValidationError as exc:
        raise body_errors(exc, "events") from None


@router.post(
    "/events",
    response_model=EventsOut,
    tags=["events"],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def ingest_events(request: Request) -> Response:
    """A batch of storefront events (a list, or ``{"events": [...]}``); an ``event_id`` seen
    before is not counted twice.

    The key is checked on the event loop; the body is parsed, validated and recorded in a
    worker thread (validating a large batch on the loop would delay every other route it
    runs), and the answer made by orjson: FastAPI's general path (``Any`` body, dependencies,
    response-model validation) cost as much CPU as recording the events."""
    caller = storefront(request)
    raw = await request.body()
    answer = await run_in_threadpool(_ingest, container(request), caller, raw)
    return json_response(answer)


def _ingest(box: Container, caller: Caller, raw: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": None}]
        ) from None
    items = _parse_events(payload)
    for i, e in enumerate(items):
        caller.check_channel(e.channel, f"events[{i}].channel")
    box.ingestor.reset_thread()
    recorded = box.interactions.record(
        [
            InteractionRequest(
                event_id=e.event_id,
                type=e.type,
                timestamp=e.timestamp,
                customer_id=e.customer_id,
                session_id=e.session_id,
                sku=e.sku,
                query=e.query,
                recommendation_id=e.recommendation_id,
                channel=e.channel,
            )
            for e in items
        ]
    )
    EVENTS.labels("accepted").inc(len(recorded.accepted))
    EVENTS.labels("duplicate").inc(recorded.duplicates)
    return {
        "accepted": len(recorded.accepted),
        "duplicates": recorded.duplicates,
        "degraded": box.ingestor.degraded_in_thread(),
    }


class CatalogOut(BaseModel):
    definitions_version: str
    views: list[dict[str, Any]] = Field(
        description="Per view: name, entity, source, ttl_s, label_delay_days and its features "
        "(name, kind, window, window_s, bucket_s, delay_span_days, of, event_types, "
        "approximate, description)."
    )


@router.get("/features", response_model=CatalogOut, dependencies=[Admin], tags=["admin"])
def feature_catalog(source: Source | None = None) -> CatalogOut:
    """The feature catalogue (what ``cartwise features list`` prints): every view and its
    features, derived from the definitions the online store and training both use."""
    return CatalogOut.model_validate(catalog(source))


@router.get(
    "/features/{entity}/{entity_id}",
    response_model=FeaturesOut,
    dependencies=[Admin],
    tags=["admin"],
)
def inspect_features(
    entity: Entity, entity_id: Annotated[str, Path(max_length=128)], box: Box
) -> FeaturesOut:
    """Current feature values of one entity, per feature view, with update time and TTL."""
    now = datetime.now().astimezone()
    result = box.features.inspect(entity, entity_id, now.timestamp())
    views = result["views"]
    assert isinstance(views, dict)
    return FeaturesOut(
        entity=entity.value, id=entity_id, as_of=now, degraded=bool(result["degraded"]), views=views
    )
