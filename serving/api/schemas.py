"""Request and response bodies of the commerce API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from serving.api.carddata import refuse_card_numbers

Amount = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=14, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"])]
Country = Annotated[str, Field(min_length=2, max_length=2, examples=["DE"])]


Config = Annotated[dict[str, Any], AfterValidator(refuse_card_numbers)]
"""A free-form JSON object body (widget and pricing configurations)."""


class In(BaseModel):
    """A request body: no field it does not name, and no card number in any string."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_card_numbers(cls, value: Any) -> Any:
        return refuse_card_numbers(value)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- customers, channels, merchants, warehouses ---------------------------------------------
class CustomerIn(In):
    id: Code | None = None
    email: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    name: Annotated[str, Field(max_length=200)] | None = None
    country: Country | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class CustomerSegmentOut(Out):
    """The customer's RFM scores and segment from the last batch (``engine.crm``)."""

    segment: str
    r: int
    f: int
    m: int
    recency_days: int
    frequency: int
    monetary: float
    computed_at: datetime


class CustomerOut(Out):
    id: str
    email: str
    name: str | None
    country: str | None
    attributes: dict[str, Any]
    created_at: datetime
    segment: CustomerSegmentOut | None = None


class ChannelIn(In):
    id: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: Currency
    country: Country | None = None


class ChannelOut(Out):
    id: str
    name: str
    currency: str
    country: str | None


class MerchantIn(In):
    id: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    country: Country | None = None


class MerchantOut(Out):
    id: str
    name: str
    country: str | None


class WarehouseIn(In):
    id: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    country: Country
    click_and_collect: bool = False


class WarehouseOut(Out):
    id: str
    name: str
    country: str
    click_and_collect: bool


# --- products and stock ----------------------------------------------------------------------
class ProductIn(In):
    sku: Code
    title: Annotated[str, Field(min_length=1, max_length=300)]
    category: Annotated[str, Field(min_length=1, max_length=200)]
    brand: Annotated[str, Field(max_length=200)] | None = None
    list_price: Amount
    cost: Amount = Decimal(0)
    map_price: Amount | None = None
    currency: Currency
    attributes: dict[str, Any] = Field(default_factory=dict)
    active: bool = True
    hidden: bool = False


class ProductOut(Out):
    sku: str
    title: str
    category: str
    brand: str | None
    list_price: Amount
    cost: Amount
    map_price: Amount | None
    currency: str
    attributes: dict[str, Any]
    active: bool
    hidden: bool
    created_at: datetime
    updated_at: datetime


class ProductPageOut(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


class StockIn(In):
    on_hand: int = Field(description="Counted units on hand (>= allocated).")


class StockLevelOut(Out):
    warehouse_id: str
    country: str
    click_and_collect: bool
    on_hand: int
    allocated: int
    available: int


class StockOut(BaseModel):
    sku: str
    available: int
    warehouses: list[StockLevelOut]


# --- orders ----------------------------------------------------------------------------------
class LineIn(In):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: int


class OrderIn(In):
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    currency: Currency
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=200)]
    channel: Annotated[str, Field(max_length=64)] | None = None
    merchant_id: Annotated[str, Field(max_length=64)] | None = None
    shipping_country: Country | None = None
    pickup_warehouse_id: Annotated[str, Field(max_length=64)] | None = None


class LineOut(Out):
    line_no: int
    sku: str
    qty: int
    unit_price: Amount
    line_total: Amount


class AllocationOut(Out):
    warehouse_id: str
    sku: str
    qty: int
    state: str


class OrderOut(Out):
    id: str
    customer_id: str
    status: str
    currency: str
    total: Amount
    channel: str | None = Field(validation_alias="channel_id")
    merchant_id: str | None
    shipping_country: str | None
    pickup_warehouse_id: str | None
    lines: list[LineOut]
    allocations: list[AllocationOut]
    created_at: datetime
    updated_at: datetime


class OrderEventOut(Out):
    type: str
    from_status: str | None
    to_status: str | None
    actor: str
    data: dict[str, Any]
    created_at: datetime


class CardIn(In):
    fingerprint: Annotated[str, Field(max_length=128)] | None = None
    bin: Annotated[str, Field(pattern=r"^\d{6,8}$")] | None = None
    last4: Annotated[str, Field(pattern=r"^\d{4}$")] | None = None
    country: Country | None = None


class PaymentIn(In):
    method: Literal["card", "wallet", "bnpl"] = "card"
    amount: Amount | None = None
    status: Literal["authorized", "declined"] = "authorized"
    card: CardIn | None = None
    device_id: Annotated[str, Field(max_length=128)] | None = None
    ip: Annotated[str, Field(max_length=64)] | None = None
    transaction_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="The id this payment was scored with (POST /v1/fraud/score)."
    )


class PaymentOut(Out):
    id: str
    order_id: str
    method: str
    amount: Amount
    currency: str
    status: str
    card_fingerprint: str | None
    card_bin: str | None
    card_last4: str | None
    card_country: str | None
    transaction_id: str | None
    created_at: datetime


class ChargebackIn(In):
    amount: Amount | None = None
    reason: Literal["fraudulent", "product_not_received", "not_as_described", "other"] = (
        "fraudulent"
    )
    filed_at: AwareDatetime | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None


class ChargebackOut(Out):
    id: str
    payment_id: str
    order_id: str
    amount: Amount
    reason: str
    filed_at: datetime


class BacklogOut(BaseModel):
    pending: int = Field(description="Online-store writes waiting for Redis to answer.")
    dropped: int = Field(description="Writes dropped because the backlog was full.")
    replayed: int = Field(description="Writes replayed after Redis came back.")


class AdmissionOut(BaseModel):
    inflight: int = Field(description="Requests this process is serving now.")
    lag_ms: float = Field(description="How late the event loop ran at the last probe.")
    shed: int = Field(description="Requests refused with 503 since the process started.")
    shed_checkout: int = Field(description="Of them, checkouts (fraud scores, orders).")


class ServedModelOut(BaseModel):
    model: str = Field(description="The registered model's name.")
    spec: str = Field(description="What the replica follows: an alias, a version or a directory.")
    champion: str | None = Field(description="The version (or directory) answering requests.")
    challenger: str | None = Field(description="The challenger loaded beside it, if rolled out.")
    rollout: Literal["off", "shadow", "canary"]
    share: float = Field(description="The challenger's share of customers under canary.")
    checked_at: float | None = Field(description="When the registry was last read (Unix time).")
    error: str | None = Field(description="Why the last registry read or model load failed.")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    redis: bool
    feature_backlog: BacklogOut
    admission: AdmissionOut
    models: dict[str, ServedModelOut] = Field(
        default_factory=dict, description="What this replica serves, per kind."
    )
    versions: dict[str, str]
