"""Bearer-token authentication of API routes and the OAuth2 client-credentials token endpoint."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from eobatch.accounts import Principal, authenticate_client, issue_token, verify_token
from eobatch.errors import Unauthorized

router = APIRouter(tags=["oauth"])


def current_account(request: Request) -> str:
    """The account id behind the request's bearer token (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <access_token>'.")
    return verify_token(request.app.state.signing_key, token.strip()).account_id


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def _token(request: Request) -> JSONResponse:
    raw = (await request.body()).decode("utf-8", errors="replace")
    form = {k: v[0] for k, v in parse_qs(raw).items()}
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic ") and not client_secret:
        try:
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(400, "invalid_request", "Malformed Basic authorization header")
    grant = form.get("grant_type")
    if grant != "client_credentials":
        return _oauth_error(
            400, "unsupported_grant_type", "Only grant_type=client_credentials is supported"
        )
    if not client_id or not client_secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    state = request.app.state
    try:
        account_id = await run_in_threadpool(
            authenticate_client, state.db, client_id, client_secret
        )
    except Unauthorized:
        return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials")
    lifetime = state.settings.token_lifetime_s
    token = issue_token(
        state.signing_key,
        Principal(account_id, client_id),
        timedelta(seconds=lifetime),
    )
    return JSONResponse(
        {
            "access_token": token,
            "expires_in": lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "email profile",
        },
        headers={"Cache-Control": "no-store"},
    )


router.add_api_route("/oauth/token", _token, methods=["POST"])
router.add_api_route("/auth/realms/main/protocol/openid-connect/token", _token, methods=["POST"])
