"""Pure commerce rules: order lifecycle, allocation planning, codes. No I/O here."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from engine.errors import (
    InsufficientStock,
    InvalidAmount,
    InvalidQuantity,
    InvalidTransition,
    UnknownCurrency,
    ValidationError,
)

# ISO 4217 active codes (funds and precious metals left out).
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
    GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
    KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK
    SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS
    VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)

# ISO 3166-1 alpha-2.
COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC
    EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK
    HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB
    LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU
    RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN
    TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split()
)

CENT = Decimal("0.01")
MAX_LINE_QTY = 10_000
MAX_AMOUNT = Decimal("999999999999.99")  # what the Numeric(14, 2) money columns hold


def money(value: Decimal | int | str) -> Decimal:
    """Round to cents, half up (the way a receipt rounds)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def check_amount(
    value: Decimal, field: str, *, positive: bool = False, at_most: Decimal = MAX_AMOUNT
) -> Decimal:
    """A finite amount that rounds to cents within the column's range (and above zero when
    ``positive``); returns it rounded."""
    if not value.is_finite():
        raise InvalidAmount(f"{field} must be a finite amount", field=field)
    rounded = money(value)
    if rounded < 0 or (positive and rounded <= 0):
        raise InvalidAmount(
            f"{field} must be {'positive' if positive else 'zero or more'}", field=field
        )
    if rounded > at_most:
        raise InvalidAmount(f"{field} must be at most {at_most}", field=field)
    return rounded


def check_currency(code: str, field: str = "currency") -> str:
    if code not in CURRENCIES:
        raise UnknownCurrency(f"unknown currency {code!r} (ISO 4217 code expected)", field=field)
    return code


def check_country(code: str | None, field: str) -> str | None:
    if code is not None and code not in COUNTRIES:
        raise ValidationError(
            f"unknown country {code!r} (ISO 3166-1 alpha-2 code expected)",
            field=field,
            code="unknown_country",
        )
    return code


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    PAID = "paid"
    FULFILLED = "fulfilled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# Orders the customer really bought: paid and on. A placed order may still fail payment; a
# cancelled or refunded one was not bought (segments and experiment results count these).
BOUGHT: frozenset[OrderStatus] = frozenset(
    {OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.SHIPPED, OrderStatus.DELIVERED}
)


class OrderAction(enum.StrEnum):
    PAY = "pay"
    FULFIL = "fulfil"
    SHIP = "ship"
    DELIVER = "deliver"
    CANCEL = "cancel"
    REFUND = "refund"


ACTION_TARGET: Mapping[OrderAction, OrderStatus] = {
    OrderAction.PAY: OrderStatus.PAID,
    OrderAction.FULFIL: OrderStatus.FULFILLED,
    OrderAction.SHIP: OrderStatus.SHIPPED,
    OrderAction.DELIVER: OrderStatus.DELIVERED,
    OrderAction.CANCEL: OrderStatus.CANCELLED,
    OrderAction.REFUND: OrderStatus.REFUNDED,
}

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PLACED: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset(
        {OrderStatus.FULFILLED, OrderStatus.CANCELLED, OrderStatus.REFUNDED}
    ),
    OrderStatus.FULFILLED: frozenset({OrderStatus.SHIPPED, OrderStatus.REFUNDED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED, OrderStatus.REFUNDED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}

# Statuses in which the order still holds allocated (not yet shipped out) stock.
HOLDS_ALLOCATION = frozenset({OrderStatus.PLACED, OrderStatus.PAID})


def next_status(current: OrderStatus, action: OrderAction) -> OrderStatus:
    target = ACTION_TARGET[action]
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            f"cannot {action.value} an order that is {current.value}",
            field="status",
        )
    return target


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class StockSlot:
    """One (warehouse, sku) row as the planner sees it."""

    warehouse_id: str
    sku: str
    country: str
    available: int


@dataclass(frozen=True, slots=True)
class PlannedAllocation:
    sku: str
    warehouse_id: str
    qty: int


