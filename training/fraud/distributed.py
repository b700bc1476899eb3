"""Fit the fraud model data-parallel on Ray, for training data that outgrows one machine.

``ray_fitter(workers, address)`` starts a local Ray (``address`` None) or joins a running
cluster, reserves ``workers`` bundles of ``cpus_per_worker`` CPUs spread over its nodes and
starts one actor on each.  Every fit then deals the training rows out to the actors (frauds and
other rows each round-robin, so every shard holds its share of both) and trains one XGBoost
model over all shards with XGBoost's own collective: a tracker in this process, the actors as
its workers, the quantile sketch and the gradient histograms all-reduced between them, so that
every worker ends with the same trees.  Rank 0 returns its ``XGBClassifier``: the kind of object
``backtest.fit_here`` returns, which ONNX export, metrics and the registry take as they are.
It is not the very model one process would fit: the histogram bins come from merged sketches
and each worker subsamples its own rows; its quality is the same within noise
(``tests/integration/test_fraud_distributed.py``, ``docs/distributed-training.md``).

Actors with XGBoost's tracker rather than Ray Train's ``XGBoostTrainer``, decided by trying
both on the same fit (the benchmark's 200,790 rows of a 21-day window, 300 trees, two workers;
``docs/distributed-training.md``): 17.8 s a fit through the trainer, 5.3-6.8 s with these actors
after a start paid once per training.  The trainer starts a controller and a worker group for
every fit (one training makes many: the validation fits), and hands the model back through a
checkpoint in a ``storage_path`` that every node of a multi-node cluster must share; the actors
live for the whole training and return the model through Ray's object store, and need no
``ray[train]`` extra.

What stays on the driver: reading the data, the point-in-time features (``backtest.prepare``),
ONNX export, metrics and the registry.  A transaction's inputs come from six entities' views
(customer, card, device, IP, e-mail, merchant) and from the fraud labels known at its time; no
one partition by entity gives a row all of them, so sharding the features would take a shuffle
and a join per view, and a new proof of parity with the online store
(``tests/integration/test_feature_parity.py``).  On the benchmark's 1.75 M transactions they
took 16 s, against ~70 s for one training's fits.  The driver therefore holds every row's
inputs (51 float32, ~200 bytes a row); the workers hold their shards' training matrices and do
the boosting, the part that grows with trees, depth and rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from engine.errors import Unavailable, ValidationError
from training.fraud.backtest import Fitter, Params, Progress, classifier, fit_here

READY_TIMEOUT_S = 120.0  # for the cluster to place every worker (an autoscaler may add nodes)
TRACKER_TIMEOUT_S = 600  # for the workers to join (and leave) one fit's collective


def shards(labels: npt.NDArray[np.int_], n: int) -> list[npt.NDArray[np.int64]]:
    """Row indices of ``n`` shards, each in row order: the frauds, then the other rows, dealt
    round-robin, so that the shards' sizes and fraud counts differ by one at most."""
    dealt = np.concatenate([np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)])
    return [np.sort(dealt[i::n]) for i in range(n)]


