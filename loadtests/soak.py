"""Soak: mixed traffic for a long run; errors, latency over time, and the server's memory.

    python -m loadtests.soak [--minutes 10] [--users 100] [--rate 1] [--processes 2]
                             [--target serve|uvicorn]

The same demo store, locust users and server start as ``make loadtest`` (``loadtests/run.py``).
Every ``--sample-s`` seconds the resident memory (RSS) of every process the server started is
read (on Ray Serve: the replicas, HAProxy, the raylet, GCS, …), grouped by kind.  Growth is the
last sample over the one taken ``--warmup-s`` after the traffic started (caches and pools fill
in the first minute; a leak keeps growing after it).  Target: 0 failures, RSS growth < 10 %.

Writes ``reports/soak.json`` (every sample), locust's CSV/HTML as ``reports/loadtest-soak-*``,
and ``reports/soak.png`` (RSS per kind and latency percentiles over time).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict
from typing import Any

import psutil

from loadtests.micro.report import machine
from loadtests.run import (
    KEY_ENV,
    REPORTS,
    environment,
    locust,
    make_keys,
    prepare,
    revoke_keys,
    start,
    stats,
    stop,
    wait_healthy,
)


def kind(proc: psutil.Process) -> str:
    try:
        name = " ".join(proc.cmdline())[:200]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    for key, label in (
        ("ServeReplica", "replica"),
        ("ProxyActor", "serve proxy"),
        ("ServeController", "serve controller"),
        ("haproxy", "haproxy"),
        ("raylet", "raylet"),
        ("gcs_server", "gcs"),
        ("uvicorn", "uvicorn"),
        ("multiprocessing", "uvicorn worker"),
    ):
        if key in name:
            return label
    return "other"


def sample(root: psutil.Process) -> dict[str, float]:
    """RSS in MiB per kind of process in the server's tree (and the total)."""
    out: dict[str, float] = defaultdict(float)
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss = proc.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[kind(proc)] += rss
        out["total"] += rss
    return dict(out)


def plot(samples: list[dict[str, Any]], history: list[dict[str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    kinds = sorted({k for s in samples for k in s["rss_mib"]} - {"total"})
    xs = [s["t"] for s in samples]
    for k in kinds:
        top.plot(xs, [s["rss_mib"].get(k, 0) for s in samples], label=k)
    top.set_ylabel("RSS (MiB)")
    top.set_title("cartwise soak: resident memory per kind of process")
    top.legend(loc="upper left", fontsize="small")
    rows = [r for r in history if r["Name"] == "Aggregated"]
    if rows:
        t0 = int(rows[0]["Timestamp"])
        for q in ("50%", "99%"):
            bottom.plot(
                [int(r["Timestamp"]) - t0 for r in rows],
                [float(r[q]) if r[q] not in ("N/A", "") else float("nan") for r in rows],
                label=f"p{q.rstrip('%')}",
            )
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("latency (ms)")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(REPORTS / "soak.png", dpi=100)
    plt.close(fig)


def main() -> None:
    import csv

    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--target", default="serve", choices=("serve", "uvicorn"))
    ap.add_argument("--port", type=int, default=8200)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--warmup-s", type=float, default=60)
    args = ap.parse_args()
    REPORTS.mkdir(parents=True, exist_ok=True)
    env = environment(args.port)
    prepare(env)
    url = f"http://127.0.0.1:{args.port}"
    proc = start(args.target, env, args.processes)
    samples: list[dict[str, Any]] = []
    done = threading.Event()
    try:
        wait_healthy(url, proc)
        root = psutil.Process(proc.pid)
        t0 = time.monotonic()

        def sampler() -> None:
            while not done.is_set():
                samples.append({"t": round(time.monotonic() - t0, 1), "rss_mib": sample(root)})
                done.wait(args.sample_s)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        load_args = argparse.Namespace(
            users=args.users, rate=args.rate, seconds=int(args.minutes * 60)
        )
        keys = make_keys(url, env)
        try:
            with_keys = env | {KEY_ENV[kind]: key["key"] for kind, key in keys.items()}
            generator_cpu = locust(f"soak-{args.target}", url, with_keys, load_args)
        finally:
            revoke_keys(url, env, keys)
        done.set()
        thread.join()
        samples.append({"t": round(time.monotonic() - t0, 1), "rss_mib": sample(root)})
    finally:
        done.set()
        stop(proc)
    by_name = stats(f"soak-{args.target}")
    total = by_name["Aggregated"]
    base = next((s for s in samples if s["t"] >= args.warmup_s), samples[0])
    last = samples[-1]
    growth = {
        k: (last["rss_mib"].get(k, 0) / v - 1) * 100
        for k, v in base["rss_mib"].items()
        if v > 0 and k != "gone"
    }
    history = list(
        csv.DictReader((REPORTS / f"loadtest-soak-{args.target}_stats_history.csv").open())
    )
    plot(samples, history)
    report = {
        "machine": machine(),
        "offered": vars(args),
        "aggregated": total,
        "endpoints": by_name,
        "load_generator_cores": generator_cpu,
        "rss_at_warmup_mib": base["rss_mib"],
        "rss_at_end_mib": last["rss_mib"],
        "rss_growth_pct": growth,
        "samples": samples,
    }
    (REPORTS / "soak.json").write_text(json.dumps(report, indent=2))
    print(
        f"soak {args.target}, {args.minutes:g} min: {total['rps']:.0f} RPS, "
        f"{total['failures']} failures of {total['requests']}, p50 {total['p50_ms']:.0f} ms, "
        f"p99 {total['p99_ms']:.0f} ms; load generator {generator_cpu:.2f} cores"
    )
    for k in sorted(growth, key=lambda k: -base["rss_mib"][k]):
        print(
            f"  RSS {k:>16}: {base['rss_mib'][k]:8.1f} MiB at {base['t']:.0f} s -> "
            f"{last['rss_mib'].get(k, 0):8.1f} MiB at {last['t']:.0f} s ({growth[k]:+.1f} %)"
        )
    print(f"report: {REPORTS / 'soak.json'}, {REPORTS / 'soak.png'}")


if __name__ == "__main__":
    main()
