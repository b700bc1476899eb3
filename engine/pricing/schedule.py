"""Repricing on a schedule, once per interval across every replica.

Each replica runs a timer; at each tick it tries to take a lease (a row in ``pricing_settings``
holding who has it and until when, taken with a conditional update in one transaction).  The
replica that gets it reprices the catalogue; the others skip that tick.  A replica that dies
while holding the lease blocks nobody for longer than one interval.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from engine.commerce.db import insert_ignore
from engine.pricing.schema import PricingSetting
from engine.pricing.service import PricingService, RepriceResult

log = logging.getLogger(__name__)
LEASE_KEY = "reprice_lease"


class RepriceSchedule:
    def __init__(
        self,
        service: PricingService,
        every_s: float,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.service = service
        self.every_s = every_s
        self.clock = clock
        self.holder = f"replica-{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reprice-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                result = self.tick()
            except Exception:  # a failed run must not end the schedule
                log.exception("scheduled reprice failed")
                continue
            if result is not None:
                log.info(
                    "scheduled reprice: %d changed, %d suggested in %.0f ms",
                    result.changed,
                    result.suggested,
                    result.duration_ms,
                )

    def tick(self) -> RepriceResult | None:
        """Reprice if this replica gets the lease for this interval; None otherwise."""
        if not self.take_lease():
            return None
        return self.service.reprice(actor="schedule")

    def take_lease(self) -> bool:
        db = self.service.db
        now = self.clock()
        with db.transaction() as s:
            s.execute(
                insert_ignore(
                    db.dialect, PricingSetting, [{"key": LEASE_KEY, "value": {}}], ["key"]
                )
            )
            row = s.scalars(
                select(PricingSetting).where(PricingSetting.key == LEASE_KEY).with_for_update()
            ).one()
            until = row.value.get("until")
            if until is not None and datetime.fromisoformat(until) > now:
                return False
            # a little short of the interval, so the next tick finds it free
            expires = now + timedelta(seconds=self.every_s * 0.9)
            row.value = {"holder": self.holder, "until": expires.isoformat()}
            # the version stays: it is the configuration's stamp, and a lease is not an edit
        return True
