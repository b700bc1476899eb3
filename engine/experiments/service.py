"""Experiments: define, start and stop A/B tests; assign shoppers on the request path.

An experiment splits the shoppers of one target (a widget, the recommender, a quote-time
pricing rule) between 2 to 10 variants.  ``assign`` is called on every decision: it reads the
running experiments from memory (reloaded when one starts or stops, ``engine.reloading``),
hashes the customer into a variant (``engine.experiments.assignment``) and queues the exposure
(``engine.experiments.log``): no database round trip.  At most one experiment runs per target
(a unique index holds it across replicas).  Variants and weights can be edited only while the
experiment is a draft: changing them later would move shoppers between variants.  Stopping is
final (results count orders until then).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.errors import AlreadyExists, InvalidTransition, NotFound, ValidationError
from engine.experiments import results as results_sql
from engine.experiments import targets
from engine.experiments.assignment import Assignment, Split, Variant, control, parse_variants
from engine.experiments.log import Exposure, ExposureLog
from engine.experiments.schema import ExperimentRow
from engine.reloading import Reloading

KEY = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
STATUSES = ("draft", "running", "stopped")


class ExperimentNotFound(NotFound):
    code = "experiment_not_found"


@dataclass(frozen=True)
class Experiment:
    key: str
    name: str
    description: str
    target_kind: str
    target: str
    variants: tuple[Variant, ...]
    status: str
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    version: int

    @classmethod
    def of(cls, row: ExperimentRow) -> Experiment:
        return cls(
            key=row.key,
            name=row.name,
            description=row.description,
            target_kind=row.target_kind,
            target=row.target,
            variants=tuple(
                Variant(v["name"], float(v["weight"]), v["config"]) for v in row.variants
            ),
            status=row.status,
            created_at=row.created_at,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            version=row.version,
        )

    @property
    def control(self) -> str:
        return control(self.variants).name

    def public(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "target": {"kind": self.target_kind, "name": self.target},
            "variants": [v.public() for v in self.variants],
            "control": self.control,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "version": self.version,
        }


@dataclass(frozen=True)
class _Running:
    key: str
    split: Split
    assignments: Mapping[str, Assignment]  # by variant name


class Experiments:
    def __init__(
        self,
        db: Database,
        *,
        poll_s: float = 1.0,
        log: ExposureLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.clock = clock
        self.exposures = log or ExposureLog(db)
        self._running = Reloading(db, _stamp, _load, poll_s=poll_s)

    def close(self) -> None:
        self.exposures.close()

    # --- the request path ----------------------------------------------------------------------
    def assign(
        self, target_kind: str, target: str, unit: str | None, *, log: bool = True
    ) -> Assignment | None:
        """The variant of ``unit`` (a customer id, else a session id) in the experiment running
        on the target, if any; ``log`` queues the exposure (named customers only: exposures
        are joined with orders)."""
        if unit is None:
            return None
        running = self._running.get().get((target_kind, target))
        if running is None:
            return None
        assignment = running.assignments[running.split.choose(running.key, unit).name]
        if log:
            self.expose(assignment, unit)
        return assignment

    def expose(self, assignment: Assignment, customer_id: str) -> None:
        self.exposures.append(
            Exposure(assignment.key, customer_id, assignment.variant, self.clock())
        )

    # --- admin ---------------------------------------------------------------------------------
    def create(
        self,
        key: str,
        name: str,
        target_kind: str,
        target: str,
        variants: Sequence[Mapping[str, Any]],
        *,
        description: str = "",
    ) -> Experiment:
        """A draft experiment, validated whole (errors name ``variants[i].field``)."""
        if not isinstance(key, str) or not KEY.match(key):
            raise ValidationError("a key is 1 to 64 of a-z, 0-9, - and _", field="key")
        _text(name, "name", 200, required=True)
        _text(description, "description", 2000)
        parsed = parse_variants(variants)
        with self.db.transaction() as s:
            targets.check(s, target_kind, target, parsed)
            if s.get(ExperimentRow, key) is not None:
                raise AlreadyExists(f"experiment {key!r} exists", field="key")
            row = ExperimentRow(
                key=key,
                name=name,
                description=description,
                target_kind=target_kind,
                target=target,
                variants=[v.public() for v in parsed],
                status="draft",
                created_at=self.clock(),
                version=1,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # created a moment ago by another request
                raise AlreadyExists(f"experiment {key!r} exists", field="key") from None
            return Experiment.of(row)

    def update(
        self,
        key: str,
        *,
        name: str | None = None,
        description: str | None = None,
        variants: Sequence[Mapping[str, Any]] | None = None,
    ) -> Experiment:
        """Rename or describe any experiment; change variants and weights of a draft only."""
        if name is not None:
            _text(name, "name", 200, required=True)
        if description is not None:
            _text(description, "description", 2000)
        parsed = parse_variants(variants) if variants is not None else None
        with self.db.transaction() as s:
            row = _row(s, key, lock=True)
            if parsed is not None:
                if row.status != "draft":
                    raise InvalidTransition(
                        f"the experiment is {row.status}: changing its variants or weights "
                        "would move shoppers between variants; create a new experiment",
                        field="variants",
                    )
                targets.check(s, row.target_kind, row.target, parsed)
                row.variants = [v.public() for v in parsed]
            row.name = row.name if name is None else name
            row.description = row.description if description is None else description
            row.version += 1
            return Experiment.of(row)

    def get(self, key: str) -> Experiment:
        with self.db.transaction(readonly=True) as s:
            return Experiment.of(_row(s, key))

    def list(self, status: str | None = None) -> builtins.list[Experiment]:
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status is one of {', '.join(STATUSES)}", field="status")
        query = select(ExperimentRow).order_by(ExperimentRow.created_at.desc(), ExperimentRow.key)
        if status is not None:
            query = query.where(ExperimentRow.status == status)
        with self.db.transaction(readonly=True) as s:
            return [Experiment.of(r) for r in s.scalars(query)]

    def start(self, key: str) -> Experiment:
        try:
            with self.db.transaction() as s:
                row = _row(s, key, lock=True)
                if row.status != "draft":
                    raise InvalidTransition(
                        f"the experiment is {row.status}; only a draft starts", field="status"
                    )
                exp = Experiment.of(row)
                targets.check(s, row.target_kind, row.target, exp.variants)  # still there?
                _one_running(s, row)
                row.status, row.started_at = "running", self.clock()
                row.running_target = f"{row.target_kind}:{row.target}"
                row.version += 1
                s.flush()
                out = Experiment.of(row)
        except IntegrityError:  # another replica started one on this target meanwhile
            raise InvalidTransition(
                "another experiment is running on this target", field="target"
            ) from None
        self._running.invalidate()
        return out

    def stop(self, key: str) -> Experiment:
        with self.db.transaction() as s:
            row = _row(s, key, lock=True)
            if row.status != "running":
                raise InvalidTransition(
                    f"the experiment is {row.status}; only a running one stops", field="status"
                )
            row.status, row.stopped_at, row.running_target = "stopped", self.clock(), None
            row.version += 1
            out = Experiment.of(row)
        self._running.invalidate()
        return out

    def assignment(self, key: str, customer_id: str) -> dict[str, Any]:
        """The variant a customer has (or would have) in an experiment; logs no exposure."""
        exp = self.get(key)
        return {
            "key": exp.key,
            "variant": Split.of(exp.variants).choose(exp.key, customer_id).name,
            "status": exp.status,
        }

    def results(self, key: str) -> dict[str, Any]:
        self.exposures.flush()
        with self.db.transaction(readonly=True) as s:
            exp = Experiment.of(_row(s, key))
            rows = results_sql.per_variant(s, exp.key, exp.stopped_at)
        return results_sql.report(exp, rows)


def _text(value: Any, field: str, limit: int, *, required: bool = False) -> None:
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise ValidationError(
            f"{field} is {'non-empty ' if required else ''}text of at most {limit}", field=field
        )


def _row(s: Session, key: str, *, lock: bool = False) -> ExperimentRow:
    query = select(ExperimentRow).where(ExperimentRow.key == key)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise ExperimentNotFound(f"no experiment {key!r}", field="key")
    return row


def _one_running(s: Session, row: ExperimentRow) -> None:
    other = s.scalar(
        select(ExperimentRow.key).where(
            ExperimentRow.running_target == f"{row.target_kind}:{row.target}"
        )
    )
    if other is not None:
        raise InvalidTransition(
            f"experiment {other!r} is running on {row.target_kind} {row.target!r}; stop it first",
            field="target",
        )


def _stamp(s: Session) -> tuple[tuple[str, int], ...]:
    rows = s.execute(
        select(ExperimentRow.key, ExperimentRow.version)
        .where(ExperimentRow.status == "running")
        .order_by(ExperimentRow.key)
    )
    return tuple((key, version) for key, version in rows)


def _load(s: Session, _stamp: object) -> dict[tuple[str, str], _Running]:
    out = {}
    for row in s.scalars(select(ExperimentRow).where(ExperimentRow.status == "running")):
        exp = Experiment.of(row)
        out[(exp.target_kind, exp.target)] = _Running(
            exp.key,
            Split.of(exp.variants),
            {
                v.name: Assignment(exp.key, exp.target_kind, exp.target, v.name, v.config)
                for v in exp.variants
            },
        )
    return out
