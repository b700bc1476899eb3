"""Per-decision reasons: which inputs pushed a score up, in tens of microseconds.

Exact TreeSHAP costs ~3 ms a row on this kind of machine; the checkout budget is 2 ms for the
whole decision.  So reasons use the path attribution XGBoost calls "approximate contributions"
(Saabas): walking each tree from root to leaf, the change in the node value at every split is
credited to the split's feature.  Contributions plus the bias add up exactly to the model's
margin (log-odds), like SHAP values, and they agree with SHAP on which inputs dominate.

The trees are kept as padded numpy arrays (one row per tree) written next to the ONNX model at
export (``trees.npz``), and walked for all trees at once, one level per step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TREES_FILE = "trees.npz"


@dataclass(frozen=True)
class TreeArrays:
    """Padded per-tree arrays: ``left``/``right`` child (-1 at leaves), split ``feature`` and
    ``threshold`` (go left when ``x < threshold``), ``default_left`` for missing values, and
    ``value``: the node's output (leaf value; for inner nodes the cover-weighted mean of
    its leaves).  ``bias`` is the base margin plus every root value."""

    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float32]
    default_left: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]
    base_margin: float
    depth: int
    flat: _Flat = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flat", _Flat.of(self))

    @property
    def bias(self) -> float:
        return float(self.base_margin + self.value[:, 0].sum())

    @classmethod
    def from_xgboost_json(cls, raw: bytes | bytearray | str) -> TreeArrays:
        """From ``Booster.save_raw("json")`` of a binary classifier (one output)."""
        model: dict[str, Any] = json.loads(raw)
        learner = model["learner"]
        trees = learner["gradient_booster"]["model"]["trees"]
        base_score = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
        n = max(len(t["left_children"]) for t in trees)
        shape = (len(trees), n)
        left = np.full(shape, -1, np.int32)
        right = np.full(shape, -1, np.int32)
        feature = np.zeros(shape, np.int32)
        threshold = np.zeros(shape, np.float32)
        default_left = np.zeros(shape, np.bool_)
        value = np.zeros(shape, np.float64)
        for i, t in enumerate(trees):
            k = len(t["left_children"])
            left[i, :k] = t["left_children"]
            right[i, :k] = t["right_children"]
            feature[i, :k] = t["split_indices"]
            threshold[i, :k] = t["split_conditions"]
            default_left[i, :k] = np.asarray(t["default_left"], dtype=bool)
            value[i, :k] = _node_means(t)
        depth = _depth(left, right)
        margin = float(np.log(base_score / (1 - base_score)))
        return cls(left, right, feature, threshold, default_left, value, margin, depth)

    def save(self, directory: Path) -> None:
        np.savez_compressed(
            directory / TREES_FILE,
            left=self.left,
            right=self.right,
            feature=self.feature,
            threshold=self.threshold,
            default_left=self.default_left,
            value=self.value,
            meta=np.array([self.base_margin, self.depth], dtype=np.float64),
        )

    @classmethod
    def load(cls, directory: Path) -> TreeArrays:
        with np.load(directory / TREES_FILE) as f:
            meta = f["meta"]
            return cls(
                f["left"],
                f["right"],
                f["feature"],
                f["threshold"],
                f["default_left"],
                f["value"],
                float(meta[0]),
                int(meta[1]),
            )

    def contributions(self, row: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Each input's contribution to the margin of one row (length = number of inputs)."""
        flat = self.flat
        idx = flat.roots.copy()
        out = np.zeros(len(row), dtype=np.float64)
        for _ in range(self.depth):
            f = flat.feature[idx]
            x = row[f]
            go_left = (x < flat.threshold[idx]) | (np.isnan(x) & flat.default_left[idx])
            child = np.where(go_left, flat.left[idx], flat.right[idx])
            out += np.bincount(f, weights=flat.value[child] - flat.value[idx], minlength=len(row))
            idx = child
        return out


@dataclass(frozen=True)
class _Flat:
    """All trees in one node array; a leaf points to itself (split never taken, so walking past
    the leaf adds nothing) so every tree walks ``depth`` steps without branching."""

    roots: npt.NDArray[np.intp]
    left: npt.NDArray[np.intp]
    right: npt.NDArray[np.intp]
    feature: npt.NDArray[np.intp]
    threshold: npt.NDArray[np.float32]
    default_left: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]

    @classmethod
    def of(cls, t: TreeArrays) -> _Flat:
        trees, width = t.left.shape
        base = (np.arange(trees) * width)[:, None]
        own = base + np.arange(width)[None, :]
        leaf = t.left < 0
        left = np.where(leaf, own, base + t.left).ravel().astype(np.intp)
        right = np.where(leaf, own, base + t.right).ravel().astype(np.intp)
        feature = np.where(leaf, 0, t.feature).ravel().astype(np.intp)
        threshold = np.where(leaf, np.inf, t.threshold).ravel().astype(np.float32)
        default_left = np.where(leaf, True, t.default_left).ravel()
        roots = (np.arange(trees) * width).astype(np.intp)
        return cls(roots, left, right, feature, threshold, default_left, t.value.ravel())


def _node_means(tree: dict[str, Any]) -> npt.NDArray[np.float64]:
    """Leaf values, and for inner nodes the cover-weighted mean of their leaves (what XGBoost's
    approximate contributions use)."""
    left, right = tree["left_children"], tree["right_children"]
    cover = np.asarray(tree["sum_hessian"], dtype=np.float64)
    out = np.asarray(tree["split_conditions"], dtype=np.float64).copy()  # leaves hold values
    for n in range(len(left) - 1, -1, -1):  # children have larger ids than their parent
        a, b = left[n], right[n]
        if a >= 0:
            total = cover[a] + cover[b]
            out[n] = (out[a] * cover[a] + out[b] * cover[b]) / total if total > 0 else 0.0
    return out


def _depth(left: npt.NDArray[np.int32], right: npt.NDArray[np.int32]) -> int:
    depth = np.zeros(left.shape, dtype=np.int32)
    for col in range(left.shape[1]):  # children always have larger ids than their parent
        for child in (left[:, col], right[:, col]):
            has = child >= 0
            rows = np.nonzero(has)[0]
            depth[rows, child[has]] = depth[rows, col] + 1
    return int(depth.max())


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: float
    contribution: float


def top_reasons(
    trees: TreeArrays,
    row: npt.NDArray[np.float32],
    names: tuple[str, ...],
    *,
    limit: int = 5,
) -> list[Reason]:
    """The inputs that raised this row's fraud score most, largest first (positive only)."""
    contrib = trees.contributions(row)
    order = np.argsort(-contrib)[:limit]
    return [
        Reason(names[i], float(row[i]), round(float(contrib[i]), 6))
        for i in order
        if contrib[i] > 0
    ]
