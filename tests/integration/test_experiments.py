"""Experiments on the real databases (SQLite and PostgreSQL): the lifecycle and its errors,
exposures written behind the request, and results computed in SQL on a small hand-built store
whose numbers are worked out by hand (and the intervals by statsmodels / scipy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select
from statsmodels.stats.proportion import proportion_confint, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.schema import Order
from engine.errors import AlreadyExists, InvalidTransition, NotFound, ValidationError
from engine.events import MessageBus
from engine.experiments.schema import ExperimentExposure
from engine.experiments.service import Experiments
from engine.pricing.config import PricingConfig
from engine.recommend.widgets import WidgetStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
HALVES = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exps(db: Database, clock: Clock) -> Any:
    WidgetStore(db).seed_defaults()
    PricingConfig(db).seed_defaults()
    e = Experiments(db, poll_s=0, clock=clock)
    yield e
    e.close()


def test_lifecycle_draft_running_stopped(exps: Experiments, clock: Clock) -> None:
    exp = exps.create("home-k", "Shorter home", "widget", "home", HALVES, description="k test")
    assert (exp.status, exp.control, exp.started_at) == ("draft", "control", None)
    assert exps.assign("widget", "home", "c1") is None  # a draft assigns nobody
    clock.now = T0 + timedelta(hours=1)
    started = exps.start("home-k")
    assert (started.status, started.started_at) == ("running", clock.now)
    assigned = exps.assign("widget", "home", "c1")
    assert assigned is not None and assigned.key == "home-k"
    assert assigned.variant == exps.assignment("home-k", "c1")["variant"]
    assert exps.assign("widget", "cart", "c1") is None  # another target
    assert [e.key for e in exps.list("running")] == ["home-k"]
    clock.now = T0 + timedelta(hours=2)
    stopped = exps.stop("home-k")
    assert (stopped.status, stopped.stopped_at) == ("stopped", clock.now)
    assert exps.assign("widget", "home", "c1") is None
    assert exps.get("home-k").public()["target"] == {"kind": "widget", "name": "home"}
    assert exps.assignment("home-k", "c1") == {
        "key": "home-k",
        "variant": assigned.variant,
        "status": "stopped",
    }


def test_wrong_transitions_and_duplicates_conflict(exps: Experiments) -> None:
    exps.create("a", "A", "widget", "home", HALVES)
    with pytest.raises(AlreadyExists):
        exps.create("a", "A again", "widget", "home", HALVES)
    with pytest.raises(InvalidTransition):
        exps.stop("a")  # a draft does not stop
    exps.start("a")
    with pytest.raises(InvalidTransition):
        exps.start("a")
    exps.create("b", "B", "widget", "home", HALVES)
    with pytest.raises(InvalidTransition) as err:
        exps.start("b")  # one running experiment per target
    assert err.value.field == "target"
    with pytest.raises(InvalidTransition) as err:
        exps.update("a", variants=[{"name": "control", "weight": 10}, {"name": "x", "weight": 90}])
    assert err.value.field == "variants"
    assert exps.update("a", name="A renamed").name == "A renamed"  # a name may change
    exps.stop("a")
    with pytest.raises(InvalidTransition):
        exps.start("a")  # stopping is final
    assert exps.start("b").status == "running"  # the target is free again
    with pytest.raises(NotFound):
        exps.get("nope")
    with pytest.raises(NotFound):
        exps.start("nope")


def test_a_draft_may_change_its_variants(exps: Experiments) -> None:
    exps.create("d", "D", "widget", "home", HALVES)
    changed = exps.update(
        "d", variants=[{"name": "control", "weight": 20}, {"name": "t", "weight": 80}]
    )
    assert [(v.name, v.weight) for v in changed.variants] == [("control", 20.0), ("t", 80.0)]
    assert changed.version == 2


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("Bad Key", "n", "widget", "home", HALVES), "key"),
        (("k", "", "widget", "home", HALVES), "name"),
        (("k", "n", "banner", "home", HALVES), "target.kind"),
        (("k", "n", "widget", "nope", HALVES), "target"),
        (("k", "n", "recommender", "home", HALVES), "target"),
        (("k", "n", "price_rule", "nope", HALVES), "target"),
        (("k", "n", "price_rule", "demand", HALVES), "target"),
        (("k", "n", "widget", "home", HALVES[:1]), "variants"),
        (
            (
                "k",
                "n",
                "widget",
                "home",
                [HALVES[0], {"name": "t", "weight": 50, "config": {"k": 3}}],
            ),
            "variants[1].config.k",
        ),
        (
            (
                "k",
                "n",
                "widget",
                "home",
                [HALVES[0], {"name": "t", "weight": 50, "config": {"widget": "nope"}}],
            ),
            "variants[1].config.widget",
        ),
        (
            (
                "k",
                "n",
                "widget",
                "home",
                [HALVES[0], {"name": "t", "weight": 50, "config": {"overrides": {"k": 0}}}],
            ),
            "variants[1].config.overrides.k",
        ),
        (
            (
                "k",
                "n",
                "recommender",
                "recs",
                [HALVES[0], {"name": "t", "weight": 50, "config": {"model_version": 3}}],
            ),
            "variants[1].config.model_version",
        ),
        (
            (
                "k",
                "n",
                "price_rule",
                "loyalty",
                [HALVES[0], {"name": "t", "weight": 50, "config": {"enabled": "no"}}],
            ),
            "variants[1].config.enabled",
        ),
        (
            (
                "k",
                "n",
                "price_rule",
                "loyalty",
                [
                    HALVES[0],
                    {"name": "t", "weight": 50, "config": {"params": {"tiers": {"gold": 95}}}},
                ],
            ),
            "variants[1].config.params.tiers.gold",
        ),
    ],
)
def test_bad_experiments_name_the_field_and_write_nothing(
    exps: Experiments, args: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        exps.create(*args)
    assert err.value.field == field
    assert exps.list() == []


def test_batch_priced_rules_cannot_be_split(exps: Experiments) -> None:
    with pytest.raises(ValidationError) as err:
        exps.create("p", "P", "price_rule", "elasticity", HALVES)
    assert err.value.field == "target" and "shelf price" in err.value.message


def test_exposures_are_logged_once_per_customer_with_counts(
    exps: Experiments, db: Database, clock: Clock
) -> None:
    exps.create("e", "E", "widget", "home", HALVES)
    exps.start("e")
    first = clock.now = T0 + timedelta(minutes=5)
    for _ in range(3):
        exps.assign("widget", "home", "c1")
    exps.exposures.flush()
    clock.now = T0 + timedelta(minutes=9)
    exps.assign("widget", "home", "c1")
    exps.assign("widget", "home", "c2")
    exps.assign("widget", "home", "c3", log=False)  # looked at, not shown
    exps.exposures.flush()
    with db.transaction(readonly=True) as s:
        rows = {
            r.customer_id: (r.variant, r.first_exposed_at, r.exposures)
            for r in s.scalars(select(ExperimentExposure))
        }
    assert rows == {
        "c1": (exps.assignment("e", "c1")["variant"], first, 4),
        "c2": (exps.assignment("e", "c2")["variant"], clock.now, 1),
    }


# --- results on a hand-built store ------------------------------------------------------------
def _customers_by_variant(exps: Experiments, key: str, n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"control": [], "treatment": []}
    i = 0
    while min(len(v) for v in out.values()) < n:
        cid = f"cus-{i}"
        variant = exps.assignment(key, cid)["variant"]
        if len(out[variant]) < n:
            out[variant].append(cid)
        i += 1
    return out


def _order(db: Database, n: int, customer: str, total: str, status: str, at: datetime) -> None:
    with db.transaction() as s:
        s.add(
            Order(
                id=f"ord-{n}",
                customer_id=customer,
                status=status,
                currency="EUR",
                total=Decimal(total),
                created_at=at,
                updated_at=at,
            )
        )


def test_results_per_variant_match_the_hand_computed_numbers(
    exps: Experiments, db: Database, clock: Clock
) -> None:
    exps.create("res", "Results", "widget", "home", HALVES)
    groups = _customers_by_variant(exps, "res", 5)
    catalog = Catalog(db, MessageBus())
    for cid in groups["control"] + groups["treatment"]:
        catalog.create_customer(id=cid, email=f"{cid}@example.com")
    a, b = groups["control"][:4], groups["treatment"]
    clock.now = T0
    exps.start("res")
    exposed = T0 + timedelta(hours=1)
    clock.now = exposed
    for cid in a + b:
        exps.assign("widget", "home", cid)
    clock.now = exposed + timedelta(hours=5)  # a later exposure does not move the first
    exps.assign("widget", "home", a[0])
    after, before = exposed + timedelta(hours=2), exposed - timedelta(minutes=1)
    orders = [
        (a[0], "5.00", "paid", before),  # before the exposure: does not count
        (a[0], "10.00", "paid", after),
        (a[1], "50.00", "cancelled", after),  # never sold
        (a[2], "20.00", "delivered", after),
        (a[2], "30.00", "shipped", after),
        (b[0], "40.00", "paid", after),
        (b[1], "25.00", "placed", after),  # not paid (yet)
        (b[2], "15.00", "refunded", after),  # money given back
        (b[2], "8.00", "fulfilled", after),
        (b[3], "100.00", "paid", exposed + timedelta(days=3)),  # after the stop
        (b[4], "12.00", "paid", exposed),  # at the exposure: counts
    ]
    for n, (cid, total, status, at) in enumerate(orders):
        _order(db, n, cid, total, status, at)
    clock.now = exposed + timedelta(days=2)
    exps.stop("res")

    got = exps.results("res")
    assert (got["key"], got["status"], got["control"]) == ("res", "stopped", "control")
    assert got["target"] == {"kind": "widget", "name": "home"}
    ctl, trt = got["variants"]
    ctl_rev, trt_rev = [10.0, 0.0, 50.0, 0.0], [40.0, 0.0, 8.0, 0.0, 12.0]
    assert (ctl["visitors"], ctl["converters"], ctl["revenue"]) == (4, 2, 60.0)
    assert (trt["visitors"], trt["converters"], trt["revenue"]) == (5, 3, 60.0)
    assert ctl["conversion_rate"] == 0.5 and trt["conversion_rate"] == pytest.approx(0.6)
    assert ctl["revenue_per_visitor"] == 15.0 and trt["revenue_per_visitor"] == 12.0
    for v, conv, n, rev in ((ctl, 2, 4, ctl_rev), (trt, 3, 5, trt_rev)):
        assert v["conversion_ci"] == pytest.approx(
            list(proportion_confint(conv, n, method="wilson"))
        )
        half = stats.norm.ppf(0.975) * np.std(rev, ddof=1) / np.sqrt(len(rev))
        assert v["rpv_ci"] == pytest.approx([np.mean(rev) - half, np.mean(rev) + half])
    assert ctl["vs_control"] is None
    vs = trt["vs_control"]
    assert vs["conversion_lift"] == pytest.approx(0.1)
    se = np.sqrt(0.6 * 0.4 / 5 + 0.5 * 0.5 / 4)
    assert vs["conversion_lift_ci"] == pytest.approx([0.1 - 1.959964 * se, 0.1 + 1.959964 * se])
    _, p = proportions_ztest([3, 2], [5, 4])
    assert vs["conversion_p_value"] == pytest.approx(p)
    assert vs["rpv_lift"] == pytest.approx(-3.0)
    welch = stats.ttest_ind(trt_rev, ctl_rev, equal_var=False)
    assert vs["rpv_p_value"] == pytest.approx(welch.pvalue)
    compare = CompareMeans(DescrStatsW(trt_rev), DescrStatsW(ctl_rev))
    assert vs["rpv_lift_ci"] == pytest.approx(list(compare.tconfint_diff(usevar="unequal")))


def test_results_of_an_experiment_nobody_saw(exps: Experiments) -> None:
    exps.create("quiet", "Q", "widget", "home", HALVES)
    got = exps.results("quiet")
    assert [v["visitors"] for v in got["variants"]] == [0, 0]
    assert got["variants"][0]["conversion_ci"] is None and got["variants"][1]["vs_control"] is None
    with pytest.raises(NotFound):
        exps.results("nope")
