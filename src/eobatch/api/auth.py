"""Bearer-token authentication of API routes and the OAuth2 client-credentials token endpoint."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2

from eobatch.accounts import (
    Principal,
    authenticate_client,
    check_active,
    issue_token,
    verify_token,
)
from eobatch.errors import Unauthorized

router = APIRouter(tags=["oauth"])
TOKEN_URL = "/oauth/token"

# The bearer scheme as OpenAPI tells it: OAuth2 client credentials from TOKEN_URL (Swagger UI's
# "Authorize" then fetches the token itself). It only hands over the Authorization header; the
# check, and its Sentinel Hub style 401, stay in `current_account`.
bearer = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL)),
    scheme_name="OAuth2ClientCredentials",
    description="An access token from the client-credentials grant at " + TOKEN_URL,
    auto_error=False,
)


def current_account(request: Request, header: str | None = Security(bearer)) -> str:
    """The account id behind the request's bearer token (401 otherwise)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <access_token>'.")
    state = request.app.state
    return check_active(state.db, verify_token(state.signing_key, token.strip())).account_id


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


_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                    "required": ["grant_type"],
                }
            }
        },
    }
}
for _path in (TOKEN_URL, "/auth/realms/main/protocol/openid-connect/token"):
    router.add_api_route(
        _path,
        _token,
        methods=["POST"],
        summary="Access token (OAuth2 client credentials; or HTTP Basic with the client's id)",
        openapi_extra=_TOKEN_FORM,
    )
