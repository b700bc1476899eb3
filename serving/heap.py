"""The garbage collector in an API process: the startup heap frozen, and its pauses measured.

A replica's startup leaves ~400k Python objects behind (Ray, FastAPI, SQLAlchemy, pandas,
scikit-learn, XGBoost, ONNX Runtime, FAISS, MLflow and the engine objects), all long-lived.  A
full collection walks every one of them: 270-300 ms in a replica on this project's 2-core
machine, a stop of the whole process that every request arriving meanwhile waits out
(``docs/benchmarks.md``: rare in steady state, one per replica at start).  ``settle`` collects
once and then ``gc.freeze()``-s what is left into the permanent generation, as CPython's
documentation advises for servers: later full collections walk only what was allocated since
(~1 ms).  Request-time garbage is collected as before.

``watch`` times every collection of generations 1 and 2 into
``cartwise_gc_pause_seconds{generation}`` (``serving/metrics.py``).  Generation 0 runs every
700 allocations and takes microseconds; timing it into a shared-memory histogram would cost
more than it does, so it is left out.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from serving.metrics import GC_PAUSE

log = logging.getLogger(__name__)
_started = [0.0]
_timed: dict[int, Any] = {}  # generation -> its histogram child, made by watch()


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if info["generation"] == 0:
        return
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _timed[info["generation"]].observe(time.perf_counter() - _started[0])


def watch() -> None:
    """Time this process's collections of generations 1 and 2 (once per process)."""
    if _on_gc not in gc.callbacks:
        # made here, not at import: in multiprocess mode a child is a file in a directory
        # that the replica creates when it starts
        _timed.update({g: GC_PAUSE.labels(str(g)) for g in (1, 2)})
        gc.callbacks.append(_on_gc)


def settle() -> int:
    """Collect the startup garbage, then freeze what survives; returns how many objects are
    frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def ready() -> None:
    """An API process is built (engine objects, models, the app): settle and watch.  Called
    by the process's entry points only — the Serve replica and ``serving.asgi.create`` — never
    by the app factory, which tests call many times in one process."""
    frozen = settle()
    watch()
    log.info("startup heap frozen: %d objects", frozen)
