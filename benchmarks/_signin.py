"""What the benchmarks share: signing a client in with an account's OAuth credentials."""

from __future__ import annotations

import httpx

from eobatch.accounts import Credentials


def sign_in(http: httpx.Client, creds: Credentials) -> None:
    """Give `http` (an httpx client, or FastAPI's TestClient) a bearer token of `creds`,
    obtained with the client-credentials flow as sentinelhub-py does."""
    answer = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    answer.raise_for_status()
    http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
