"""Scoring with an exported fraud model: ONNX Runtime on one thread.

A model directory holds ``model.onnx``, ``model.json`` (version, input names, metrics) and
``trees.npz`` (the trees as arrays, for reasons).
The input names must equal ``engine.fraud.inputs.INPUTS`` — a model trained on other inputs is
refused at load time rather than scoring garbage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from engine.errors import CartwiseError
from engine.fraud.explain import TREES_FILE, Reason, TreeArrays, top_reasons
from engine.fraud.inputs import INPUTS


class ModelError(CartwiseError):
    code = "model_error"


@dataclass(frozen=True)
class FraudModel:
    version: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    meta: dict[str, Any]
    trees: TreeArrays

    @classmethod
    def load(cls, directory: Path) -> FraudModel:
        meta = json.loads((directory / "model.json").read_text())
        if tuple(meta.get("inputs", ())) != INPUTS:
            raise ModelError(f"model {directory} was trained on other inputs than this release")
        if not (directory / TREES_FILE).exists():
            raise ModelError(f"model {directory} has no {TREES_FILE}; export it again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one thread per request: no spin-waiting on 2 cores
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        outputs = [o.name for o in session.get_outputs()]
        probabilities = next((o for o in outputs if "prob" in o), outputs[-1])
        model = cls(
            str(meta["version"]),
            session,
            session.get_inputs()[0].name,
            probabilities,
            meta,
            TreeArrays.load(directory),
        )
        warm = np.zeros((1, len(INPUTS)), dtype=np.float32)
        model.probabilities(warm)  # the first run allocates; keep it off the first request
        model.reasons(warm[0])
        return model

    def probabilities(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Fraud probability of each row (rows in ``INPUTS`` order)."""
        (out,) = self.session.run([self.output_name], {self.input_name: rows.astype(np.float32)})
        probs = np.asarray(out)
        if probs.dtype == object:  # a list of {label: probability} maps
            return np.array([row[1] for row in probs], dtype=np.float64)
        return probs[:, 1].astype(np.float64) if probs.ndim == 2 else probs.astype(np.float64)

    def reasons(self, row: npt.NDArray[np.float32], limit: int = 5) -> list[Reason]:
        """The inputs that raised this row's score most (``row`` in ``INPUTS`` order)."""
        return top_reasons(self.trees, row, INPUTS, limit=limit)
