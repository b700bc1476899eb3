"""``make loadtest``: mixed traffic (``loadtests/locustfile.py``) against cartwise on Ray Serve,
then against the same app and engine objects under plain uvicorn, one after the other on the
same demo store; the ratio of the two, every figure, and the load generator's own CPU.

    python -m loadtests.run [--users 100] [--rate 1] [--seconds 60] [--processes 2]
                            [--targets serve,uvicorn] [--generators locust,open]

Offered load = users x rate requests per second (each locust user paces itself: a slow server
shows as latency and failures, not as a gentler test).  The demo store lives in
``var/loadtest`` (seeded, models trained at first use; Redis database 4 unless
``CARTWISE_REDIS_URL`` says otherwise).  Before the traffic, the first request of each kind
after a fresh deploy is timed against the steady p99.

The traffic carries a channel's keys, as a shop's would: a publishable key for the storefront,
a secret key for checkouts, made through the admin API when the server is up (before the
first requests) and revoked before it stops.

Two load generators send the same visits (``loadtests/traffic.py``), one after the other
against the same deployment: locust (``loadtests/locustfile.py``, its CSV and HTML reports)
and the open-loop asyncio client of ``loadtests/bench_mixed.py`` at the same offered rate.
Locust's client adds tens of milliseconds of its own to every request on a 2-core machine
(docs/benchmarks.md); the open-loop figures are the ones that measure the server.

Writes, per target: ``reports/loadtest-<target>_stats.csv`` (and ``_stats_history.csv``,
``_failures.csv``), locust's ``reports/loadtest-<target>.html``, a PNG of latency percentiles
over time; ``reports/mixed-<target>.json`` from the open-loop client; and
``reports/loadtest.json`` with the summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests.micro.report import machine
from loadtests.traffic import offered_rps

REPORTS = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
FIRST = {  # one request of each kind, timed right after a fresh deploy, and its key
    "quote": ("POST", "/v1/prices/quote", {"skus": ["SKU-00001"], "customer_id": "cus_000001"},
              "publishable"),
    "recommendations": ("GET", "/v1/recommendations/cus_000001?widget=home&k=8", None,
                        "publishable"),
    "similar": ("GET", "/v1/products/SKU-00002/similar?k=6", None, "publishable"),
    "fraud score": (
        "POST",
        "/v1/fraud/score",
        {"transaction_id": "first-{n}", "customer_id": "cus_000002", "amount": 42.0,
         "currency": "EUR", "card": {"fingerprint": "fp-first", "country": "DE"}},
        "secret",
    ),
}  # fmt: skip
KEY_ENV = {
    "publishable": "CARTWISE_LOADTEST_PUBLISHABLE_KEY",
    "secret": "CARTWISE_LOADTEST_SECRET_KEY",
}
STEADY_NAME = {
    "quote": "/v1/prices/quote",
    "recommendations": "/v1/recommendations/[customer]",
    "similar": "/v1/products/[sku]/similar",
    "fraud score": "/v1/fraud/score",
}


def environment(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CARTWISE_DATA_DIR", "var/loadtest")
    env.setdefault("CARTWISE_REDIS_URL", "redis://127.0.0.1:6379/4")
    env.setdefault("CARTWISE_ADMIN_TOKEN", "loadtest-admin")
    env.setdefault("CARTWISE_LOG_LEVEL", "WARNING")
    env["CARTWISE_HTTP_PORT"] = str(port)
    return env


def prepare(env: dict[str, str]) -> None:
    """The demo store and its models (first use only: later runs find them), restocked so
    every run's orders find stock as the first run's did (``restock``)."""
    code = (
        "from serving.cli import prepare_demo; from serving.cli_common import settings_from_env;"
        "from loadtests.run import restock; settings = settings_from_env();"
        "prepare_demo(settings, seed=42, customers=2000, products=500); restock(settings)"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def restock(settings: Any, available: int = 5_000) -> None:
    """Every stock slot back to ``available`` units beyond what is allocated, through the
    catalogue (so the online store's stock follows): the runs before this one sold stock,
    and an order that finds none is a cheaper 409."""
    from sqlalchemy import select

    from engine.commerce.schema import Stock
    from serving.bootstrap import bootstrap

    container = bootstrap(settings, migrate=False, load_models=False)
    try:
        with container.db.transaction(readonly=True) as s:
            slots = s.execute(select(Stock.warehouse_id, Stock.sku, Stock.allocated)).all()
        for warehouse, sku, allocated in slots:
            container.catalog.set_stock(warehouse, sku, (allocated or 0) + available)
    finally:
        container.close()
    print(f"restocked {len(slots)} stock slots to {available} available units")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], wait_s: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < wait_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy within {wait_s}s")


def start(target: str, env: dict[str, str], processes: int) -> subprocess.Popen[bytes]:
    """``processes`` Serve replicas, or uvicorn workers: the same number of Python processes."""
    command = [str(Path(sys.executable).parent / "cartwise"), "serve"]
    if target == "uvicorn":
        command += ["--plain", "--workers", str(processes)]
    return subprocess.Popen(
        command, env={**env, "CARTWISE_REPLICAS": str(processes)}, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_keys(url: str, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """A publishable and a secret key of the demo store's first channel, for this run, once
    every server process knows them: the one that made them at once, the others within the
    key cache's refresh period (``engine.commerce.keys.REFRESH_S``, docs/security.md)."""
    from engine.commerce.keys import REFRESH_S

    with httpx.Client(base_url=url, timeout=30, headers=_admin(env)) as client:
        channel = client.get("/v1/channels").raise_for_status().json()[0]["id"]
        keys = {
            kind: client.post(f"/v1/channels/{channel}/keys", json={"kind": kind})
            .raise_for_status()
            .json()
            for kind in KEY_ENV
        }
    time.sleep(REFRESH_S + 0.5)
    return keys


def revoke_keys(url: str, env: dict[str, str], keys: dict[str, dict[str, str]]) -> None:
    with httpx.Client(base_url=url, timeout=30, headers=_admin(env)) as client:
        for key in keys.values():
            client.post(f"/v1/channels/{key['channel_id']}/keys/{key['id']}/revoke")


def _admin(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['CARTWISE_ADMIN_TOKEN']}"}


def first_requests(url: str, keys: dict[str, dict[str, str]]) -> dict[str, float]:
    out = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for n, (name, (method, path, body, kind)) in enumerate(FIRST.items()):
            if isinstance(body, dict) and "transaction_id" in body:
                body = {**body, "transaction_id": f"first-{time.time_ns()}-{n}"}
            auth = {"Authorization": f"Bearer {keys[kind]['key']}"}
            t = time.perf_counter()
            r = client.request(method, path, json=body, headers=auth)
            out[name] = (time.perf_counter() - t) * 1e3
            if r.status_code >= 400:
                raise RuntimeError(f"first {name}: {r.status_code} {r.text[:200]}")
    return out


def locust(target: str, url: str, env: dict[str, str], args: argparse.Namespace) -> float:
    """Run locust headless; returns the load generator's CPU share (cores) over the run."""
    prefix = REPORTS / f"loadtest-{target}"
    command = [
        sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless",
        "--host", url, "--users", str(args.users), "--spawn-rate", str(args.users),
        "--run-time", f"{args.seconds}s", "--csv", str(prefix), "--csv-full-history",
        "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {**env, "CARTWISE_LOADTEST_RATE": str(args.rate)}  # and the run's keys (main)
    t = time.monotonic()
    proc = psutil.Popen(command, env=env)
    cpu = 0.0
    while proc.poll() is None:
        try:
            times = proc.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(1)
    return cpu / max(time.monotonic() - t, 1e-9)


def open_loop(
    target: str, url: str, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """``loadtests/bench_mixed.py`` at the rate the locust users offer; its report."""
    command = [
        sys.executable, "-m", "loadtests.bench_mixed", "--url", url,
        "--rps", f"{offered_rps(args.users, args.rate):.1f}", "--seconds", str(args.seconds),
        "--publishable-key", env.get(KEY_ENV["publishable"], ""),
        "--secret-key", env.get(KEY_ENV["secret"], ""),
        "--admin-token", env["CARTWISE_ADMIN_TOKEN"], "--label", target,
    ]  # fmt: skip
    subprocess.run(command, env=env, check=True)
    result: dict[str, Any] = json.loads((REPORTS / f"mixed-{target}.json").read_text())
    return result


def stats(target: str) -> dict[str, Any]:
    rows = list(csv.DictReader((REPORTS / f"loadtest-{target}_stats.csv").open()))

    def pick(row: dict[str, str]) -> dict[str, float]:
        return {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]),
            "max_ms": float(row["Max Response Time"]),
        }

    return {f"{r['Type']} {r['Name']}".strip(): pick(r) for r in rows}


def plot(target: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = REPORTS / f"loadtest-{target}_stats_history.csv"
    rows = [r for r in csv.DictReader(history.open()) if r["Name"] == "Aggregated"]
    if not rows:
        return None
    t0 = int(rows[0]["Timestamp"])
    xs = [int(r["Timestamp"]) - t0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for q in ("50%", "95%", "99%"):
        ys = [float(r[q]) if r[q] not in ("N/A", "") else float("nan") for r in rows]
        ax.plot(xs, ys, label=f"p{q.rstrip('%')}")
    ax2 = ax.twinx()
    ax2.plot(xs, [float(r["Requests/s"]) for r in rows], color="grey", alpha=0.4, label="RPS")
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax2.set_ylabel("requests/s")
    ax.set_title(f"cartwise {target}: latency percentiles over time")
    ax.legend(loc="upper left")
    out = REPORTS / f"loadtest-{target}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1.0, help="tasks per second per user")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--targets", default="serve,uvicorn")
    ap.add_argument("--port", type=int, default=8200)
    ap.add_argument("--processes", type=int, default=1, help="Serve replicas / uvicorn workers")
    ap.add_argument("--generators", default="locust,open", help="locust, open (bench_mixed), both")
    args = ap.parse_args()
    generators = set(args.generators.split(","))
    REPORTS.mkdir(parents=True, exist_ok=True)
    env = environment(args.port)
    prepare(env)
    url = f"http://127.0.0.1:{args.port}"
    summary: dict[str, Any] = {"machine": machine(), "offered": vars(args), "targets": {}}
    for target in args.targets.split(","):
        proc = start(target, env, args.processes)
        try:
            ready_s = wait_healthy(url, proc)
            keys = make_keys(url, env)
            try:
                first = first_requests(url, keys)
                with_keys = env | {KEY_ENV[kind]: key["key"] for kind, key in keys.items()}
                cores = locust(target, url, with_keys, args) if "locust" in generators else None
                opened = open_loop(target, url, with_keys, args) if "open" in generators else None
            finally:
                revoke_keys(url, env, keys)
        finally:
            stop(proc)
        entry: dict[str, Any] = {"ready_s": ready_s, "first_request_ms": first}
        steady_p99: dict[str, float] = {}
        if cores is not None:
            by_name = stats(target)
            png = plot(target)
            total = by_name["Aggregated"]
            entry |= {
                "aggregated": total,
                "endpoints": by_name,
                "load_generator_cores": cores,
                "png": str(png) if png else None,
            }
            steady_p99 = {
                k: by_name.get(f"{FIRST[k][0]} {v}", {}).get("p99_ms", 0.0)
                for k, v in STEADY_NAME.items()
            }
            print(
                f"{target}, locust: {total['rps']:.0f} RPS, p50 {total['p50_ms']:.0f} ms, "
                f"p95 {total['p95_ms']:.0f} ms, p99 {total['p99_ms']:.0f} ms, "
                f"{total['failures']} failures of {total['requests']}; "
                f"load generator {cores:.2f} cores"
            )
        if opened is not None:
            entry["open_loop"] = opened
            steady_p99 = {
                k: opened["routes"].get(v, {}).get("p99_ms", 0.0) for k, v in STEADY_NAME.items()
            }
            print(
                f"{target}, open loop: {opened['rps']:.0f} RPS ({opened['answered_rps']:.0f} "
                f"answered), p50 {opened['p50_ms']:.1f} ms, "
                f"p90 {opened['p90_ms']:.1f} ms, p99 {opened['p99_ms']:.1f} ms, "
                f"{opened['failures']} failures of {opened['requests']} "
                f"({opened['refused_503']} refused with 503); "
                f"load generator {opened['generator_cores']:.2f} cores"
            )
        entry["first_over_steady_p99"] = {
            k: first[k] / steady_p99[k] for k in first if steady_p99.get(k)
        }
        summary["targets"][target] = entry
        print(
            f"{target}: ready in {ready_s:.1f} s; first requests (ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in first.items())
        )
    targets = summary["targets"]
    if {"serve", "uvicorn"} <= set(targets):
        # requests answered, not refused: a 503 at once is not throughput
        if "open" in generators:
            serve, plain = (targets[t]["open_loop"]["answered_rps"] for t in ("serve", "uvicorn"))
        else:
            serve, plain = (
                targets[t]["aggregated"]["rps"]
                * (1 - targets[t]["aggregated"]["failures"] / targets[t]["aggregated"]["requests"])
                for t in ("serve", "uvicorn")
            )
        summary["serve_over_uvicorn_rps"] = serve / plain
        print(f"Serve / uvicorn throughput (answered requests): {serve / plain:.2f}")
    path = REPORTS / "loadtest.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
