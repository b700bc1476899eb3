"""The hot routes' lighter plumbing: what FastAPI does per request, done with less.

A checkout's fraud score and a product page's quote are small JSON in, small JSON out, on
every call. FastAPI's general path (dependency solving, ``json.loads`` then model validation,
response-model validation and ``jsonable_encoder``) cost ~0.8 ms of a fraud request's CPU on
this project's machines, as much as the decision itself. These routes instead parse the body
with pydantic's JSON parser in one step (``parse_body``), answer bytes made by orjson
(``json_response``), and run on the event loop. The OpenAPI document still shows their request
body (``json_body`` registers the model; ``add_body_schemas`` puts its schema in the
components) and their response model; a bad body is the same 422 naming the field (400 for
malformed JSON) as anywhere else.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
_BODIES: dict[str, type[BaseModel]] = {}
REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route that parses its own body with ``model``."""
    _BODIES[model.__name__] = model
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def parse_body(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise body_errors(exc) from None


def body_errors(exc: ValidationError, *within: str | int) -> RequestValidationError:
    """A model's validation errors as the request's (``body.<within>.<field>``), so the
    error handler names the field as it does for FastAPI's own parsing."""
    return RequestValidationError(
        [{**e, "loc": ("body", *within, *e["loc"])} for e in exc.errors()]
    )


REPLAYED = {"Idempotent-Replayed": "true"}  # the header of an answer to a request seen before


def answer_replayed(response: Response) -> None:
    """A request seen before (an idempotent retry) is answered 200, ``Idempotent-Replayed``."""
    response.status_code = 200
    response.headers.update(REPLAYED)


def json_response(content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), media_type="application/json", headers=headers)


def add_body_schemas(app: FastAPI) -> None:
    """Put the models of ``json_body`` routes (and the models they nest) into the OpenAPI
    document's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = build()
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _BODIES.items():
            schema = model.model_json_schema(ref_template=REF)
            for nested, definition in schema.pop("$defs", {}).items():
                components.setdefault(nested, definition)
            components.setdefault(name, schema)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
