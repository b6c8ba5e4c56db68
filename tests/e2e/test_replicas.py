"""Replicas of `eobatch serve` started at once on an empty PostgreSQL database: both migrate it
(one waits for the other), both come up, and each accepts the other's tokens."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from eobatch.accounts import create_account
from eobatch.sealing import new_key
from eobatch.store import Database
from tests.e2e.conftest import http_client
from tests.e2e.service import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_replicas_started_at_once_on_an_empty_database(
    tmp_path: Path, database_url: str
) -> None:
    # Each replica has its own data directory: what they share is the database and the secret
    # key setting, which opens the token-signing key the first one sealed into the store.
    env = {
        "EOBATCH_JWT_SECRET": "",
        "EOBATCH_SECRET_KEY": new_key(),
        "EOBATCH_WORKERS": "1",
        "EOBATCH_DASHBOARD_ADDRESS": "",
    }
    homes = [tmp_path / "one", tmp_path / "two"]
    for home in homes:
        home.mkdir()
    replicas = [ServiceProcess(home, database_url, extra_env=env) for home in homes]
    errors: list[BaseException] = []

    def start(replica: ServiceProcess) -> None:
        try:
            replica.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        db = Database(database_url)
        creds = create_account(db, "both", 2000)
        db.dispose()
        for issuer, other in (replicas, replicas[::-1]):
            with http_client(issuer.base_url, creds) as http:
                assert http.get("/api/v2/batch/process").status_code == 200
                answer = httpx.get(
                    f"{other.base_url}/api/v2/batch/process", headers=http.headers, timeout=30
                )
                assert answer.status_code == 200, answer.text
            assert httpx.get(f"{issuer.base_url}/readyz", timeout=30).status_code == 200
    finally:
        for replica in replicas:
            replica.stop()
