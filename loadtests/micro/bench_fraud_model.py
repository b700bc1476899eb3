"""Fraud model alone: single-row scoring with ONNX Runtime on one thread, in a fresh process.

    cartwise fraud backtest … --model-out var/models/fraud-handbook
    python -m loadtests.micro.bench_fraud_model --model var/models/fraud-handbook

Scores 20,000 one-row batches of realistic magnitudes; prints µs per row and writes
reports/fraud_model.json.  (Measure in a process that did not train: XGBoost's OpenMP threads
keep spinning after training and slow everything else down.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from engine.fraud.inputs import INPUTS
from engine.fraud.model import FraudModel
from loadtests.micro.report import percentiles, write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=20_000)
    args = ap.parse_args()
    model = FraudModel.load(args.model)
    rng = np.random.default_rng(3)
    rows = rng.lognormal(1.5, 1.2, size=(args.rows, len(INPUTS))).astype(np.float32)
    for i in range(1_000):
        model.probabilities(rows[i : i + 1])
    samples = np.empty(args.rows)
    for i in range(args.rows):
        t = time.perf_counter()
        model.probabilities(rows[i : i + 1])
        samples[i] = time.perf_counter() - t
    single = percentiles(samples)
    t = time.perf_counter()
    model.probabilities(rows)
    batch_us = (time.perf_counter() - t) / args.rows * 1e6
    print(
        f"one row: p50 {single['p50_ms'] * 1e3:.1f} µs, p99 {single['p99_ms'] * 1e3:.1f} µs; "
        f"batch of {args.rows:,}: {batch_us:.2f} µs per row"
    )
    path = write(
        "fraud_model",
        {
            "model": str(args.model),
            "version": model.version,
            "single_row": single,
            "batch_us_per_row": batch_us,
        },
    )
    print(f"report: {path}")


if __name__ == "__main__":
    main()
