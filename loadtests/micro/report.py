"""Shared helpers: percentiles, machine description, report writing."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def percentiles(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(samples_s) * 1e3
    return {
        "n": int(arr.size),
        "mean_ms": float(arr.mean()),
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "p999_ms": float(np.percentile(arr, 99.9)),
        "max_ms": float(arr.max()),
    }


def cpu_loop_ms() -> float:
    """The best of three timings of a fixed pure-Python loop: this VM's speed varies from hour
    to hour (up to 2-3x between days), so each report carries a figure to compare runs by."""
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i * i
        best = min(best, time.perf_counter() - t)
    return round(best * 1e3, 1)


def machine() -> dict[str, Any]:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "cpu_loop_ms": cpu_loop_ms(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write(name: str, body: dict[str, Any]) -> Path:
    out = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    body = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **body,
    }
    path.write_text(json.dumps(body, indent=2))
    return path
