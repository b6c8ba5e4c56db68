"""Schema migrations keep existing data: a store at revision 0001 upgraded to the newest one."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from eobatch.store import Database
from eobatch.store.db import _MIGRATIONS


def _upgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_pu_amounts_survive_the_move_to_micro_pu(database_url: str) -> None:
    db = Database(database_url)
    try:
        _upgrade(db, "0001")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (id, name, balance_pu, created) "
                    "VALUES ('a1', 'old', 1234.567891, CURRENT_TIMESTAMP)"
                )
            )
        db.migrate()
        with db.session() as session:
            balance, reserved = session.execute(
                text("SELECT balance_micro_pu, reserved_micro_pu FROM accounts WHERE id = 'a1'")
            ).one()
            ledger = session.execute(
                text("SELECT kind, amount_micro_pu, balance_after_micro_pu FROM ledger")
            ).all()
        assert (balance, reserved) == (1_234_567_891, 0)
        assert [tuple(r) for r in ledger] == [("credit", 1_234_567_891, 1_234_567_891)]
    finally:
        db.dispose()