class _Worker:
    """A Ray actor: fits its shard inside XGBoost's collective."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def fit(
        self,
        comm: dict[str, Any],
        model: xgb.XGBClassifier,
        inputs: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int_],
        keep: bool,
    ) -> tuple[xgb.XGBClassifier | None, str]:
        """The fitted model if ``keep``, and a digest of its trees."""
        from xgboost.collective import CommunicatorContext

        model.set_params(n_jobs=self.threads)
        with CommunicatorContext(**comm):
            model.fit(inputs, labels)
        digest = hashlib.sha256(model.get_booster().save_raw("ubj")).hexdigest()
        return (model if keep else None), digest


@dataclass
class RayFitter:
    """A ``backtest.Fitter`` on Ray actors (see the module docstring); ``ray_fitter`` makes
    one."""

    actors: Sequence[Any]  # Ray's handles of ``_Worker`` actors
    tracker_host: str  # this process's address as the workers reach it
    address: str
    cpus_per_worker: float

    def __call__(
        self, inputs: npt.NDArray[np.float32], labels: npt.NDArray[np.int_], params: Params
    ) -> xgb.XGBClassifier:
        import ray
        from xgboost.tracker import RabitTracker

        if len(labels) < len(self.actors):
            raise ValidationError(
                f"{len(labels)} training rows cannot be shared by {len(self.actors)} Ray "
                "workers: use fewer workers",
                field="ray_workers",
            )
        # a shard without frauds is fine (the histograms are summed over all shards), and
        # rank 0 holds the first fraud
        parts = shards(labels, len(self.actors))
        model = classifier(params)
        # a tracker per fit: it serves one collective, from the workers' start to their end;
        # ranks sorted by task id, so rank 0 is the first actor
        tracker = RabitTracker(
            n_workers=len(parts),
            host_ip=self.tracker_host,
            sortby="task",
            timeout=TRACKER_TIMEOUT_S,
        )
        tracker.start()
        try:
            comm = tracker.worker_args()
            refs = [
                actor.fit.remote(
                    {**comm, "dmlc_task_id": f"{rank:08d}"},
                    model,
                    ray.put(inputs[rows]),
                    ray.put(labels[rows]),
                    rank == 0,
                )
                for rank, (actor, rows) in enumerate(zip(self.actors, parts, strict=True))
            ]
            _wait_all(refs)
            tracker.wait_for(TRACKER_TIMEOUT_S)
        finally:  # now, not when collected; one still waiting for a failed worker complains
            with contextlib.suppress(xgb.core.XGBoostError):
                tracker.free()
        results: list[tuple[xgb.XGBClassifier | None, str]] = ray.get(refs)
        if len({digest for _, digest in results}) != 1:  # one model, or the shards' own
            raise RuntimeError("the Ray workers ended with different trees: not one model")
        fitted = results[0][0]
        assert fitted is not None
        fitted.set_params(n_jobs=model.get_params()["n_jobs"])  # predicting here, as fit_here
        return fitted

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "ray",
            "workers": len(self.actors),
            "cpus_per_worker": self.cpus_per_worker,
            "ray_address": self.address,
        }


def _wait_all(refs: Sequence[Any]) -> None:
    """Wait for every worker, raising the first failure at once: the others may be waiting in
    the collective for the failed one (they are killed when the fitter's context ends)."""
    import ray

    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        ray.get(done)


def _environment(address: str | None) -> None:
    """Set before Ray is imported (it reads some of these then) and inherited by the processes
    it starts: no usage stats; a local Ray is a single node on the loopback, whose workers keep
    this process's priority (Ray renices them to 15 by default: on a shared machine they would
    get less CPU than this process)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_worker_niceness", "0")


def _start(address: str | None, cpus: float) -> bool:
    """Join the cluster at ``address``, or start a local Ray (loopback only, no dashboard) with
    at least ``cpus`` CPUs; if this process already runs Ray, use it.  True if Ray was started
    here (and must be shut down here)."""
    import ray

    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, math.ceil(cpus)),
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            configure_logging=False,
        )
        return True
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise Unavailable(
            f"cannot join the Ray cluster at {address}: {exc} (a cluster with token "
            "authentication needs RAY_AUTH_MODE=token here, and its token in ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN)",
            field="ray_address",
        ) from None
    return True


def _node_address() -> str:
    """This process's node's address as the cluster knows it (the loopback for a local Ray):
    where the workers reach XGBoost's tracker."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    return str(next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here))


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when a ``host:port`` address does not answer: ``ray.init`` tries an
    unreachable one 20 times, 40 s each (measured: still trying after ten minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():  # "auto": Ray's own resolution
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise Unavailable(
            f"cannot reach the Ray cluster at {address} ({exc}): is `ray start --head` "
            "running there, on that port?",
            field="ray_address",
        ) from None


@contextmanager
def ray_fitter(
    workers: int,
    address: str | None = None,
    *,
    cpus_per_worker: float = 1.0,
    ready_timeout_s: float = READY_TIMEOUT_S,
    progress: Progress | None = None,
) -> Iterator[RayFitter]:
    """A ``RayFitter`` on ``workers`` actors of ``cpus_per_worker`` CPUs each (XGBoost
    threads: its whole part), on the cluster at ``address`` or on a local Ray, started here
    and shut down at the end (a local Ray is given as many CPUs as the workers need: on a
    smaller machine they share its cores)."""
    if workers < 1:
        raise ValidationError("ray_workers must be at least 1", field="ray_workers")
    if address is not None and address.startswith("ray://"):
        raise ValidationError(
            "Ray Client addresses (ray://) are not supported: the workers must reach XGBoost's "
            "tracker in this process, so train on a node of the cluster, with the head's "
            "host:port (or auto)",
            field="ray_address",
        )
    if cpus_per_worker <= 0:
        raise ValidationError("cpus_per_worker must be positive", field="cpus_per_worker")
    _environment(address)
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    say = progress or (lambda _m: None)
    where = address or "local"
    say(f"starting {workers} Ray worker(s) on {where}…")
    started = _start(address, workers * cpus_per_worker)
    group = None
    actors: list[Any] = []  # Ray's actor handles
    try:
        group = placement_group([{"CPU": cpus_per_worker}] * workers, strategy="SPREAD")
        try:
            ray.get(group.ready(), timeout=ready_timeout_s)
        except GetTimeoutError:
            total = ray.cluster_resources().get("CPU", 0)
            raise Unavailable(
                f"the Ray cluster at {where} ({total:g} CPUs) could not place {workers} "
                f"worker(s) of {cpus_per_worker:g} CPU within {ready_timeout_s:g} s: use fewer "
                "workers or add nodes",
                field="ray_workers",
            ) from None
        actor = ray.remote(_Worker)
        threads = max(1, int(cpus_per_worker))
        actors = [
            actor.options(
                num_cpus=cpus_per_worker,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, i),
            ).remote(threads)
            for i in range(workers)
        ]
        yield RayFitter(actors, _node_address(), where, cpus_per_worker)
    finally:
        for a in actors:
            ray.kill(a)
        if group is not None:
            remove_placement_group(group)
        if started:
            ray.shutdown()


@contextmanager
def fitting(
    ray_workers: int | None, ray_address: str | None = None, *, progress: Progress | None = None
) -> Iterator[tuple[Fitter, dict[str, Any]]]:
    """The fitter a training uses, and how it fits (logged with the run): here without
    ``ray_workers``, else a ``ray_fitter``."""
    if ray_workers is None:
        yield fit_here, {"backend": "local"}
        return
    with ray_fitter(ray_workers, ray_address, progress=progress) as fitter:
        yield fitter, fitter.describe()
