"""Versioned fraud models in an MLflow tracking server and model registry.

A training is one MLflow run (parameters, metrics, plots under ``plots/``, the model directory —
``model.onnx`` and ``model.json`` — under ``model/``) and one version of the registered model.
The alias ``champion`` names the version serving should load.  ``model.json``'s ``version`` is
the registered version: the version is created first, then written into the file, then the
files are logged, so a downloaded model always says which version it is.

Locally (``sqlite:///…`` or a ``file:`` URI) the experiment's artifacts go under ``artifacts``;
with a remote tracking server they go where the server says.  MLflow is imported lazily (it
takes a second or two) and its chatter (INFO logs, warnings, usage telemetry) is turned off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from engine.errors import CartwiseError, NotFound, ValidationError

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_PATH = "model"
REPORT_FILE = "report.html"
REPORT_ERROR_TAG = "cartwise.report_error"  # why a run has no report
HISTORY_TAG = "cartwise.champion_history"  # JSON list of versions, the latest champion last
ROLLOUT_TAG = "cartwise.rollout"  # "off", "shadow" or "canary"
SHARE_TAG = "cartwise.canary_share"  # the challenger's share of units under canary, 0..1
ROLLOUT_MODES = ("off", "shadow", "canary")
PLOTS_PATH = "plots"
MODEL_FILES = ("model.onnx", "model.json", "trees.npz")
_QUIET_LOGGERS = ("mlflow", "alembic", "databricks", "urllib3", "git")
log = logging.getLogger(__name__)


class RegistryError(CartwiseError):
    code = "model_registry_error"


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    metrics: dict[str, float]
    run_id: str


@dataclass(frozen=True)
class RegistryState:
    """What serving follows: the versions the aliases name and how the challenger is rolled
    out (``mode`` off, shadow or canary; ``share`` of units under canary).  One MLflow call."""

    champion: str | None = None
    challenger: str | None = None
    mode: str = "off"
    share: float = 0.0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's INFO logs (database creation, migrations) and warnings off for a call."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _flat(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: dotted keys, text values (lists as JSON)."""
    return {
        k: json.dumps(v, default=str) if isinstance(v, list) else str(v)
        for k, v in flatten(params).items()
    }


