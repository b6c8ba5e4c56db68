from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest

from eobatch.accounts import (
    Principal,
    authenticate_client,
    create_account,
    issue_token,
    list_accounts,
    top_up,
    verify_token,
)
from eobatch.errors import NotFound, Unauthorized

KEY = "unit-test-signing-key-0123456789abcdef"


def test_token_round_trip_and_claims() -> None:
    token = issue_token(KEY, Principal("acc", "cli"), timedelta(minutes=5))
    assert verify_token(KEY, token) == Principal("acc", "cli")
    payload = token.split(".")[1]
    # sentinelhub-py decodes with the standard alphabet: the payload must not need '-' or '_'.
    assert "-" not in payload and "_" not in payload
    claims = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["azp"] == "cli" and claims["sub"] == "acc" and claims["exp"] > claims["iat"]


@pytest.mark.parametrize("client_id", [f"client-{i}" for i in range(20)])
def test_padding_works_for_many_claims(client_id: str) -> None:
    payload = issue_token(KEY, Principal("a" * 36, client_id), timedelta(hours=1)).split(".")[1]
    assert "-" not in payload and "_" not in payload


def test_expired_forged_and_garbage_tokens_are_refused() -> None:
    expired = issue_token(KEY, Principal("acc", "cli"), timedelta(seconds=-10))
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(KEY, expired)
    forged = issue_token(
        "another-key-0123456789abcdef0123", Principal("acc", "cli"), timedelta(hours=1)
    )
    with pytest.raises(Unauthorized, match="not valid"):
        verify_token(KEY, forged)
    unsigned = jwt.encode(
        {"sub": "acc", "azp": "c", "exp": 9999999999, "iss": "eobatch"}, None, algorithm="none"
    )
    with pytest.raises(Unauthorized):
        verify_token(KEY, unsigned)
    with pytest.raises(Unauthorized):
        verify_token(KEY, "not-a-token")


def test_accounts_clients_and_balance(db) -> None:  # type: ignore[no-untyped-def]
    creds = create_account(db, "alice", 1500)
    assert authenticate_client(db, creds.client_id, creds.client_secret) == creds.account_id
    with pytest.raises(Unauthorized):
        authenticate_client(db, creds.client_id, creds.client_secret + "x")
    with pytest.raises(Unauthorized):
        authenticate_client(db, "unknown", creds.client_secret)
    assert top_up(db, creds.account_id, 500) == 2000
    with pytest.raises(NotFound):
        top_up(db, "missing", 1)
    [(account, clients)] = list_accounts(db)
    assert account.balance_pu == 2000 and clients == [creds.client_id]
    # only a hash is stored
    from sqlalchemy import select

    from eobatch.store.models import OAuthClient

    with db.session() as session:
        stored = session.scalars(select(OAuthClient.secret_hash)).one()
    assert creds.client_secret not in stored and stored.startswith("scrypt$")
