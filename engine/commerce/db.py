"""Database access: one engine per process, short transactions, migrations at start.

SQLite (the embedded default) runs in WAL mode and opens every writing transaction with
``BEGIN IMMEDIATE``, so concurrent writers queue on the database lock instead of failing on a
read-to-write upgrade (read-only transactions use a plain ``BEGIN`` and never wait for
writers); PostgreSQL uses row locks (``SELECT … FOR UPDATE``) taken in a fixed order.

SQLite's own wait for its write lock is a poll: a writer that finds the lock taken sleeps 1, 2,
5, 10 … up to 100 ms between tries, however soon the lock comes free.  Under a few concurrent
writers (two API processes inserting events and orders) those sleeps, not the writes, made the
tail.  So a writing transaction first takes a lock of this process's threads and an ``flock``
on ``<database>-writer.lock`` shared by every process on the machine: both wake the next
waiter the moment the holder is done, and SQLite's own lock is then almost always free.  A
writer that does not take them (another program) is still safe: SQLite's lock decides.

When the database cannot be reached, every transaction fails fast with one error,
``Unavailable`` (code ``database_unavailable``, HTTP 503 with Retry-After): ``unavailable``
below is the one place that says which SQLAlchemy errors mean "the database is away" (not
"this statement is wrong").  Connections are tested before use (``pool_pre_ping``), so after the
database returns, stale pooled connections are replaced instead of failing a request.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import CartwiseError, Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
READONLY = "cartwise_readonly"
# libpq waits at least 2 s for a connection; a refused one (server down) fails at once
CONNECT_TIMEOUT_S = 3
# how long a request waits for a pooled connection before it is told to come back later
POOL_TIMEOUT_S = 5
DATABASE_UNAVAILABLE = "database_unavailable"


def database_unavailable() -> Unavailable:
    return Unavailable("the database is unavailable; try again shortly", code=DATABASE_UNAVAILABLE)


def unavailable(exc: BaseException) -> Unavailable | None:
    """The ``Unavailable`` error an exception means, or None when it is not the database
    being away: the connection was refused, lost or invalidated (``OperationalError``,
    ``InterfaceError``, any DBAPI error flagged ``connection_invalidated``), or no pooled
    connection came free in time.  SQLite's "database is locked" is an ``OperationalError``
    too: also worth a retry."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return database_unavailable()
    return None


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# JSON columns (decision logs, audit data) go through orjson: several times faster than the
# standard library, which matters on the write-behind threads that share a replica's GIL
JSON_CODEC: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    db_path = url.split("///", 1)[-1].split("?", 1)[0]
    if not db_path or db_path == ":memory:" or "mode=memory" in url:
        return None
    return Path(db_path)


