"""The key that signs access tokens: one for the whole deployment, kept in the task store.

Every replica of the API must accept a token any other replica issued, so the key cannot be a
per-process or per-data-directory secret. The first replica to start generates it; the others
read it. It is stored sealed with the deployment's secret key (sealing.py), which the replicas
therefore share too. `EOBATCH_JWT_SECRET` overrides it (e.g. to keep it outside the store).
"""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from eobatch.sealing import Keyring
from eobatch.store import Database
from eobatch.store.models import ServiceSecret

TOKEN_KEY = "token-signing-key"


def token_signing_key(db: Database, keyring: Keyring, configured: str | None = None) -> str:
    """`configured` if given, else the deployment's stored key (created on first use)."""
    if configured:
        return configured
    with db.reading() as session:
        stored = session.get(ServiceSecret, TOKEN_KEY)
        if stored is not None:
            return keyring.open(stored.value)
    try:
        with db.session() as session:
            sealed = keyring.seal(secrets.token_urlsafe(48))
            session.add(ServiceSecret(name=TOKEN_KEY, value=sealed))
    except IntegrityError:  # another replica stored one first: use that
        pass
    with db.session() as session:
        stored = session.get(ServiceSecret, TOKEN_KEY)
        assert stored is not None
        return keyring.open(stored.value)


def check_secret_key(db: Database, keyring: Keyring) -> None:
    """Raise `SealingError` unless `keyring` opens the store's sealed secrets: a replica started
    with another secret key stops at once, with a clear message, instead of failing later."""
    with db.reading() as session:
        stored = session.get(ServiceSecret, TOKEN_KEY)
    if stored is not None:
        keyring.open(stored.value)
