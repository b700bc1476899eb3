"""Routes of the commerce core: customers, catalogue, stock, orders, payments, chargebacks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from engine.commerce.domain import LineRequest, OrderAction
from engine.commerce.orders import CardInfo, OrderRequest, PaymentRequest
from serving.api.deps import Admin, Box, Checkout, CheckoutCaller, OrderCheckout, Storefront
from serving.api.fastpath import answer_replayed
from serving.api.schemas import (
    ChannelIn,
    ChannelOut,
    ChargebackIn,
    ChargebackOut,
    CustomerIn,
    CustomerOut,
    CustomerSegmentOut,
    MerchantIn,
    MerchantOut,
    OrderEventOut,
    OrderIn,
    OrderOut,
    PaymentIn,
    PaymentOut,
    ProductIn,
    ProductOut,
    ProductPageOut,
    StockIn,
    StockLevelOut,
    StockOut,
    WarehouseIn,
    WarehouseOut,
)

router = APIRouter(prefix="/v1")
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=255, min_length=1)
]


# --- customers -------------------------------------------------------------------------------
@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerOut,
    dependencies=[Checkout],
    tags=["customers"],
)
def create_customer(body: CustomerIn, box: Box):
    return box.catalog.create_customer(**body.model_dump())


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    dependencies=[Checkout],
    tags=["customers"],
)
def get_customer(customer_id: str, box: Box):
    """The customer, with their RFM segment from the last batch (null: not scored)."""
    out = CustomerOut.model_validate(box.catalog.get_customer(customer_id))
    segment = box.crm.get(customer_id)
    out.segment = CustomerSegmentOut.model_validate(segment) if segment else None
    return out


# --- channels, merchants, warehouses (admin writes) ------------------------------------------
@router.post(
    "/channels", status_code=201, response_model=ChannelOut, dependencies=[Admin], tags=["admin"]
)
def create_channel(body: ChannelIn, box: Box):
    return box.catalog.create_channel(**body.model_dump())


@router.get(
    "/channels", response_model=list[ChannelOut], dependencies=[Storefront], tags=["catalogue"]
)
def list_channels(box: Box):
    return box.catalog.list_channels()


@router.post(
    "/merchants", status_code=201, response_model=MerchantOut, dependencies=[Admin], tags=["admin"]
)
def create_merchant(body: MerchantIn, box: Box):
    return box.catalog.create_merchant(**body.model_dump())


@router.get(
    "/merchants", response_model=list[MerchantOut], dependencies=[Storefront], tags=["catalogue"]
)
def list_merchants(box: Box):
    return box.catalog.list_merchants()


@router.post(
    "/warehouses",
    status_code=201,
    response_model=WarehouseOut,
    dependencies=[Admin],
    tags=["admin"],
)
def create_warehouse(body: WarehouseIn, box: Box):
    return box.catalog.create_warehouse(**body.model_dump())


@router.get(
    "/warehouses",
    response_model=list[WarehouseOut],
    dependencies=[Storefront],
    tags=["catalogue"],
)
def list_warehouses(box: Box):
    return box.catalog.list_warehouses()


# --- products and stock ----------------------------------------------------------------------
@router.post(
    "/products", status_code=201, response_model=ProductOut, dependencies=[Admin], tags=["admin"]
)
def create_product(body: ProductIn, box: Box):
    return box.catalog.create_product(**body.model_dump())


@router.get(
    "/products/{sku}", response_model=ProductOut, dependencies=[Checkout], tags=["catalogue"]
)
def get_product(sku: str, box: Box):
    return box.catalog.get_product(sku)


@router.get("/products", response_model=ProductPageOut, dependencies=[Checkout], tags=["catalogue"])
def list_products(
    box: Box,
    category: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
):
    page = box.catalog.list_products(category=category, limit=limit, cursor=cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.put(
    "/stock/{warehouse_id}/{sku}",
    response_model=StockLevelOut,
    dependencies=[Admin],
    tags=["admin"],
)
def set_stock(warehouse_id: str, sku: str, body: StockIn, box: Box):
    return box.catalog.set_stock(warehouse_id, sku, body.on_hand)


@router.get("/stock/{sku}", response_model=StockOut, dependencies=[Checkout], tags=["catalogue"])
def get_stock(sku: str, box: Box):
    levels = box.catalog.stock_levels(sku)
    return {"sku": sku, "available": sum(lv.available for lv in levels), "warehouses": levels}


# --- orders ----------------------------------------------------------------------------------
@router.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    tags=["orders"],
    responses={409: {"description": "insufficient_stock or idempotency_key_reused"}},
)
def place_order(
    body: OrderIn,
    box: Box,
    caller: CheckoutCaller,
    response: Response,
    idempotency_key: IdempotencyKey = None,
):
    """Place an order (stock allocated at once). Placed with a channel's key, the order is on
    that channel (``channel`` may name it, no other)."""
    caller.check_channel(body.channel)
    req = OrderRequest(
        customer_id=body.customer_id,
        currency=body.currency,
        channel=body.channel or caller.channel,
        lines=[LineRequest(line.sku, line.qty) for line in body.lines],
        merchant_id=body.merchant_id,
        shipping_country=body.shipping_country,
        pickup_warehouse_id=body.pickup_warehouse_id,
    )
    placed = box.orders.place(req, idempotency_key)
    if placed.replayed:
        answer_replayed(response)
    return placed.order


@router.get(
    "/orders/{order_id}", response_model=OrderOut, dependencies=[OrderCheckout], tags=["orders"]
)
def get_order(order_id: str, box: Box):
    return box.orders.get(order_id)


@router.get(
    "/orders/{order_id}/events",
    response_model=list[OrderEventOut],
    dependencies=[OrderCheckout],
    tags=["orders"],
)
def order_history(order_id: str, box: Box):
    return box.orders.history(order_id)


def _payment(body: PaymentIn | None) -> PaymentRequest:
    if body is None:
        return PaymentRequest()
    card = body.card
    return PaymentRequest(
        method=body.method,
        amount=body.amount,
        status=body.status,
        card=CardInfo(card.fingerprint, card.bin, card.last4, card.country) if card else CardInfo(),
        device_id=body.device_id,
        ip=body.ip,
        transaction_id=body.transaction_id,
    )


@router.post(
    "/orders/{order_id}/payments",
    status_code=201,
    response_model=PaymentOut,
    dependencies=[OrderCheckout],
    tags=["orders"],
)
def record_payment(order_id: str, body: PaymentIn, box: Box):
    return box.orders.record_payment(order_id, _payment(body))


@router.get(
    "/orders/{order_id}/payments",
    response_model=list[PaymentOut],
    dependencies=[OrderCheckout],
    tags=["orders"],
)
def list_payments(order_id: str, box: Box):
    box.orders.get(order_id)
    return box.orders.payments(order_id)


@router.post(
    "/orders/{order_id}/pay", response_model=OrderOut, dependencies=[OrderCheckout], tags=["orders"]
)
def pay(order_id: str, box: Box, body: PaymentIn | None = None):
    return box.orders.transition(order_id, OrderAction.PAY, payment=_payment(body))


@router.post(
    "/orders/{order_id}/chargeback",
    status_code=201,
    response_model=ChargebackOut,
    dependencies=[OrderCheckout],
    tags=["orders"],
)
def chargeback(order_id: str, box: Box, body: ChargebackIn | None = None):
    body = body or ChargebackIn()
    return box.orders.file_chargeback(
        order_id, amount=body.amount, reason=body.reason, filed_at=body.filed_at, note=body.note
    )


def _transition_route(action: OrderAction) -> None:
    def handler(order_id: str, box: Box):
        return box.orders.transition(order_id, action)

    handler.__name__ = f"{action.value}_order"
    router.add_api_route(
        f"/orders/{{order_id}}/{action.value}",
        handler,
        methods=["POST"],
        response_model=OrderOut,
        dependencies=[OrderCheckout],
        tags=["orders"],
        summary=f"{action.value.capitalize()} an order",
    )


for _action in (
    OrderAction.FULFIL,
    OrderAction.SHIP,
    OrderAction.DELIVER,
    OrderAction.CANCEL,
    OrderAction.REFUND,
):
    _transition_route(_action)