class WriterQueue:
    """One SQLite writer at a time, handed over without polling: a re-entrant lock for this
    process's threads, then an exclusive ``flock`` on a file beside the database for the
    processes (the kernel wakes the next one when it is released, or when its holder dies)."""

    def __init__(self, path: Path | None) -> None:
        self._threads = threading.RLock()
        self._path = path
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0  # nested writing transactions of the holding thread

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._depth == 0 and self._path is not None:
                if self._fd is None or self._pid != os.getpid():
                    # a forked child must not share its parent's open file: flock locks
                    # belong to the open file, so the two would not exclude each other
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    self._pid = os.getpid()
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        db_file = sqlite_file(url)
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            **JSON_CODEC,
        )
        _sqlite_pragmas(engine)
        return engine
    connect_args: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        # a server that vanished without closing the socket is noticed within ~20 s
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 2,
    }
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size * 8,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=True,  # a connection from before a restart is replaced, not used
        connect_args=connect_args,
        **JSON_CODEC,
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def insert_ignore(dialect: str, model: Any, rows: list[dict[str, Any]], keys: list[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO NOTHING`` of ``rows`` on PostgreSQL and SQLite."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).values(rows).on_conflict_do_nothing(index_elements=keys)


def ignore_conflicts(dialect: str, model: Any, keys: list[str]) -> Any:
    """The same statement without values: execute it with a list of rows (executemany).  It
    names the model's table, not the mapped class: a session then runs it as a plain Core
    executemany instead of through the ORM's bulk-insert path, which costs about a third more
    CPU per row for nothing these rows need (``loadtests/micro/bench_writebehind.py``)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model.__table__).on_conflict_do_nothing(index_elements=keys)


def add_on_conflict(dialect: str, model: Any, keys: list[str], adding: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` adding the new row's ``adding`` columns to
    the stored row's, on PostgreSQL and SQLite (counters kept by upserts)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model)
    table = stmt.table
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + stmt.excluded[name] for name in adding}
    )


class DriverInsert:
    """An insert statement (``ignore_conflicts``, or an upsert) of one table's rows, compiled
    once per set of columns the rows name, with the rows made ready for the database's driver
    apart from executing it: ``prepare`` applies each column's bind processing (JSON through
    the engine's codec, UTC datetimes, decimals, booleans) and the Python-side defaults of the
    columns a row leaves out, in the order the compiled statement wants; ``execute`` hands the
    result to the driver's ``executemany`` alone.  A write-behind log prepares its rows before
    its transaction, so on SQLite, where a writing transaction holds the one write lock, the
    lock covers the driver's work only.  A column left out with no Python-side default is
    NULL."""

    def __init__(self, engine: Engine, statement: Any) -> None:
        self.engine = engine
        self.statement = statement
        self._compiled: dict[frozenset[str], tuple[str, bool, list[tuple[str, Any]]]] = {}

    def prepare(
        self, rows: list[dict[str, Any]], into: dict[str, list[Any]] | None = None
    ) -> dict[str, list[Any]]:
        """The driver's parameters of ``rows`` per statement (one per set of columns the rows
        name), added to ``into``: rows prepared a chunk at a time are then executed together,
        one ``executemany`` per statement."""
        prepared: dict[str, list[Any]] = {} if into is None else into
        for r in rows:
            sql, positional, order = self._compile(frozenset(r))
            params = prepared.setdefault(sql, [])
            if positional:
                params.append(tuple(get(r) for _, get in order))
            else:
                params.append({name: get(r) for name, get in order})
        return prepared

    def execute(self, session: Session, prepared: dict[str, list[Any]]) -> None:
        connection = session.connection()
        for sql, params in prepared.items():
            connection.exec_driver_sql(sql, params)

    def _compile(self, keys: frozenset[str]) -> tuple[str, bool, list[tuple[str, Any]]]:
        found = self._compiled.get(keys)
        if found is None:
            dialect = self.engine.dialect
            table = self.statement.table
            named = [c.key for c in table.columns if c.key in keys]
            compiled = self.statement.compile(dialect=dialect, column_keys=named)
            positional = compiled.positiontup is not None
            names = list(compiled.positiontup or compiled.params)  # the binds, in order
            order = [(n, _getter(table.columns[n], n in keys, dialect)) for n in names]
            found = self._compiled[keys] = (str(compiled), positional, order)
        return found


def _getter(column: Any, named: bool, dialect: Any) -> Callable[[dict[str, Any]], Any]:
    """A row's value of ``column`` for the driver: the row's own, or the column's Python-side
    default (NULL without one), through the column type's bind processing."""
    process = column.type.bind_processor(dialect)
    default = column.default
    key = column.key

    def get(row: dict[str, Any]) -> Any:
        if named:
            value = row[key]
        elif default is None:
            value = None
        elif default.is_callable:
            value = default.arg(None)
        else:
            value = default.arg
        return value if process is None else process(value)

    return get


class Database:
    """Owns the engine and hands out transactions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._writers: WriterQueue | None = None
        if self.engine.dialect.name == "sqlite":
            db_file = sqlite_file(url)
            lock = db_file.with_name(db_file.name + "-writer.lock") if db_file else None
            self._writers = WriterQueue(lock)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back everything on any exception.
        ``readonly`` transactions do not take SQLite's write lock.  A lost or refused
        connection (also at commit) raises ``Unavailable`` (see ``unavailable``)."""
        if self._writers is not None and not readonly:
            with self._writers.held():
                yield from self._transaction(readonly=False)
        else:
            yield from self._transaction(readonly=readonly)

    def _transaction(self, *, readonly: bool) -> Iterator[Session]:
        session = self._sessions()  # connects lazily, on the first statement
        try:
            with session.begin():
                if readonly:
                    session.connection(execution_options={READONLY: True})
                yield session
        except CartwiseError:
            raise
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                raise
            raise error from exc
        finally:
            session.close()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection_engine"] = self.engine
        command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()
