"""Ranking metrics against hand-computed cases and a pandas re-statement of Microsoft
Recommenders' ``python_evaluation`` definitions (merge on common users, top k by rank, hits)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.recommend.metrics import (
    coverage,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

pytestmark = pytest.mark.unit

# user A: hits at ranks 2 and 5 of 5, 3 relevant; B: hit at rank 1, 1 relevant, only 2 recs;
# C: no hit
RECS = [["a1", "a2", "a3", "a4", "a5"], ["b7", "b8"], ["a1", "a2", "a3", "a4", "a5"]]
RELEVANT = [{"a2", "a5", "z9"}, {"b7"}, {"c6"}]
LN = math.log


def test_hand_computed_at_5() -> None:
    ndcg_a = (1 / LN(3) + 1 / LN(6)) / (1 / LN(2) + 1 / LN(3) + 1 / LN(4))
    assert precision_at_k(RECS, RELEVANT, 5) == pytest.approx((2 / 5 + 1 / 5 + 0) / 3)
    assert recall_at_k(RECS, RELEVANT, 5) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert ndcg_at_k(RECS, RELEVANT, 5) == pytest.approx((ndcg_a + 1 + 0) / 3)
    # A: (1/2 + 2/5) / min(3, 5); B: (1/1) / 1
    assert map_at_k(RECS, RELEVANT, 5) == pytest.approx(((0.5 + 0.4) / 3 + 1 + 0) / 3)


def test_hand_computed_at_2_cuts_the_lists() -> None:
    # A sees a1, a2: hit at rank 2; IDCG over min(3, 2) = 2 ranks; MAP divides by min(3, 2)
    ndcg_a = (1 / LN(3)) / (1 / LN(2) + 1 / LN(3))
    assert precision_at_k(RECS, RELEVANT, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert recall_at_k(RECS, RELEVANT, 2) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert ndcg_at_k(RECS, RELEVANT, 2) == pytest.approx((ndcg_a + 1 + 0) / 3)
    assert map_at_k(RECS, RELEVANT, 2) == pytest.approx((0.5 / 2 + 1 + 0) / 3)


def test_perfect_and_empty() -> None:
    assert ndcg_at_k([[1, 2, 3]], [{3, 2, 1}], 3) == pytest.approx(1.0)
    assert map_at_k([[1, 2, 3]], [{3, 2, 1}], 3) == pytest.approx(1.0)
    assert precision_at_k([[1, 2, 3]], [{3, 2, 1}], 3) == pytest.approx(1.0)
    # more relevant items than k: recall < 1 but NDCG and MAP can reach 1
    assert recall_at_k([[1, 2]], [{1, 2, 3, 4}], 2) == pytest.approx(0.5)
    assert ndcg_at_k([[1, 2]], [{1, 2, 3, 4}], 2) == pytest.approx(1.0)
    assert map_at_k([[1, 2]], [{1, 2, 3, 4}], 2) == pytest.approx(1.0)
    # no recommendations at all: zero, and still counted
    assert precision_at_k([[], [1]], [{1}, {1}], 1) == pytest.approx(0.5)
    # a user without test items is not a test user
    assert precision_at_k([[1], [1]], [set(), {1}], 1) == pytest.approx(1.0)
    assert precision_at_k([], [], 10) == 0.0


def test_coverage() -> None:
    assert coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    assert coverage(np.array([[0, 1, -1], [1, 2, -1]]), 4) == pytest.approx(0.75)
    assert coverage([[1]], 0) == 0.0


def test_array_path_matches_list_path() -> None:
    names = {i for row in RECS for i in row} | set().union(*RELEVANT)
    items = {name: i for i, name in enumerate(sorted(names))}
    recs = np.full((3, 6), -1, dtype=np.int64)
    for u, row in enumerate(RECS):
        recs[u, : len(row)] = [items[i] for i in row]
    truth = sp.lil_matrix((3, len(items)), dtype=np.float32)
    for u, rel in enumerate(RELEVANT):
        for i in rel:
            truth[u, items[i]] = 1
    for k in (1, 2, 5, 8):
        got = ranking_metrics(recs, truth.tocsr(), k, catalogue_size=len(items))
        assert got[f"precision@{k}"] == pytest.approx(precision_at_k(RECS, RELEVANT, k))
        assert got[f"recall@{k}"] == pytest.approx(recall_at_k(RECS, RELEVANT, k))
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(RECS, RELEVANT, k))
        assert got[f"map@{k}"] == pytest.approx(map_at_k(RECS, RELEVANT, k))
        assert got["users"] == 3


def _recommenders_style(
    true: pd.DataFrame, pred: pd.DataFrame, k: int
) -> tuple[float, float, float, float]:
    """Recommenders' steps: common users; top k of the predictions by score, ranked 1..k;
    hits = merge with the truth; per user hit and actual counts; sums over n_users."""
    common = set(true["user"]) & set(pred["user"])
    true = true[true["user"].isin(common)]
    pred = pred[pred["user"].isin(common)]
    top = pred.sort_values(["user", "score"], ascending=[True, False]).groupby("user").head(k)
    top = top.assign(rank=top.groupby("user").cumcount() + 1)
    hit = top.merge(true, on=["user", "item"])[["user", "item", "rank"]]
    actual = true.groupby("user").size().rename("actual")
    per = hit.groupby("user").size().rename("hit").to_frame().join(actual, how="inner")
    n = len(common)
    precision = (per["hit"] / k).sum() / n
    recall = (per["hit"] / per["actual"]).sum() / n
    hit = hit.sort_values(["user", "rank"])
    rr = ((hit.groupby("user").cumcount() + 1) / hit["rank"]).groupby(hit["user"]).sum()
    mapk = (rr / per["actual"].clip(upper=k)).sum() / n
    dcg = (1 / np.log(1 + hit["rank"])).groupby(hit["user"]).sum()
    idcg = actual.loc[sorted(common)].map(
        lambda a: sum(1 / np.log(1 + i) for i in range(1, min(a, k) + 1))
    )
    ndcg = (dcg.reindex(idcg.index, fill_value=0.0) / idcg).mean()
    return float(precision), float(recall), float(ndcg), float(mapk)


def test_matches_recommenders_definitions_on_random_data() -> None:
    rng = np.random.default_rng(3)
    users, items, k = 40, 30, 7
    true_rows, pred_rows, recs, rel = [], [], [], []
    for u in range(users):
        truth = set(rng.choice(items, size=int(rng.integers(1, 9)), replace=False).tolist())
        ranked = rng.choice(items, size=int(rng.integers(1, 15)), replace=False).tolist()
        true_rows += [(u, i) for i in truth]
        pred_rows += [(u, i, len(ranked) - r) for r, i in enumerate(ranked)]
        recs.append(ranked)
        rel.append(truth)
    true = pd.DataFrame(true_rows, columns=["user", "item"])
    pred = pd.DataFrame(pred_rows, columns=["user", "item", "score"])
    precision, recall, ndcg, mapk = _recommenders_style(true, pred, k)
    assert precision_at_k(recs, rel, k) == pytest.approx(precision)
    assert recall_at_k(recs, rel, k) == pytest.approx(recall)
    assert ndcg_at_k(recs, rel, k) == pytest.approx(ndcg)
    assert map_at_k(recs, rel, k) == pytest.approx(mapk)