class ModelRegistry:
    """One registered model (``name``) of the MLflow registry at ``tracking_uri``.  ``files``
    are what a version's directory must hold (a subclass names its own kind's)."""

    files: tuple[str, ...] = MODEL_FILES

    def __init__(self, tracking_uri: str, artifacts: Path, name: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts = Path(artifacts)
        self.name = name

    @classmethod
    def of(cls, registry: ModelRegistry) -> Self:
        """``registry`` as this kind (the same MLflow model; this kind's files)."""
        if isinstance(registry, cls):
            return registry
        return cls(registry.tracking_uri, registry.artifacts, registry.name)

    # --- MLflow ---------------------------------------------------------------------------------

    @cached_property
    def client(self) -> Any:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with _quiet():
            from mlflow import MlflowClient

            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if _is_local(self.tracking_uri):
            self.artifacts.mkdir(parents=True, exist_ok=True)
            location = self.artifacts.resolve().as_uri()
        try:
            return str(self.client.create_experiment(self.name, artifact_location=location))
        except Exception:  # created concurrently by another training
            found = self.client.get_experiment_by_name(self.name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _resolve(self, version_or_alias: str) -> Any:
        """The model version a version number, an alias or ``latest`` names."""
        from mlflow.exceptions import MlflowException

        try:
            if version_or_alias.isdigit():
                return self.client.get_model_version(self.name, version_or_alias)
            if version_or_alias == "latest":
                found = self.client.search_model_versions(f"name = '{self.name}'")
                if found:
                    return max(found, key=lambda v: int(v.version))
            else:
                return self.client.get_model_version_by_alias(self.name, version_or_alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(f"model registry: {exc.message}") from exc
        raise NotFound(
            f"model {self.name!r} has no version {version_or_alias!r}",
            field="version",
            code="unknown_model_version",
        )

    # --- public ---------------------------------------------------------------------------------

    def resolve(self, version_or_alias: str) -> str:
        """The version number a version, an alias or ``latest`` names (``NotFound`` if none)."""
        with _quiet():
            return str(self._resolve(version_or_alias).version)

    def log_and_register(
        self,
        model_dir: Path,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        plots: Mapping[str, Path],
        tags: Mapping[str, str],
        report: Callable[[str], str] | None = None,
    ) -> str:
        """Log a run with ``model_dir`` (the kind's ``files``), register it as the next
        version, and return the version; ``model.json``'s ``version`` is set to it first.
        ``report`` (version -> HTML) is logged as the run's ``report.html`` and linked from the
        run's description."""
        missing = [f for f in self.files if not (model_dir / f).is_file()]
        if missing:
            raise RegistryError(f"{model_dir} lacks {', '.join(missing)}")
        with _quiet():
            from mlflow.entities import Metric, Param

            client = self.client
            run = client.create_run(self._experiment_id(), tags=dict(tags))
            run_id = run.info.run_id
            version = None
            try:
                now = int(time.time() * 1000)
                client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                    params=[Param(k, v) for k, v in _flat(params).items()],
                )
                self._log_plots(run_id, plots)
                self._ensure_registered_model()
                source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_PATH}"
                mv = client.create_model_version(self.name, source, run_id=run_id, tags=dict(tags))
                version = str(mv.version)
                info = json.loads((model_dir / "model.json").read_text())
                info.update({"version": version, "registered_model": self.name, "run_id": run_id})
                (model_dir / "model.json").write_text(json.dumps(info, indent=2, default=str))
                client.log_artifacts(run_id, str(model_dir), MODEL_PATH)
                if report is not None:
                    self._log_report(run_id, version, report)
                client.set_terminated(run_id, "FINISHED")
            except BaseException:
                if version is not None:
                    client.delete_model_version(self.name, version)
                client.set_terminated(run_id, "FAILED")
                raise
        return version

    def _log_plots(self, run_id: str, plots: Mapping[str, Path]) -> None:
        if not plots:
            return
        with tempfile.TemporaryDirectory(prefix="cw-plots-") as tmp:
            for name, path in plots.items():
                shutil.copyfile(path, Path(tmp) / f"{name}{Path(path).suffix}")
            self.client.log_artifacts(run_id, tmp, PLOTS_PATH)

    def _log_report(self, run_id: str, version: str, report: Callable[[str], str]) -> None:
        """The run's ``report.html``.  A report that cannot be rendered (a plot of degenerate
        data, a charting bug) does not cost the trained model its version: the failure is
        logged and written on the run (tag ``cartwise.report_error``) instead.  Failing to
        store it is a registry failure like any other and fails the registration."""
        try:
            html = report(version)
        except Exception as exc:
            log.warning("%s version %s: the training report failed: %r", self.name, version, exc)
            self.client.set_tag(run_id, REPORT_ERROR_TAG, f"{type(exc).__name__}: {exc}"[:500])
            self.client.set_tag(
                run_id, "mlflow.note.content", f"No training report: {type(exc).__name__}: {exc}"
            )
            return
        with tempfile.TemporaryDirectory(prefix="cw-report-") as tmp:
            (Path(tmp) / REPORT_FILE).write_text(html, encoding="utf-8")
            self.client.log_artifact(run_id, str(Path(tmp) / REPORT_FILE))
        self.client.set_tag(
            run_id,
            "mlflow.note.content",
            f"Training report: artifact [{REPORT_FILE}]({REPORT_FILE})",
        )

    def report(self, version_or_alias: str, dest: Path) -> Path:
        """The local path of a version's ``report.html`` (downloaded into ``dest``)."""
        from mlflow.exceptions import MlflowException

        with _quiet():
            mv = self._resolve(version_or_alias)
            dest = Path(dest)
            dest.mkdir(parents=True, exist_ok=True)
            try:
                local = self.client.download_artifacts(mv.run_id, REPORT_FILE, str(dest))
            except (MlflowException, OSError) as exc:
                why = self.client.get_run(mv.run_id).data.tags.get(REPORT_ERROR_TAG)
                raise NotFound(
                    f"model {self.name!r} version {mv.version} has no report"
                    + (f" (it failed: {why})" if why else ""),
                    field="version",
                    code="no_report",
                ) from exc
            target = dest / f"{self.name}-v{mv.version}.html"
            Path(local).replace(target)
            return target

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        with _quiet():
            for key, value in tags.items():
                self.client.set_model_version_tag(self.name, version, key, str(value))

    def champion(self) -> ChampionInfo | None:
        """The version the ``champion`` alias names, with its run's metrics; None if none."""
        with _quiet():
            try:
                mv = self._resolve(CHAMPION)
            except NotFound:
                return None
            metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        return ChampionInfo(str(mv.version), dict(metrics), str(mv.run_id or ""))

    def set_champion(self, version: str) -> None:
        """Make ``version`` the champion (serving follows within its poll interval) and
        remember it in the champion history that ``rollback`` walks back."""
        version = str(version)
        with _quiet():
            self._resolve(version)  # a clear error for an unknown version
            model = self.client.get_registered_model(self.name)
            history = self._history(model)
            if model.aliases.get(CHAMPION) is not None and not history:
                history = [str(model.aliases[CHAMPION])]  # a champion set before history was kept
            if not history or history[-1] != version:
                history.append(version)
            self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[-50:]))
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            if str(model.aliases.get(CHALLENGER, "")) == version:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)

    def set_challenger(self, version: str | None) -> None:
        """Name the challenger (None: no challenger; shadow and canary then stop)."""
        with _quiet():
            if version is None:
                if CHALLENGER in self.client.get_registered_model(self.name).aliases:
                    self.client.delete_registered_model_alias(self.name, CHALLENGER)
                return
            self._resolve(str(version))
            self.client.set_registered_model_alias(self.name, CHALLENGER, str(version))

    def rollback(self) -> tuple[str, str]:
        """Move the champion back to the one before it; (from, to)."""
        with _quiet():
            model = self.client.get_registered_model(self.name)
            current = model.aliases.get(CHAMPION)
            history = self._history(model)
            if current is None:
                raise NotFound(
                    f"model {self.name!r} has no champion", field="name", code="no_champion"
                )
            current = str(current)
            while history and history[-1] == current:
                history.pop()
            if not history:
                raise RegistryError(
                    f"model {self.name!r}: no earlier champion than version {current} to roll "
                    "back to"
                )
            previous = history[-1]
            self.client.set_registered_model_alias(self.name, CHAMPION, previous)
            self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
            self.client.set_model_version_tag(self.name, current, "rolled_back", "true")
        return current, previous

    @staticmethod
    def _history(model: Any) -> list[str]:
        try:
            found = json.loads(model.tags.get(HISTORY_TAG, "[]"))
        except json.JSONDecodeError:
            return []
        return [str(v) for v in found] if isinstance(found, list) else []

    def set_rollout(self, mode: str, share: float = 0.0) -> None:
        """How the challenger is rolled out: ``off``, ``shadow`` (scored beside the champion,
        logged, never returned) or ``canary`` (answers ``share`` of the units, sticky)."""
        if mode not in ROLLOUT_MODES:
            raise ValidationError(f"mode is one of {', '.join(ROLLOUT_MODES)}", field="mode")
        if not 0.0 <= share <= 1.0 or (mode == "canary" and share == 0.0):
            raise ValidationError("share is a fraction in (0, 1] under canary", field="share")
        with _quiet():
            self._ensure_registered_model()
            self.client.set_registered_model_tag(self.name, ROLLOUT_TAG, mode)
            self.client.set_registered_model_tag(
                self.name, SHARE_TAG, str(share if mode == "canary" else 0.0)
            )

    def state(self) -> RegistryState:
        """Aliases and rollout in one call (what a serving replica polls).  A local registry
        whose file does not exist yet is empty: it is not created (nor migrated) for a read."""
        if (
            self.tracking_uri.startswith("sqlite:///")
            and not Path(self.tracking_uri.removeprefix("sqlite:///")).exists()
        ):
            return RegistryState()
        from mlflow.exceptions import MlflowException

        with _quiet():
            try:
                model = self.client.get_registered_model(self.name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return RegistryState()
                raise RegistryError(f"model registry: {exc.message}") from exc
        aliases, tags = model.aliases, model.tags
        mode = tags.get(ROLLOUT_TAG, "off")
        try:
            share = float(tags.get(SHARE_TAG, "0") or 0)
        except ValueError:
            share = 0.0
        return RegistryState(
            champion=str(aliases[CHAMPION]) if CHAMPION in aliases else None,
            challenger=str(aliases[CHALLENGER]) if CHALLENGER in aliases else None,
            mode=mode if mode in ROLLOUT_MODES else "off",
            share=min(max(share, 0.0), 1.0),
        )

    def fetch(self, version_or_alias: str, dest: Path) -> Path:
        """The local directory ``dest/<version>`` with the model files of a version, an alias
        (``champion``) or ``latest``; downloaded once, reused afterwards (the alias is
        resolved every time)."""
        with _quiet():
            mv = self._resolve(version_or_alias)
            version = str(mv.version)
            target = Path(dest) / version
            if all((target / f).is_file() for f in self.files):
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
            try:
                local = Path(self.client.download_artifacts(mv.run_id, MODEL_PATH, str(tmp)))
                self._check_download(local, version)
                try:
                    local.rename(target)  # atomic: a concurrent fetch sees all or nothing
                except OSError:
                    if not all((target / f).is_file() for f in self.files):
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _check_download(self, local: Path, version: str) -> None:
        missing = [f for f in self.files if not (local / f).is_file()]
        if missing:
            raise RegistryError(f"model version {version} lacks {', '.join(missing)}")
        meta = json.loads((local / "model.json").read_text())
        if str(meta.get("version")) != version:
            raise RegistryError(
                f"model version {version}'s model.json says version {meta.get('version')!r}"
            )

    def versions(self) -> list[dict[str, Any]]:
        """Every version, newest first: version, created_at, run_id, aliases, tags, metrics."""
        from mlflow.exceptions import MlflowException

        with _quiet():
            try:
                aliases = self.client.get_registered_model(self.name).aliases
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise
            by_version: dict[str, list[str]] = {}
            for alias, v in aliases.items():
                by_version.setdefault(str(v), []).append(alias)
            out = []
            for mv in self.client.search_model_versions(f"name = '{self.name}'"):
                run = self.client.get_run(mv.run_id) if mv.run_id else None
                out.append(
                    {
                        "version": str(mv.version),
                        "created_at": time.strftime(
                            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(mv.creation_timestamp / 1000)
                        ),
                        "run_id": mv.run_id,
                        "aliases": sorted(by_version.get(str(mv.version), [])),
                        "tags": dict(mv.tags),
                        "metrics": dict(run.data.metrics) if run else {},
                    }
                )
        return sorted(out, key=lambda v: -int(v["version"]))

    def show(self, version_or_alias: str) -> dict[str, Any]:
        """One version: its aliases, tags, run parameters and metrics, and where its run and
        report are."""
        with _quiet():
            mv = self._resolve(version_or_alias)
            version = str(mv.version)
            aliases = self.client.get_registered_model(self.name).aliases
            run = self.client.get_run(mv.run_id) if mv.run_id else None
            artifacts = (
                {a.path for a in self.client.list_artifacts(mv.run_id)} if mv.run_id else set()
            )
        return {
            "name": self.name,
            "version": version,
            "aliases": sorted(a for a, v in aliases.items() if str(v) == version),
            "created_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(mv.creation_timestamp / 1000)
            ),
            "run_id": mv.run_id,
            "artifact_uri": run.info.artifact_uri if run else None,
            "report": REPORT_FILE in artifacts,
            "tags": dict(mv.tags),
            "params": dict(run.data.params) if run else {},
            "metrics": dict(run.data.metrics) if run else {},
        }