def validate_lines(lines: Sequence[LineRequest]) -> None:
    """Every failing line is reported at once (field ``lines[i].qty`` of the first)."""
    if not lines:
        raise ValidationError("an order needs at least one line", field="lines")
    problems: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.qty <= 0 or line.qty > MAX_LINE_QTY:
            problems.append(
                {
                    "field": f"lines[{i}].qty",
                    "sku": line.sku,
                    "qty": line.qty,
                    "reason": f"qty must be between 1 and {MAX_LINE_QTY}",
                }
            )
        if line.sku in seen:
            problems.append(
                {
                    "field": f"lines[{i}].sku",
                    "sku": line.sku,
                    "reason": f"duplicate of lines[{seen[line.sku]}]",
                }
            )
        seen.setdefault(line.sku, i)
    if problems:
        first = problems[0]
        cls = InvalidQuantity if "qty" in str(first["field"]) else ValidationError
        raise cls(
            "; ".join(f"{p['field']}: {p['reason']}" for p in problems),
            field=str(first["field"]),
            items=problems,
        )


def plan_allocation(
    lines: Sequence[LineRequest],
    slots: Iterable[StockSlot],
    *,
    shipping_country: str | None = None,
    pickup_warehouse_id: str | None = None,
) -> list[PlannedAllocation]:
    """Choose warehouses for every line, or raise one ``InsufficientStock`` naming every short line.

    Pickup orders take stock only from the chosen store. Otherwise a warehouse in the shipping
    country comes first, then the one with most available stock (ties by id, so the plan is
    deterministic); a line is split across warehouses when one is not enough.
    """
    by_sku: dict[str, list[StockSlot]] = {}
    for slot in slots:
        if pickup_warehouse_id is not None and slot.warehouse_id != pickup_warehouse_id:
            continue
        by_sku.setdefault(slot.sku, []).append(slot)

    plan: list[PlannedAllocation] = []
    short: list[dict[str, object]] = []
    for i, line in enumerate(lines):
        candidates = sorted(
            by_sku.get(line.sku, []),
            key=lambda s: (s.country != shipping_country, -s.available, s.warehouse_id),
        )
        available = sum(max(s.available, 0) for s in candidates)
        if available < line.qty:
            short.append(
                {
                    "field": f"lines[{i}].qty",
                    "sku": line.sku,
                    "requested": line.qty,
                    "available": available,
                }
            )
            continue
        remaining = line.qty
        for slot in candidates:
            take = min(remaining, slot.available)
            if take > 0:
                plan.append(PlannedAllocation(line.sku, slot.warehouse_id, take))
                remaining -= take
            if remaining == 0:
                break
    if short:
        where = f" at warehouse {pickup_warehouse_id}" if pickup_warehouse_id else ""
        raise InsufficientStock(
            "not enough stock" + where + " for " + ", ".join(str(s["sku"]) for s in short),
            field=str(short[0]["field"]),
            items=short,
        )
    return plan


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def looks_like_pan(value: str) -> bool:
    """True for a string that could be a full card number (13-19 digits passing Luhn; spaces
    and hyphens between them allowed)."""
    if len(value) < 13:
        return False
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


# a card number inside a value: 13-19 digits starting the way card numbers do (2-6), not part
# of a longer number or a phone number (+…); in an id, between non-alphanumerics (fp_4111…);
# in text (with spaces), also with single spaces or hyphens between groups (4111 1111 …)
_PAN_IN_ID = re.compile(r"(?<![0-9A-Za-z+])[2-6]\d{12,18}(?![0-9A-Za-z])")
_PAN_IN_TEXT = re.compile(r"(?<![\d+])[2-6](?:[ -]?\d){12,18}(?!\d)")


def carries_pan(value: str) -> bool:
    """True for a value that is a card number (``looks_like_pan``) or has one inside it."""
    if len(value) < 13:
        return False
    if looks_like_pan(value):
        return True
    pattern = _PAN_IN_TEXT if " " in value else _PAN_IN_ID
    return any(
        luhn_valid(m.group().replace(" ", "").replace("-", "")) for m in pattern.finditer(value)
    )
