"""Training reports built from small synthetic arrays: a self-contained HTML page with the
expected sections and PNG images embedded as data URIs; empty and degenerate inputs (one class,
no test users, an estimate without an interval) give a page that says so."""

from __future__ import annotations

import base64
import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import numpy as np
import pytest
import scipy.sparse as sp
import xgboost as xgb

from engine.fraud.inputs import INPUTS
from engine.pricing.elasticity import Estimate
from training.recommend.metrics import coverage, coverage_curve, curves, ranking_metrics
from training.reporting import fraud_report, gain_importance, pricing_report, recs_report
from training.reporting.fraud import calibration_bins
from training.reporting.page import Header, Section, key_values, render
from training.reporting.recs import popularity_percentile

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
CREATED = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


class _Tags(HTMLParser):
    """Open and close tags, to check that every element opened is closed in order."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)


def _check_page(html: str, *, images: int) -> list[str]:
    """The page is well nested, starts with a doctype, and embeds ``images`` PNGs; returns
    its section headings."""
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    parser = _Tags()
    parser.feed(html)
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    found = IMAGE.findall(html)
    assert len(found) == images
    for data in found:
        assert base64.b64decode(data, validate=True)[:8] == PNG_MAGIC
    assert "<script" not in html and "http://" not in html and "https://" not in html
    return parser.headings


# --- the page -------------------------------------------------------------------------------------


def test_page_header_tables_and_escaping() -> None:
    header: Header = {
        "title": "fraud <model>",
        "version": "7",
        "created": CREATED,
        "metrics": {"roc_auc": 0.91234567, "broken": float("nan"), "rows": 12345.0},
        "params": {"xgboost": {"max_depth": 4}, "grid_size": 1},
        "snapshot": {"data.rows": 10},
    }
    html = render([Section("Notes & more").add("<p>x</p>")], header, default_title="x")
    headings = _check_page(html, images=0)
    assert headings == ["Metrics", "Parameters", "Data snapshot", "Notes & more"]
    assert "fraud &lt;model&gt; — version 7" in html and "2026-05-01 12:30:00 UTC" in html
    assert ">0.9123<" in html and ">n/a<" in html and ">12345<" in html
    assert ">xgboost.max_depth<" in html
    untitled = render([], {"metrics": {"x": 1.0}}, default_title="Recommender")
    assert "<h1>Recommender</h1>" in untitled and "version" not in untitled


def test_key_values_flattens_nested_mappings_sorted() -> None:
    html = key_values({"b": 1, "a": {"c": True}})
    assert html.index(">a.c<") < html.index(">b<") and ">true<" in html


# --- fraud ----------------------------------------------------------------------------------------


def _fraud_data(n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    label = (rng.random(n) < 0.1).astype(np.int64)
    new = np.clip(0.6 * label + rng.normal(0.2, 0.15, n), 0, 1)
    old = np.clip(0.3 * label + rng.normal(0.25, 0.2, n), 0, 1)
    return label, new, old


def test_fraud_report_has_every_section_and_image() -> None:
    label, new, old = _fraud_data()
    importance = {name: float(i + 1) for i, name in enumerate(INPUTS[:25])}
    html = fraud_report(
        label,
        {"new model": new, "champion v1": old},
        title="cartwise-fraud",
        version="2",
        importance=importance,
        metrics={"average_precision": 0.7},
        params={"xgboost": {"max_depth": 4}},
        snapshot={"data.rows": 600},
        created=CREATED,
    )
    headings = _check_page(html, images=5)
    assert headings[3:] == [
        "ROC curve",
        "Precision-recall curve",
        "Calibration",
        "Feature importance (gain, top 20)",
        "Score distribution by label",
    ]
    assert "champion v1" not in html.split("Probability bins of")[1].split("</p>")[0]
    assert 'class="note"' not in html


def test_fraud_report_with_one_class_says_so() -> None:
    _, new, _ = _fraud_data()
    html = fraud_report(np.zeros(len(new)), {"new model": new}, importance={}, created=CREATED)
    headings = _check_page(html, images=2)  # calibration and the score distribution
    assert "ROC curve" in headings and "Precision-recall curve" in headings
    assert "0 are fraud; the curve needs both classes" in html
    assert "The test window holds only one class." in html
    assert "the model made no splits" in html


def test_fraud_report_with_no_rows_says_so() -> None:
    html = fraud_report(np.array([]), {"new model": np.array([])}, created=CREATED)
    _check_page(html, images=0)
    assert html.count("No scored test rows.") == 2


def test_calibration_bins_count_every_row_and_leave_empty_bins_nan() -> None:
    label = np.array([0, 0, 1, 1, 1])
    score = np.array([0.05, 0.15, 0.95, 1.0, 0.92])
    bins = calibration_bins(label, score, bins=10)
    assert sum(b[2] for b in bins) == 5
    assert bins[0][2:] == (1, pytest.approx(0.05), 0.0)
    assert bins[9][2:] == (3, pytest.approx(0.9566666), 1.0)
    assert math.isnan(bins[5][3]) and math.isnan(bins[5][4])


def test_gain_importance_names_the_inputs() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 2] > 0).astype(np.int64)
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y)
    gain = gain_importance(model.get_booster(), ("a", "b", "c"))
    assert max(gain, key=lambda k: gain[k]) == "c" and set(gain) <= {"a", "b", "c"}


# --- recommendations ------------------------------------------------------------------------------


def _recs_data() -> tuple[dict[str, np.ndarray], sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(2)
    users, items, k = 40, 30, 5
    als = np.array([rng.permutation(items)[:k] for _ in range(users)], dtype=np.int64)
    als[0, 3:] = -1  # a short list, padded
    popular = np.tile(np.arange(k, dtype=np.int64), (users, 1))
    truth = sp.csr_matrix(
        (np.ones(users * 3), (np.repeat(np.arange(users), 3), rng.integers(0, items, users * 3))),
        shape=(users, items),
    )
    truth.sum_duplicates()
    counts = np.arange(items, 0, -1)  # item 0 most popular
    return {"ALS": als, "popularity": popular}, truth, counts


def test_recs_report_has_curves_coverage_and_popularity_bias() -> None:
    recommended, truth, counts = _recs_data()
    html = recs_report(
        recommended, truth, counts, title="cartwise-recs", version="3", created=CREATED
    )
    headings = _check_page(html, images=3)
    assert headings == [
        "Precision and recall at k = 1..5",
        "Catalogue coverage",
        "Popularity bias",
    ]
    for text in ("ALS precision", "popularity recall", "mean popularity percentile"):
        assert text in html


def test_recs_report_without_test_users_says_so() -> None:
    empty = sp.csr_matrix((0, 30))
    html = recs_report({"ALS": np.zeros((0, 5), dtype=np.int64)}, empty, np.ones(30))
    _check_page(html, images=0)
    assert html.count("No test users with recommendations") == 3


def test_curves_end_at_the_ranking_metrics() -> None:
    recommended, truth, _ = _recs_data()
    for recs in recommended.values():
        curve = curves(recs, truth, 5)
        at_k = ranking_metrics(recs, truth, 5, catalogue_size=30)
        assert curve["precision"][-1] == pytest.approx(at_k["precision@5"])
        assert curve["recall"][-1] == pytest.approx(at_k["recall@5"])
        assert np.all(np.diff(curve["recall"]) >= 0)
        at_2 = ranking_metrics(recs, truth, 2, catalogue_size=30)
        assert curve["precision"][1] == pytest.approx(at_2["precision@2"])
        cov = coverage_curve(recs, 5, 30)
        assert [cov[j] for j in (0, 4)] == [
            pytest.approx(coverage(recs[:, : j + 1], 30)) for j in (0, 4)
        ]


def test_popularity_percentile_is_mid_rank() -> None:
    assert popularity_percentile(np.array([1, 2, 2, 5])).tolist() == [12.5, 50.0, 50.0, 87.5]


# --- pricing --------------------------------------------------------------------------------------


def _estimate(level: str, key: str, e: float, se: float) -> Estimate:
    """An estimate with a 95% interval of ``e`` +- 1.96 ``se`` (NaN ``se``: no interval)."""
    category = "shoes" if level == "sku" else key
    return Estimate(
        level, key, category, e, se, e - 1.96 * se, e + 1.96 * se, 100, 500, 0.1, 0.2, "ok"
    )


def test_pricing_report_plots_each_level_sorted_with_a_table() -> None:
    estimates = [
        _estimate("category", "shoes", -1.8, 0.2),
        _estimate("category", "hats", -0.6, 0.3),
        _estimate("sku", "SKU-1", -2.5, 0.4),
        _estimate("sku", "SKU-2", -1.2, 0.9),
    ]
    html = pricing_report(
        estimates,
        title="cartwise-pricing",
        version="4",
        metrics={"categories": 2.0},
        params={"seasonality": "dow+month"},
        created=CREATED,
    )
    headings = _check_page(html, images=2)
    assert headings == [
        "Metrics",
        "Parameters",
        "Category elasticities",
        "SKU elasticities",
        "All estimates",
    ]
    assert "cartwise-pricing — version 4" in html and html.count("<tr>") >= 5 + 2 + 1


def test_pricing_report_names_estimates_without_value_or_interval() -> None:
    nan = float("nan")
    no_interval = _estimate("category", "hats", -1.4, nan)
    failed = Estimate("sku", "SKU-9", "hats", nan, nan, nan, nan, 3, 0, 0.0, nan, "no_variation")
    html = pricing_report([no_interval, failed], created=CREATED)
    _check_page(html, images=1)
    assert "No confidence interval for: hats" in html
    assert "No estimate for: SKU-9" in html and "no_variation" in html


def test_pricing_report_without_estimates_says_so() -> None:
    html = pricing_report([], created=CREATED)
    assert _check_page(html, images=0) == ["All estimates"]
    assert "No estimates: nothing was fitted." in html
