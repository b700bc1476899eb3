"""One error hierarchy for the whole project.

Every error carries a stable machine ``code`` (what clients switch on), a human message, and
optionally the request ``field`` at fault and ``items`` (one entry per failing line).  The HTTP
status is chosen only at the serving edge, from the error's class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class CartwiseError(Exception):
    """Base of every error cartwise raises on purpose."""

    code: str = "cartwise_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.items = [dict(i) for i in items] if items else []
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.items:
            body["items"] = self.items
        return body


class ValidationError(CartwiseError):
    """The request is well-formed but a value is not acceptable (422)."""

    code = "invalid_request"


class NotFound(CartwiseError):
    """A referenced entity does not exist (404)."""

    code = "not_found"


class Conflict(CartwiseError):
    """The request conflicts with current state (409)."""

    code = "conflict"


class Unauthorized(CartwiseError):
    """Missing or wrong credentials (401)."""

    code = "unauthorized"


class Forbidden(CartwiseError):
    """The credentials are valid but do not allow this request (403)."""

    code = "forbidden"


class Unavailable(CartwiseError):
    """A backing service is down; the caller may retry later (503)."""

    code = "unavailable"


# --- specific, stable codes -------------------------------------------------------------------


class InvalidQuantity(ValidationError):
    code = "invalid_quantity"


class InvalidAmount(ValidationError):
    code = "invalid_amount"


class UnknownCurrency(ValidationError):
    code = "unknown_currency"


class CurrencyMismatch(ValidationError):
    code = "currency_mismatch"


class UnknownSku(ValidationError):
    """An order line names a SKU that is not in the catalogue (or is inactive)."""

    code = "unknown_sku"


class UnknownReference(ValidationError):
    """A body field references an entity that does not exist (customer, warehouse, …)."""

    code = "unknown_reference"


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class ProductNotFound(NotFound):
    code = "product_not_found"


class WarehouseNotFound(NotFound):
    code = "warehouse_not_found"


class OrderNotFound(NotFound):
    code = "order_not_found"


class AlreadyExists(Conflict):
    code = "already_exists"


class InsufficientStock(Conflict):
    code = "insufficient_stock"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class IdempotencyKeyReused(Conflict):
    """The same Idempotency-Key was sent with a different request body."""

    code = "idempotency_key_reused"
