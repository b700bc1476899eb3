"""The fraud model's training report: ROC and precision-recall (the new model beside the
champion when there is one), calibration, XGBoost gain importance and the score distribution by
label, all on the test window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from engine.fraud.inputs import INPUTS
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

Scores = Mapping[str, npt.NDArray[np.floating[Any]]]
TOP_FEATURES = 20


def _both_classes(label: npt.NDArray[Any]) -> bool:
    return 0 < int(np.sum(label)) < len(label)


def roc_figure(label: npt.NDArray[Any], scores: Scores) -> Figure:
    """ROC curve of each scored model; ``label`` must hold both classes."""
    from sklearn.metrics import auc, roc_curve

    fig = new_figure(5, 5)
    ax = fig.subplots()
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(label, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test window")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def pr_figure(label: npt.NDArray[Any], scores: Scores) -> Figure:
    """Precision-recall curve of each scored model; ``label`` must hold both classes."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig = new_figure(5, 5)
    ax = fig.subplots()
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(label, score)
        ap = average_precision_score(label, score)
        ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    base = float(np.mean(label))
    ax.axhline(base, linestyle=":", color="grey", label=f"fraud share {base:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test window")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return fig


def calibration_bins(
    label: npt.NDArray[Any], score: npt.NDArray[Any], bins: int = 10
) -> list[tuple[float, float, int, float, float]]:
    """(low, high, rows, mean predicted, observed fraud share) of each of ``bins`` equal-width
    probability bins; empty bins have NaN means."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        rows = which == b
        n = int(rows.sum())
        mean = float(score[rows].mean()) if n else float("nan")
        observed = float(np.mean(label[rows])) if n else float("nan")
        out.append((float(edges[b]), float(edges[b + 1]), n, mean, observed))
    return out


def _calibration(label: npt.NDArray[Any], scores: Scores, bins: int) -> Section:
    binned = {name: calibration_bins(label, score, bins) for name, score in scores.items()}
    fig = new_figure(6, 6)
    curve, counts = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for name, rows in binned.items():
        curve.plot([r[3] for r in rows], [r[4] for r in rows], marker="o", label=name)
        counts.stairs([r[2] for r in rows], [r[0] for r in rows] + [1.0], label=name)
    curve.set(ylabel="observed fraud share", title="Reliability, test window")
    curve.legend(loc="upper left")
    curve.grid(alpha=0.3)
    counts.set(xlabel="predicted probability", ylabel="rows per bin", yscale="log")
    counts.yaxis.set_minor_formatter(NullFormatter())
    counts.grid(alpha=0.3)
    first = next(iter(binned))
    return Section("Calibration").add(
        figure(fig, "Reliability curve and rows per probability bin"),
        paragraph(f"Probability bins of {first}:"),
        table(
            ("bin", "rows", "mean predicted", "observed fraud share"),
            ((f"{lo:.1f} to {hi:.1f}", n, m, o) for lo, hi, n, m, o in binned[first]),
        ),
    )


def gain_importance(booster: Any, names: Sequence[str] = INPUTS) -> dict[str, float]:
    """XGBoost's total-gain importance by input name (``f3`` is ``names[3]``); inputs never
    split on are absent."""
    raw = booster.get_score(importance_type="gain")
    out = {}
    for key, value in raw.items():
        index = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else -1
        out[names[index] if 0 <= index < len(names) else key] = float(value)
    return out


def _importance(importance: Mapping[str, float] | None) -> Section:
    section = Section(f"Feature importance (gain, top {TOP_FEATURES})")
    if not importance:
        return section.add(note("No feature importance: the model made no splits."))
    top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:TOP_FEATURES]
    fig = new_figure(7, 0.3 * len(top) + 1.2)
    ax = fig.subplots()
    ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1], color="#4c72b0")
    ax.set(xlabel="gain", title="XGBoost gain importance")
    ax.grid(alpha=0.3, axis="x")
    return section.add(figure(fig, "Inputs ranked by XGBoost gain"))


def _distribution(label: npt.NDArray[Any], score: npt.NDArray[Any], name: str) -> Section:
    section = Section("Score distribution by label")
    fig = new_figure(7, 4)
    ax = fig.subplots()
    edges = [i / 50 for i in range(51)]
    for value, what, color in ((0, "legitimate", "#4c72b0"), (1, "fraud", "#c44e52")):
        rows = label == value
        if rows.any():
            ax.hist(score[rows], bins=edges, alpha=0.6, color=color, label=f"{what} ({rows.sum()})")
    ax.set(xlabel=f"{name}: fraud probability", ylabel="transactions", yscale="log")
    ax.set_title("Scores on the test window by label")
    ax.legend(loc="upper center")
    ax.grid(alpha=0.3)
    section.add(figure(fig, "Histograms of fraud probability for legitimate and fraud rows"))
    if not _both_classes(label):
        section.add(note("The test window holds only one class."))
    return section


def _curves(label: npt.NDArray[Any], scores: Scores) -> list[Section]:
    roc, pr = Section("ROC curve"), Section("Precision-recall curve")
    if not _both_classes(label):
        why = (
            f"Not drawn: the test window has {len(label)} rows of which "
            f"{int(np.sum(label))} are fraud; the curve needs both classes."
        )
        return [roc.add(note(why)), pr.add(note(why))]
    roc.add(figure(roc_figure(label, scores), "ROC curves on the test window"))
    pr.add(figure(pr_figure(label, scores), "Precision-recall curves on the test window"))
    return [roc, pr]


def fraud_report(
    label: npt.NDArray[Any],
    scores: Scores,
    *,
    importance: Mapping[str, float] | None = None,
    bins: int = 10,
    **header: Unpack[Header],
) -> str:
    """The report's HTML.  ``label`` (0/1) and ``scores`` (model name -> probabilities, the new
    model first, then the champion if any) are of the test window's rows; ``importance`` is
    gain by input name (``gain_importance``); ``header``: see ``page.Header``.  A test window
    without both classes gets notes in place of the curves that need them."""
    label = np.asarray(label, dtype=np.int64)
    scores = {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    sections = _curves(label, scores)
    if len(label) and scores:
        sections.append(_calibration(label, scores, bins))
    else:
        sections.append(Section("Calibration").add(note("No scored test rows.")))
    sections.append(_importance(importance))
    if len(label) and scores:
        first = next(iter(scores))
        sections.append(_distribution(label, scores[first], first))
    else:
        sections.append(Section("Score distribution by label").add(note("No scored test rows.")))
    return render(sections, header, default_title="Fraud model")
