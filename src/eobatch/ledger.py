"""Moving processing units: every change of a balance goes through here and leaves a ledger entry.

Each change is one conditional SQL UPDATE (no read-modify-write in Python), so two controllers,
or a controller and a top-up, never lose each other's update on either backend. Amounts are
integer micro-PU (see lifecycle/billing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from eobatch.errors import NotFound
from eobatch.store import Database
from eobatch.store.models import Account, LedgerEntry

CREDIT = "credit"  # a top-up or an account's opening balance
PROCESSING = "processing"  # features processed (or in progress at a user stop)
TRANSFER = "transfer"  # the cross-region / cross-cloud output surcharge
MINIMUM = "minimum"  # what a finished task pays on top to reach the 100 PU minimum


def post(
    session: Session,
    account_id: str,
    amount_micro: int,
    kind: str,
    task_id: str | None = None,
    note: str | None = None,
) -> int:
    """Add `amount_micro` (negative: a charge) to the balance and record it; the new balance."""
    balance = session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(balance_micro_pu=Account.balance_micro_pu + amount_micro)
        .returning(Account.balance_micro_pu)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if balance is None:
        raise NotFound(f"Account {account_id} not found")
    session.add(
        LedgerEntry(
            account_id=account_id,
            task_id=task_id,
            kind=kind,
            amount_micro_pu=amount_micro,
            balance_after_micro_pu=balance,
            note=note,
        )
    )
    return balance


def reserve(session: Session, account_id: str, amount_micro: int) -> bool:
    """Hold `amount_micro` of the balance for work in flight, if that much is still free."""
    held = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.balance_micro_pu - Account.reserved_micro_pu >= amount_micro,
        )
        .values(reserved_micro_pu=Account.reserved_micro_pu + amount_micro)
        .returning(Account.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return held is not None


def release(session: Session, account_id: str, amount_micro: int) -> None:
    """Give back a hold made by `reserve` (the work finished, failed or was cancelled)."""
    if amount_micro:
        session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(reserved_micro_pu=Account.reserved_micro_pu - amount_micro)
            .execution_options(synchronize_session=False)
        )


def balance_micro(session: Session, account_id: str) -> int:
    value = session.scalar(select(Account.balance_micro_pu).where(Account.id == account_id))
    if value is None:
        raise NotFound(f"Account {account_id} not found")
    return value


@dataclass(frozen=True)
class Entry:
    id: int
    created: datetime
    kind: str
    task_id: str | None
    amount_micro: int
    balance_after_micro: int
    note: str | None


def entries(db: Database, account_id: str, limit: int | None = None) -> list[Entry]:
    """An account's ledger, oldest first (the newest `limit` entries when a limit is given)."""
    with db.reading() as session:
        if session.get(Account, account_id) is None:
            raise NotFound(f"Account {account_id} not found")
        query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
        query = query.order_by(LedgerEntry.id.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = session.scalars(query).all()
    return [
        Entry(
            r.id, r.created, r.kind, r.task_id, r.amount_micro_pu, r.balance_after_micro_pu, r.note
        )
        for r in reversed(rows)
    ]
