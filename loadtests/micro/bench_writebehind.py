"""What the decision log costs per decision: the write-behind thread's CPU per row.

    python -m loadtests.micro.bench_writebehind [--db sqlite:///var/bench-log.db] [--rows 4000]
    python -m loadtests.micro.bench_writebehind --db postgresql+psycopg://postgres@127.0.0.1/test

Every fraud decision is one row of ``fraud_decisions`` written behind the request by a thread
(``engine.writebehind``) that shares the replica's CPU (and GIL) with the requests.  This drives
that thread's insert (``WriteBehind._write``, batches of 50 as at ~1,000 decisions/s) with
realistic rows (51 model inputs, reasons, request attributes) and reports the writing thread's
CPU time per row, for the statement the log uses (an insert naming the table) and for the same
statement naming the mapped class, which SQLAlchemy runs through the ORM's bulk-insert path.
The two alternate batch by batch, so a machine that speeds up or slows down during the run
moves both.  Writes ``reports/writebehind.json``.  The table is emptied first.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from engine.commerce.db import Database
from engine.commerce.schema import Base
from engine.fraud.decision import Decision
from engine.fraud.explain import Reason
from engine.fraud.log import DecisionLog
from engine.fraud.schema import FraudDecision
from loadtests.micro.report import write

BATCH = 50


def decision(tag: str, i: int, rng: np.random.Generator) -> Decision:
    return Decision(
        decision_id=f"dec_{tag}_{i}",
        transaction_id=f"tx_{tag}_{i}",
        customer_id=f"cus_{int(rng.integers(5000)):06d}",
        merchant_id=f"m{int(rng.integers(200))}",
        amount=Decimal(f"{rng.lognormal(3.5, 1):.2f}"),
        currency="EUR",
        tx_at=datetime.now(UTC),
        probability=float(rng.random()),
        risk_score=int(rng.integers(100)),
        risk_level="normal",
        outcome="allow",
        reasons=tuple(Reason(f"feature_{j}", float(j), 0.1 * j) for j in range(3)),
        matched_rules=(),
        rule_id=None,
        model_version="1",
        features_degraded=False,
        attributes={"ip": "10.1.2.3", "email": "someone@example.com", "channel": "web"},
        inputs=tuple(float(x) for x in rng.random(51)),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite:///var/bench-log.db")
    ap.add_argument("--rows", type=int, default=4000, help="rows per statement")
    args = ap.parse_args()
    db = Database(args.db)
    Base.metadata.create_all(db.engine, tables=[FraudDecision.__table__])
    with db.transaction() as session:
        session.execute(delete(FraudDecision))
    log = DecisionLog(db)
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    statements = {
        "table (the log's statement)": log._insert,
        "mapped class (ORM bulk insert)": insert(FraudDecision).on_conflict_do_nothing(
            index_elements=["transaction_id"]
        ),
    }
    rng = np.random.default_rng(7)
    rows = {
        name: [decision(str(k), i, rng) for i in range(args.rows)]
        for k, name in enumerate(statements)
    }
    spent = dict.fromkeys(statements, 0.0)
    for name, statement in statements.items():  # warm: compile and cache both statements
        log._insert = statement
        log._write(rows[name][:BATCH])
    for start in range(BATCH, args.rows, BATCH):
        for name, statement in statements.items():
            log._insert = statement
            t = time.thread_time()
            log._write(rows[name][start : start + BATCH])
            spent[name] += time.thread_time() - t
    log.close()
    n = args.rows - BATCH
    body = {"db": db.dialect, "rows": n, "batch": BATCH, "cpu_us_per_row": {}}
    for name, seconds in spent.items():
        body["cpu_us_per_row"][name] = seconds / n * 1e6
        print(f"{db.dialect}, {name}: {seconds / n * 1e6:.0f} µs of CPU per row")
    print(f"report: {write('writebehind', body)}")


if __name__ == "__main__":
    main()
