"""The task store: SQLAlchemy models, sessions and migrations."""

from eobatch.store.db import Database, make_engine, migrate

__all__ = ["Database", "make_engine", "migrate"]
