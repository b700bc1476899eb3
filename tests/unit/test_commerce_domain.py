"""Pure commerce rules (engine/commerce/domain.py): no I/O."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.commerce.domain import (
    HOLDS_ALLOCATION,
    MAX_LINE_QTY,
    LineRequest,
    OrderAction,
    OrderStatus,
    PlannedAllocation,
    StockSlot,
    carries_pan,
    check_country,
    check_currency,
    looks_like_pan,
    luhn_valid,
    money,
    next_status,
    plan_allocation,
    validate_lines,
)
from engine.errors import (
    InsufficientStock,
    InvalidQuantity,
    InvalidTransition,
    UnknownCurrency,
    ValidationError,
)

pytestmark = pytest.mark.unit

# --- order lifecycle --------------------------------------------------------------------------

# The business table, written out by hand: (status, action) -> new status; absent = forbidden.
ALLOWED = {
    ("placed", "pay"): "paid",
    ("placed", "cancel"): "cancelled",
    ("paid", "fulfil"): "fulfilled",
    ("paid", "cancel"): "cancelled",
    ("paid", "refund"): "refunded",
    ("fulfilled", "ship"): "shipped",
    ("fulfilled", "refund"): "refunded",
    ("shipped", "deliver"): "delivered",
    ("shipped", "refund"): "refunded",
    ("delivered", "refund"): "refunded",
}
STATUSES = ["placed", "paid", "fulfilled", "shipped", "delivered", "cancelled", "refunded"]
ACTIONS = ["pay", "fulfil", "ship", "deliver", "cancel", "refund"]


def test_status_and_action_names_are_the_ones_the_table_uses() -> None:
    assert sorted(s.value for s in OrderStatus) == sorted(STATUSES)
    assert sorted(a.value for a in OrderAction) == sorted(ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", STATUSES)
def test_every_status_action_pair(status: str, action: str) -> None:
    expected = ALLOWED.get((status, action))
    if expected is not None:
        assert next_status(OrderStatus(status), OrderAction(action)) == OrderStatus(expected)
        return
    with pytest.raises(InvalidTransition) as err:
        next_status(OrderStatus(status), OrderAction(action))
    assert err.value.code == "invalid_transition"
    assert err.value.field == "status"
    assert status in err.value.message
    assert action in err.value.message


def test_only_placed_and_paid_orders_hold_allocated_stock() -> None:
    assert {s.value for s in HOLDS_ALLOCATION} == {"placed", "paid"}


# --- allocation planning ----------------------------------------------------------------------

DE_BIG = StockSlot("wh-a", "TEE", "DE", 5)
FR_SMALL = StockSlot("wh-b", "TEE", "FR", 3)


def lines(*pairs: tuple[str, int]) -> list[LineRequest]:
    return [LineRequest(sku, qty) for sku, qty in pairs]


def test_warehouse_in_the_shipping_country_comes_first_even_with_less_stock() -> None:
    plan = plan_allocation(lines(("TEE", 2)), [DE_BIG, FR_SMALL], shipping_country="FR")
    assert plan == [PlannedAllocation("TEE", "wh-b", 2)]


@pytest.mark.parametrize("country", [None, "US"])
def test_without_a_local_warehouse_the_one_with_most_stock_is_used(country: str | None) -> None:
    plan = plan_allocation(lines(("TEE", 2)), [FR_SMALL, DE_BIG], shipping_country=country)
    assert plan == [PlannedAllocation("TEE", "wh-a", 2)]


def test_ties_on_stock_are_broken_by_warehouse_id() -> None:
    slots = [StockSlot("wh-z", "TEE", "DE", 4), StockSlot("wh-m", "TEE", "DE", 4)]
    assert plan_allocation(lines(("TEE", 1)), slots) == [PlannedAllocation("TEE", "wh-m", 1)]
    assert plan_allocation(lines(("TEE", 1)), slots[::-1]) == [PlannedAllocation("TEE", "wh-m", 1)]


def test_a_line_is_split_local_first_then_most_stock() -> None:
    slots = [
        StockSlot("wh-1", "TEE", "DE", 2),
        StockSlot("wh-2", "TEE", "IT", 4),
        StockSlot("wh-3", "TEE", "FR", 3),
        StockSlot("wh-4", "TEE", "ES", 1),
    ]
    plan = plan_allocation(lines(("TEE", 8)), slots, shipping_country="FR")
    assert plan == [
        PlannedAllocation("TEE", "wh-3", 3),
        PlannedAllocation("TEE", "wh-2", 4),
        PlannedAllocation("TEE", "wh-1", 1),
    ]


def test_empty_and_negative_slots_are_skipped() -> None:
    slots = [StockSlot("wh-1", "TEE", "FR", 0), StockSlot("wh-2", "TEE", "FR", -2), DE_BIG]
    plan = plan_allocation(lines(("TEE", 5)), slots, shipping_country="FR")
    assert plan == [PlannedAllocation("TEE", "wh-a", 5)]


def test_pickup_takes_only_from_the_chosen_store() -> None:
    plan = plan_allocation(lines(("TEE", 3)), [DE_BIG, FR_SMALL], pickup_warehouse_id="wh-b")
    assert plan == [PlannedAllocation("TEE", "wh-b", 3)]


def test_pickup_store_short_is_insufficient_even_if_others_have_stock() -> None:
    with pytest.raises(InsufficientStock) as err:
        plan_allocation(
            lines(("TEE", 4)), [DE_BIG, FR_SMALL], shipping_country="DE", pickup_warehouse_id="wh-b"
        )
    assert err.value.items == [
        {"field": "lines[0].qty", "sku": "TEE", "requested": 4, "available": 3}
    ]
    assert "wh-b" in err.value.message


def test_every_short_line_is_reported_in_one_error() -> None:
    slots = [
        DE_BIG,
        FR_SMALL,
        StockSlot("wh-a", "MUG", "DE", 10),
        StockSlot("wh-a", "CAP", "DE", 1),
    ]
    with pytest.raises(InsufficientStock) as err:
        plan_allocation(lines(("MUG", 2), ("TEE", 9), ("GHOST", 1), ("CAP", 1)), slots)
    exc = err.value
    assert exc.code == "insufficient_stock"
    assert exc.field == "lines[1].qty"
    assert exc.items == [
        {"field": "lines[1].qty", "sku": "TEE", "requested": 9, "available": 8},
        {"field": "lines[2].qty", "sku": "GHOST", "requested": 1, "available": 0},
    ]
    assert "TEE" in exc.message
    assert "GHOST" in exc.message


def test_plan_is_deterministic_whatever_the_slot_order() -> None:
    slots = [
        StockSlot(f"wh-{i}", sku, c, n)
        for i, (sku, c, n) in enumerate(
            [
                ("TEE", "DE", 3),
                ("TEE", "FR", 3),
                ("TEE", "DE", 3),
                ("MUG", "FR", 2),
                ("MUG", "DE", 7),
            ]
        )
    ]
    want = plan_allocation(lines(("TEE", 7), ("MUG", 8)), slots, shipping_country="FR")
    rng = random.Random(7)
    for _ in range(20):
        shuffled = slots[:]
        rng.shuffle(shuffled)
        assert (
            plan_allocation(lines(("TEE", 7), ("MUG", 8)), shuffled, shipping_country="FR") == want
        )


WAREHOUSES = {"w1": "DE", "w2": "FR", "w3": "DE", "w4": "IT"}
SKUS = ["a", "b", "c", "d"]


@st.composite
def planning_inputs(
    draw: st.DrawFn,
) -> tuple[list[StockSlot], list[LineRequest], dict[str, object]]:
    stock = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(sorted(WAREHOUSES)), st.sampled_from(SKUS)),
            st.integers(min_value=-2, max_value=12),
            max_size=16,
        )
    )
    slots = [StockSlot(w, sku, WAREHOUSES[w], n) for (w, sku), n in stock.items()]
    wanted = draw(
        st.dictionaries(st.sampled_from([*SKUS, "zz"]), st.integers(1, 30), min_size=1, max_size=5)
    )
    kwargs: dict[str, object] = {
        "shipping_country": draw(st.sampled_from([None, "DE", "FR", "US"])),
        "pickup_warehouse_id": draw(st.sampled_from([None, None, *sorted(WAREHOUSES), "w9"])),
    }
    return slots, [LineRequest(s, q) for s, q in wanted.items()], kwargs


@settings(max_examples=300, deadline=None, database=None)
@given(planning_inputs(), st.randoms(use_true_random=False))
def test_plan_fills_lines_exactly_within_stock_or_names_exactly_the_short_lines(
    inputs: tuple[list[StockSlot], list[LineRequest], dict[str, object]], rnd: random.Random
) -> None:
    slots, wanted, kwargs = inputs
    pickup = kwargs["pickup_warehouse_id"]
    usable = [s for s in slots if pickup is None or s.warehouse_id == pickup]
    total = {sku: sum(max(s.available, 0) for s in usable if s.sku == sku) for sku in SKUS}
    short = [(i, ln) for i, ln in enumerate(wanted) if total.get(ln.sku, 0) < ln.qty]
    if short:
        with pytest.raises(InsufficientStock) as err:
            plan_allocation(wanted, slots, **kwargs)  # type: ignore[arg-type]
        assert err.value.items == [
            {
                "field": f"lines[{i}].qty",
                "sku": ln.sku,
                "requested": ln.qty,
                "available": total.get(ln.sku, 0),
            }
            for i, ln in short
        ]
        assert err.value.field == f"lines[{short[0][0]}].qty"
        return
    plan = plan_allocation(wanted, slots, **kwargs)  # type: ignore[arg-type]
    available = {(s.warehouse_id, s.sku): s.available for s in usable}
    taken: dict[tuple[str, str], int] = {}
    for p in plan:
        assert p.qty > 0
        key = (p.warehouse_id, p.sku)
        assert key in available, f"{p} takes from a slot that is not usable"
        taken[key] = taken.get(key, 0) + p.qty
    assert all(n <= available[k] for k, n in taken.items())
    for ln in wanted:
        assert sum(p.qty for p in plan if p.sku == ln.sku) == ln.qty
    shuffled = slots[:]
    rnd.shuffle(shuffled)
    assert plan_allocation(wanted, shuffled, **kwargs) == plan  # type: ignore[arg-type]


# --- validate_lines ---------------------------------------------------------------------------


@pytest.mark.parametrize("qty", [1, 7, MAX_LINE_QTY])
def test_valid_quantities_pass(qty: int) -> None:
    validate_lines(lines(("TEE", qty), ("MUG", 1)))


@pytest.mark.parametrize("qty", [0, -1, -100, MAX_LINE_QTY + 1, 10**9])
def test_bad_quantity_is_invalid_quantity_on_that_line(qty: int) -> None:
    with pytest.raises(InvalidQuantity) as err:
        validate_lines(lines(("MUG", 1), ("TEE", qty)))
    assert err.value.code == "invalid_quantity"
    assert err.value.field == "lines[1].qty"
    assert err.value.items == [
        {
            "field": "lines[1].qty",
            "sku": "TEE",
            "qty": qty,
            "reason": f"qty must be between 1 and {MAX_LINE_QTY}",
        }
    ]


def test_no_lines_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        validate_lines([])
    assert (err.value.code, err.value.field) == ("invalid_request", "lines")


def test_duplicate_sku_is_refused_and_points_at_the_repeat() -> None:
    with pytest.raises(ValidationError) as err:
        validate_lines(lines(("TEE", 1), ("MUG", 1), ("TEE", 2)))
    assert err.value.field == "lines[2].sku"
    assert [i["field"] for i in err.value.items] == ["lines[2].sku"]
    assert "lines[0]" in err.value.items[0]["reason"]


def test_every_bad_line_is_collected_into_one_error() -> None:
    with pytest.raises(InvalidQuantity) as err:
        validate_lines(lines(("A", 0), ("B", 5), ("C", -3), ("A", 2), ("D", MAX_LINE_QTY + 1)))
    assert err.value.field == "lines[0].qty"
    assert [i["field"] for i in err.value.items] == [
        "lines[0].qty",
        "lines[2].qty",
        "lines[3].sku",
        "lines[4].qty",
    ]
    for name in ("lines[0].qty", "lines[2].qty", "lines[3].sku", "lines[4].qty"):
        assert name in err.value.message


# --- codes and money --------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["EUR", "USD", "JPY", "CHF"])
def test_known_currencies(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize("code", ["eur", "XXX", "EURO", "", "XAU", " EUR"])
def test_unknown_currency(code: str) -> None:
    with pytest.raises(UnknownCurrency) as err:
        check_currency(code, field="price.currency")
    assert (err.value.code, err.value.field) == ("unknown_currency", "price.currency")


@pytest.mark.parametrize("code", [None, "DE", "FR", "US", "GB"])
def test_known_countries(code: str | None) -> None:
    assert check_country(code, "country") == code


@pytest.mark.parametrize("code", ["de", "DEU", "XX", "UK", "", "D"])
def test_unknown_country(code: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_country(code, "shipping_country")
    assert (err.value.code, err.value.field) == ("unknown_country", "shipping_country")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.675", "2.68"),
        ("2.665", "2.67"),  # half up, not banker's rounding
        ("0.005", "0.01"),
        ("0.0049", "0.00"),
        ("-2.675", "-2.68"),
        (3, "3.00"),
        ("19.99", "19.99"),
        (Decimal("1E+3"), "1000.00"),
    ],
)
def test_money_rounds_half_up_to_cents(value: Decimal | int | str, expected: str) -> None:
    result = money(value)
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -2


# --- card numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pan",
    [
        "4111111111111111",  # Visa test card
        "5555555555554444",  # Mastercard
        "378282246310005",  # Amex (15)
        "6011111111111117",  # Discover
        "4000000000006",  # 13 digits
        "6304000000000000000",  # 19 digits
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782 822463 10005",
    ],
)
def test_card_numbers_are_recognised(pan: str) -> None:
    assert looks_like_pan(pan)


@pytest.mark.parametrize(
    "value",
    [
        "123456789015",  # 12 digits (passes Luhn)
        "12345678901234567894",  # 20 digits (passes Luhn)
        "4111111111111112",  # 16 digits, fails Luhn
        "4111 1111 1111 111x",
        "4111.1111.1111.1111",
        "",
        "fp_9f86d081884c7d65",
        "1234",
    ],
)
def test_other_strings_are_not_card_numbers(value: str) -> None:
    assert not looks_like_pan(value)


@pytest.mark.parametrize(
    "value",
    [
        "4111111111111111",  # whole values, as looks_like_pan
        "4111 1111 1111 1111",
        "fp_4111111111111111",  # inside an id, between non-alphanumerics
        "tx-5555555555554444-2",
        "card 4111 1111 1111 1111 declined",  # inside text, grouped
        "paid with 378282246310005 yesterday",
        "call me: 4111-1111-1111-1111",
    ],
)
def test_card_numbers_inside_values_are_recognised(value: str) -> None:
    assert carries_pan(value)


@pytest.mark.parametrize(
    "value",
    [
        "card 4111111111111112 declined",  # fails Luhn
        "ab4111111111111111",  # glued to letters: part of an identifier
        "order 12345678901234567894 shipped",  # 20 digits
        "call +49 151 2345 6789 0",  # a phone number
        "ids 1732712345678 and 1732712345679",  # millisecond timestamps (start with 1)
        "ev_41111111-1111-1111-1111-111111111111",  # a UUID's groups
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a digest
        "fp_9f86d081884c7d65",
    ],
)
def test_other_values_carry_no_card_number(value: str) -> None:
    assert not carries_pan(value)


@pytest.mark.parametrize(("digits", "ok"), [("79927398713", True), ("79927398710", False)])
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_valid(digits) is ok
