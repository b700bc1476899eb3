"""Sticky assignment: deterministic buckets, splits that follow the weights, and the rules a
set of variants must follow."""

from __future__ import annotations

import hashlib

import pytest
from scipy import stats

from engine.errors import ValidationError
from engine.experiments.assignment import (
    BUCKETS,
    Split,
    Variant,
    bucket,
    control,
    parse_variants,
)

pytestmark = pytest.mark.unit


def variants(*weights: float) -> tuple[Variant, ...]:
    return parse_variants(
        [{"name": f"v{i}", "weight": w, "config": {}} for i, w in enumerate(weights)]
    )


def test_the_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"exp-1:cus-42").hexdigest()
    assert bucket("exp-1", "cus-42") == int(digest[:8], 16) % 10_000
    assert 0 <= bucket("exp-1", "cus-42") < BUCKETS


def test_assignment_is_deterministic_and_sticky() -> None:
    split = Split.of(variants(50, 50))
    first = [split.choose("exp", f"c{i}").name for i in range(1000)]
    again = [Split.of(variants(50, 50)).choose("exp", f"c{i}").name for i in range(1000)]
    assert first == again  # another replica, another process: the same answer
    assert {split.choose("exp", "c7").name for _ in range(50)} == {first[7]}


def test_experiments_split_independently() -> None:
    split = Split.of(variants(50, 50))
    a = [split.choose("exp-a", f"c{i}").name for i in range(4000)]
    b = [split.choose("exp-b", f"c{i}").name for i in range(4000)]
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    assert 0.45 < same < 0.55  # unrelated keys: agreement by chance only


@pytest.mark.parametrize("weights", [(50, 50), (10, 90), (20, 30, 50), (33.33, 33.33, 33.34)])
def test_the_split_follows_the_weights_on_100k_customers(weights: tuple[float, ...]) -> None:
    vs = variants(*weights)
    split = Split.of(vs)
    counts = dict.fromkeys((v.name for v in vs), 0)
    n = 100_000
    for i in range(n):
        counts[split.choose("split-test", f"customer-{i}").name] += 1
    expected = [n * w / 100 for w in weights]
    _, p = stats.chisquare(list(counts.values()), expected)
    assert p > 0.001, (counts, expected)
    for got, want in zip(counts.values(), expected, strict=True):
        assert abs(got - want) / want < 0.05


def test_bounds_cover_every_bucket() -> None:
    split = Split.of(variants(12.5, 37.5, 50))
    assert split.bounds == (1250, 5000, 10_000)
    names = {v.name for v in split.variants}
    assert {split.choose("k", str(i)).name for i in range(2000)} == names


def test_control_is_named_control_else_the_first() -> None:
    named = parse_variants(
        [
            {"name": "new", "weight": 50, "config": {}},
            {"name": "control", "weight": 50},
        ]
    )
    assert control(named).name == "control"
    assert control(variants(50, 50)).name == "v0"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([{"name": "a", "weight": 100}], "variants"),
        ([{"name": f"v{i}", "weight": 100 / 11} for i in range(11)], "variants"),
        ([{"name": "a", "weight": 50}, {"name": "a", "weight": 50}], "variants[1].name"),
        ([{"name": "a", "weight": 60}, {"name": "b", "weight": 30}], "variants"),
        ([{"name": "a", "weight": 50}, {"name": "b", "weight": 0}], "variants[1].weight"),
        ([{"name": "a", "weight": 150}, {"name": "b", "weight": -50}], "variants[0].weight"),
        ([{"name": "a", "weight": "50"}, {"name": "b", "weight": 50}], "variants[0].weight"),
        ([{"name": "a", "weight": True}, {"name": "b", "weight": 99}], "variants[0].weight"),
        ([{"name": "a", "weight": 50.001}, {"name": "b", "weight": 49.999}], "variants[0].weight"),
        ([{"name": "Bad Name", "weight": 50}, {"name": "b", "weight": 50}], "variants[0].name"),
        ([{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "x": 1}], "variants[1].x"),
        (
            [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "config": [1]}],
            "variants[1].config",
        ),
        ([{"name": "a", "weight": 50}, "b"], "variants[1]"),
        ("ab", "variants"),
    ],
)
def test_bad_variants_name_the_field(raw: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_variants(raw)
    assert err.value.field == field


def test_weights_in_percent_with_two_decimals_are_accepted() -> None:
    vs = variants(33.33, 33.33, 33.34)
    assert [v.weight for v in vs] == [33.33, 33.33, 33.34]
    assert Split.of(vs).bounds == (3333, 6666, 10_000)
