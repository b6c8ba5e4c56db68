"""The OpenAPI document (request bodies, the client-credentials scheme), the offline docs pages
and the console's packaged assets, through FastAPI's test client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.web.pages import STATIC


@pytest.fixture
def http(settings, db) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(settings, db), raise_server_exceptions=False)


def _local_assets(html: str) -> list[str]:
    """Every src/href/url the page loads; each must be a path on this server."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""", html)
    urls = [u for pair in found for u in pair if u and not u.startswith("#")]  # not in-page
    assert urls
    assert [u for u in urls if not u.startswith("/") or u.startswith("//")] == [], urls
    return urls


def test_openapi_describes_bodies_and_the_bearer_scheme(http: TestClient) -> None:
    document = http.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    ((name, scheme),) = schemes.items()
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"

    def body(path: str, method: str) -> dict:
        return document["paths"][path][method]["requestBody"]["content"]

    create = body("/api/v2/batch/process", "post")
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    assert set(create["multipart/form-data"]["schema"]["properties"]) == {"request", "evalscript"}
    refs = {
        ("/api/v2/batch/process/{task_id}", "put"): "DescriptionUpdate",
        ("/api/v1/byoc/collections", "post"): "CollectionIn",
        ("/api/v1/byoc/collections/{collection_id}", "put"): "CollectionIn",
        ("/api/v1/byoc/collections/{collection_id}/tiles", "post"): "TileIn",
        ("/api/v1/byoc/collections/{collection_id}/tiles/{tile_id}", "put"): "TileUpdate",
        ("/api/v1/process", "post"): "ProcessApiRequest",
    }
    for (path, method), model in refs.items():
        assert body(path, method)["application/json"]["schema"]["$ref"].endswith(f"/{model}")
    schemas = document["components"]["schemas"]
    batch = schemas["BatchRequest"]
    assert {"processRequest", "input", "output"} <= set(batch["required"])
    assert batch["properties"]["input"]["discriminator"]["propertyName"] == "type"
    # every reference resolves inside the document
    text = http.get("/openapi.json").text
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in schemas, ref
    token_form = body("/oauth/token", "post")["application/x-www-form-urlencoded"]["schema"]
    assert {"grant_type", "client_id", "client_secret"} <= set(token_form["properties"])
    assert set(body("/api/v1/process", "post")["multipart/form-data"]["schema"]["properties"]) == {
        "request",
        "evalscript",
    }
    # the STAC landing page and conformance are public: sentinelhub-py reads them without a token
    public = {"/api/v1/catalog/1.0.0", "/api/v1/catalog/1.0.0/conformance"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            secured = operation.get("security") == [{name: []}]
            assert secured == (path.startswith("/api/") and path not in public), (method, path)


def test_docs_pages_load_only_packaged_assets(http: TestClient) -> None:
    for page in ("/docs", "/redoc", "/"):
        response = http.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        for url in _local_assets(response.text):
            asset = http.get(url)
            assert asset.status_code == 200, (page, url)
    assert "validatorUrl" in http.get("/docs").text


def test_console_modules_and_vendored_files_are_packaged() -> None:
    console = STATIC / "console"
    for module in console.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert (console / imported).is_file(), (module.name, imported)
    for folder in ("leaflet", "swagger-ui", "redoc", "world-atlas"):
        assert (STATIC / "vendor" / folder / "LICENSE").is_file()
    for path in (STATIC / "vendor").rglob("*.js"):
        assert "cdn." not in path.read_text(errors="replace"), path
    assert Path(STATIC / "vendor" / "README.md").read_text().count("npm pack") >= 1


def test_swagger_try_it_out_flow(http: TestClient, db) -> None:  # type: ignore[no-untyped-def]
    """What Swagger UI's Authorize does for client credentials (HTTP Basic with the client id and
    secret), then a call with the token it got."""
    creds = create_account(db, "docs", 1000)
    token = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert http.get("/api/v2/batch/process", headers=bearer).json()["data"] == []
    assert http.get("/api/v2/batch/process").status_code == 401
