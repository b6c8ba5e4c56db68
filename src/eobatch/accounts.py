"""Accounts, OAuth2 clients and access tokens (client-credentials flow, JWT bearer tokens)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from eobatch import ledger
from eobatch.errors import NotFound, Unauthorized
from eobatch.lifecycle.billing import to_micro, to_pu
from eobatch.store import Database
from eobatch.store.models import Account, OAuthClient

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class Credentials:
    """A new OAuth client; the secret is shown once and only its hash is stored."""

    account_id: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Principal:
    """Who a valid access token speaks for."""

    account_id: str
    client_id: str


def _hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def _secret_matches(secret: str, stored: str) -> bool:
    _, salt_hex, digest_hex = stored.split("$")
    candidate = _hash_secret(secret, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(candidate, digest_hex)


def create_account(db: Database, name: str, balance_pu: float) -> Credentials:
    """A new account with one OAuth client, credited `balance_pu` (the ledger's first entry)."""
    if balance_pu < 0:
        raise ValueError("an account cannot open with a negative balance")
    with db.session() as session:
        account = Account(id=str(uuid.uuid4()), name=name, balance_micro_pu=0)
        session.add(account)
        session.flush()
        ledger.post(
            session, account.id, to_micro(balance_pu), ledger.CREDIT, note="opening balance"
        )
        return _add_client(session, account.id)


def add_client(db: Database, account_id: str) -> Credentials:
    """Another OAuth client for an existing account."""
    with db.session() as session:
        if session.get(Account, account_id) is None:
            raise NotFound(f"Account {account_id} not found")
        return _add_client(session, account_id)


def _add_client(session: Session, account_id: str) -> Credentials:
    client_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32)
    session.add(
        OAuthClient(client_id=client_id, account_id=account_id, secret_hash=_hash_secret(secret))
    )
    return Credentials(account_id, client_id, secret)


def list_accounts(db: Database) -> list[tuple[Account, list[str]]]:
    """Every account with its client ids."""
    with db.reading() as session:
        accounts = session.scalars(select(Account).order_by(Account.created)).all()
        clients = session.execute(select(OAuthClient.account_id, OAuthClient.client_id)).all()
    by_account: dict[str, list[str]] = {}
    for account_id, client_id in clients:
        by_account.setdefault(account_id, []).append(client_id)
    return [(a, by_account.get(a.id, [])) for a in accounts]


def top_up(db: Database, account_id: str, amount_pu: float) -> float:
    """Add PUs to an account; returns the new balance."""
    if amount_pu <= 0:
        raise ValueError("a top-up must be a positive number of PU")
    with db.session() as session:
        balance = ledger.post(
            session, account_id, to_micro(amount_pu), ledger.CREDIT, note="top-up"
        )
        return to_pu(balance)


def authenticate_client(db: Database, client_id: str, client_secret: str) -> str:
    """The account id of a client whose secret matches; raises `Unauthorized` otherwise."""
    with db.reading() as session:
        client = session.get(OAuthClient, client_id)
        if client is None or not _secret_matches(client_secret, client.secret_hash):
            raise Unauthorized("Invalid client or Invalid client credentials")
        account = session.get(Account, client.account_id)
        if account is None or account.disabled:
            raise Unauthorized("Invalid client or Invalid client credentials")
        return client.account_id


def revoke_client(db: Database, client_id: str) -> str:
    """Remove an OAuth client: its secret and every token issued to it stop working at once.
    Returns the client's account id; raises `NotFound` if there is no such client."""
    with db.session() as session:
        client = session.get(OAuthClient, client_id)
        if client is None:
            raise NotFound(f"Client {client_id} not found")
        session.execute(delete(OAuthClient).where(OAuthClient.client_id == client_id))
        return client.account_id


def set_disabled(db: Database, account_id: str, disabled: bool) -> None:
    """Disable an account (its tokens are refused at once, no new ones are issued, its
    clients stay for when it is enabled again) or enable it."""
    with db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise NotFound(f"Account {account_id} not found")
        account.disabled = disabled


def check_active(db: Database, principal: Principal) -> Principal:
    """`principal` if its client still exists and its account is enabled; raises
    `Unauthorized` otherwise. Asked on every request, so revocation takes effect at once."""
    with db.reading() as session:
        row = session.execute(
            select(Account.disabled)
            .join(OAuthClient, OAuthClient.account_id == Account.id)
            .where(
                OAuthClient.client_id == principal.client_id,
                Account.id == principal.account_id,
            )
        ).first()
    if row is None:
        raise Unauthorized("The access token's client has been revoked; use another client.")
    if row.disabled:
        raise Unauthorized("The account is disabled; ask the operator to enable it.")
    return principal


def issue_token(signing_key: str, principal: Principal, lifetime: timedelta) -> str:
    """A signed JWT access token for `principal`.

    sentinelhub-py decodes the payload with the standard base64 alphabet, so the claims are padded
    until their base64url form holds no '-' or '_' (pu-byoc-process.md §4.3).
    """
    now = datetime.now(UTC)
    claims = {
        "sub": principal.account_id,
        "azp": principal.client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "iss": "eobatch",
    }
    for pad in range(64):
        payload = json.dumps({**claims, "pad": " " * pad}, separators=(",", ":")).encode()
        encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        if "-" not in encoded and "_" not in encoded:
            return jwt.encode({**claims, "pad": " " * pad}, signing_key, algorithm="HS256")
    return jwt.encode(claims, signing_key, algorithm="HS256")


def verify_token(signing_key: str, token: str) -> Principal:
    """The principal of a valid, unexpired token; raises `Unauthorized` otherwise."""
    try:
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=["HS256"],
            options={"require": ["exp", "sub", "azp"]},
            issuer="eobatch",
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The access token has expired; request a new one.") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is not valid.") from exc
    return Principal(account_id=claims["sub"], client_id=claims["azp"])
