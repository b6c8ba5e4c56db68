"""Engine, sessions and schema migrations of the task store (SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from eobatch.sealing import Keyring

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed 64-bit number: the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x656F6261_74636801
# A transaction left idle this long is ended by PostgreSQL (ms): a frozen replica must not keep
# a task row locked forever (its lease expires and another replica takes the task over).
_IDLE_IN_TRANSACTION_MS = 120_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling begins a transaction only at the first write, so a
    # transaction's reads and writes were not atomic: two controllers could both read a task as
    # free and both claim it. SQLAlchemy emits the BEGIN instead (`_sqlite_begin`).
    dbapi_connection.isolation_level = None
    # WAL lets the API read while the controller writes; the busy timeout absorbs short locks.
    # With WAL, synchronous=NORMAL syncs at checkpoints instead of at every commit: the store
    # stays consistent through any crash, and only a power loss or an OS crash can take back
    # the last commits (features then run again and are billed once: docs/deployment.md).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writing transaction takes the write lock at once (BEGIN IMMEDIATE): it waits for the
    # other writers (busy timeout) and everything it reads stays true until it commits. A
    # reading one (BEGIN) sees one snapshot and never waits for a writer.
    connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN, "BEGIN"))


# The execution option that makes a SQLite transaction a writing one (ignored by PostgreSQL).
_BEGIN = "eobatch_sqlite_begin"


def writing(engine: Engine) -> Engine:
    """`engine`, with its SQLite transactions taking the write lock as they begin."""
    return engine.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, foreign keys and a busy timeout.

    PostgreSQL connections are checked before use (a restarted server or a dropped connection
    costs one retry, not an error), give up connecting after 10 s instead of hanging, and end
    transactions left idle for two minutes.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={
            "connect_timeout": 10,
            "options": f"-c idle_in_transaction_session_timeout={_IDLE_IN_TRANSACTION_MS}",
        },
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


class UnknownSchema(Exception):
    """The store is at a schema revision this version of eobatch does not know (a newer
    eobatch migrated it)."""


class NotUpgraded(Exception):
    """A shared store behind this version's schema, opened by a command that does not upgrade
    it (only `eobatch migrate` and `eobatch serve` do: not an operator's `tasks list`)."""


def _check_known(connection: Connection) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    scripts = ScriptDirectory.from_config(_alembic_config())
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise UnknownSchema(
            f"the store is at schema revision {current}, which this version of eobatch does not "
            f"know (its newest is {scripts.get_current_head()}): a newer eobatch migrated it. "
            "Run that version, or restore the store's backup from before the upgrade"
        )


def check_known_schema(engine: Engine) -> None:
    """Raise `UnknownSchema` if the store is at a revision this eobatch does not know."""
    with engine.connect() as connection:
        _check_known(connection)


def migrate(engine: Engine, keyring: Keyring | None = None) -> None:
    """Bring the schema to the newest Alembic revision (`keyring` seals the credentials of a
    store from before 0010_security; a store without any needs none).

    On PostgreSQL the migration runs under an advisory lock, in one transaction: replicas that
    start together wait for the first one and then find the schema already up to date.
    """
    config = _alembic_config()
    with writing(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        _check_known(connection)
        config.attributes["connection"] = connection
        config.attributes["keyring"] = keyring
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """(the store's revision, the newest revision this version of eobatch knows)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head or ""


class Database:
    """The store: one engine, and sessions that write or only read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(writing(self.engine), expire_on_commit=False)
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writing = threading.local()  # whether this thread is inside `session()`

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self, keyring: Keyring | None = None) -> None:
        migrate(self.engine, keyring)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error. On SQLite it holds the
        write lock from its start, so what it reads stays true until it commits; on PostgreSQL
        the queries that depend on that lock their rows (`with_for_update`)."""
        if self.is_sqlite and getattr(self._writing, "active", False):
            # The inner one would wait for the outer one's lock: a deadlock until the timeout.
            raise RuntimeError("a writing session inside another one on the same thread")
        self._writing.active = True
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            self._writing.active = False

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: one consistent snapshot, never waiting for a writer."""
        with self._readers() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise unless the store answers a query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
