"""The recommender's training report: precision@k and recall@k for k = 1..K, catalogue
coverage and popularity bias of each model (ALS and the popularity baseline), on the test
users of the evaluation split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import numpy.typing as npt

from training.recommend.als import matrix
from training.recommend.metrics import Sparse, coverage_curve, curves
from training.reporting.page import (
    Header,
    Section,
    figure,
    new_figure,
    note,
    paragraph,
    render,
    table,
)

if TYPE_CHECKING:
    from training.recommend.train import Evaluation

Recs = Mapping[str, npt.NDArray[np.integer[Any]]]
HEAD_SHARE = 0.1  # "the most popular items": the top tenth of the catalogue


def popularity_percentile(item_counts: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each item's popularity percentile in the catalogue (0-100, mid-rank for ties): the
    share of items less popular, plus half of those as popular."""
    counts = np.asarray(item_counts, dtype=np.float64)
    order = np.sort(counts)
    below = np.searchsorted(order, counts, side="left")
    equal = np.searchsorted(order, counts, side="right") - below
    return np.asarray(100.0 * (below + 0.5 * equal) / max(len(counts), 1))


def _ranking(recommended: Recs, relevant: Sparse, k: int) -> Section:
    section = Section(f"Precision and recall at k = 1..{k}")
    fig = new_figure(10, 4)
    ax_p, ax_r = fig.subplots(1, 2)
    ks = np.arange(1, k + 1)
    values = {name: curves(recs, relevant, k) for name, recs in recommended.items()}
    for name, curve in values.items():
        ax_p.plot(ks, curve["precision"], marker="o", label=name)
        ax_r.plot(ks, curve["recall"], marker="o", label=name)
    for ax, what in ((ax_p, "precision@k"), (ax_r, "recall@k")):
        ax.set(xlabel="k", ylabel=what, title=f"{what}, test users")
        ax.set_xticks(ks)
        ax.legend()
        ax.grid(alpha=0.3)
    section.add(figure(fig, "Precision@k and recall@k of each model on the test users"))
    header = ["k"] + [f"{name} {m}" for name in values for m in ("precision", "recall")]
    rows = [
        [j + 1] + [float(c[m][j]) for c in values.values() for m in ("precision", "recall")]
        for j in range(k)
    ]
    return section.add(table(header, rows))


def _coverage(recommended: Recs, n_items: int, k: int) -> Section:
    section = Section("Catalogue coverage")
    fig = new_figure(6, 4)
    ax = fig.subplots()
    ks = np.arange(1, k + 1)
    for name, recs in recommended.items():
        ax.plot(ks, coverage_curve(recs, k, n_items), marker="o", label=name)
    ax.set(xlabel="k", ylabel="share of the catalogue", title="Items recommended in the top k")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(alpha=0.3)
    return section.add(
        paragraph(
            f"Share of the catalogue's {n_items} items recommended to at least one test user "
            "in their top k."
        ),
        figure(fig, "Catalogue coverage at k"),
    )


def _popularity(recommended: Recs, relevant: Sparse, item_counts: npt.NDArray[Any]) -> Section:
    section = Section("Popularity bias")
    n_items = len(item_counts)
    percentile = popularity_percentile(item_counts)
    rank = np.empty(n_items, dtype=np.int64)
    rank[np.argsort(-np.asarray(item_counts), kind="stable")] = np.arange(1, n_items + 1)
    head = rank <= max(1, round(HEAD_SHARE * n_items))
    test_items = np.asarray(relevant.indices, dtype=np.int64)
    groups: dict[str, npt.NDArray[np.int64]] = {
        "catalogue": np.arange(n_items, dtype=np.int64),
        "test interactions": test_items,
    }
    for name, recs in recommended.items():
        flat = np.asarray(recs, dtype=np.int64).ravel()
        groups[name] = flat[flat >= 0]
    rows = [
        (name, len(items), _mean(percentile[items]), _mean(head[items]))
        for name, items in groups.items()
    ]
    fig = new_figure(7, 4)
    ax = fig.subplots()
    seen = np.bincount(test_items, minlength=n_items)
    ax.plot(rank, seen, ".", color="grey", alpha=0.5, label="test interactions")
    for name in recommended:
        times = np.bincount(groups[name], minlength=n_items)
        ax.plot(rank, times, ".", alpha=0.7, label=name)
    ax.set(xlabel="item popularity rank in training (1 = most popular)", ylabel="times")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_title("How often each item is recommended, by popularity")
    ax.legend()
    ax.grid(alpha=0.3)
    share = f"{HEAD_SHARE:.0%}"
    return section.add(
        paragraph(
            "Popularity: the number of training users of an item.  Mean popularity percentile "
            f"(50 = a typical item) and share in the {share} most popular items, of the "
            "catalogue, of the test interactions, and of each model's recommendations."
        ),
        table(("of", "entries", "mean popularity percentile", f"share in top {share}"), rows),
        figure(fig, "Times recommended (and seen in test) by item popularity rank"),
    )


def _mean(values: npt.NDArray[Any]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def recs_report(
    recommended: Recs,
    relevant: Sparse,
    item_counts: npt.NDArray[Any],
    **header: Unpack[Header],
) -> str:
    """The report's HTML.  ``recommended``: model name -> top-K item ids of each test user
    (``[users, K]``, -1 padded; ALS first, then the baseline); ``relevant``: the test items of
    the same users (CSR rows); ``item_counts``: each catalogue item's training popularity (its
    length is the catalogue size); ``header``: see ``page.Header``.  No test users gives notes
    instead of curves."""
    users = len(relevant.indptr) - 1
    k = max((np.asarray(r).shape[1] for r in recommended.values()), default=0)
    if users == 0 or k == 0:
        why = note("No test users with recommendations: nothing to measure.")
        sections = [
            Section(name).add(why)
            for name in ("Precision and recall at k", "Catalogue coverage", "Popularity bias")
        ]
    else:
        sections = [
            _ranking(recommended, relevant, k),
            _coverage(recommended, len(item_counts), k),
            _popularity(recommended, relevant, np.asarray(item_counts)),
        ]
    return render(sections, header, default_title="Recommender")


def evaluation_report(ev: Evaluation, **header: Unpack[Header]) -> str:
    """``recs_report`` of an evaluation's ALS and popularity recommendations on its test
    users, popularity being each item's number of training users."""
    truth = matrix(ev.test_pairs, ev.encoded.shape)[ev.test_users]
    popularity = np.bincount(ev.train_pairs["item"], minlength=ev.encoded.shape[1])
    recommended = {"ALS": ev.recommendations, "popularity": ev.baseline_recommendations}
    return recs_report(recommended, truth, popularity, **header)
