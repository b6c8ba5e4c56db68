"""The HTTP API through FastAPI's test client, on SQLite and PostgreSQL (no controller running)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from obstore.exceptions import PermissionDeniedError

from eobatch.accounts import Credentials, Principal, create_account, issue_token
from eobatch.api import create_app
from eobatch.api.pagination import MAX_COUNT, page_window
from eobatch.storage import Location
from eobatch.store.models import Task

EVALSCRIPT = """//VERSION=3
function setup() { return { input: ["B04", "B08"], output: { bands: 1, sampleType: "FLOAT32" } }; }
function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }
"""


@dataclass
class User:
    http: TestClient
    account_id: str
    collection_id: str


def signed_in(app, creds: Credentials) -> TestClient:  # type: ignore[no-untyped-def]
    """A test client of `app` holding an access token of `creds` (client-credentials flow)."""
    http = TestClient(app, raise_server_exceptions=False)
    token = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    ).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def _user(app, db, settings, name: str, pu: float = 5000) -> User:  # type: ignore[no-untyped-def]
    creds = create_account(db, name, pu)
    http = signed_in(app, creds)
    response = http.post(
        "/api/v1/byoc/collections", json={"name": f"{name} data", "s3Bucket": "data"}
    )
    assert response.status_code == 201, response.text
    return User(http, creds.account_id, response.json()["data"]["id"])


@pytest.fixture
def app(settings, db):  # type: ignore[no-untyped-def]
    for bucket in ("data", "results"):  # embedded mode: buckets are folders
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return create_app(settings, db)


@pytest.fixture
def alice(app, db, settings) -> User:  # type: ignore[no-untyped-def]
    return _user(app, db, settings, "alice")


@pytest.fixture
def bob(app, db, settings) -> User:  # type: ignore[no-untyped-def]
    return _user(app, db, settings, "bob")


def valid_request(collection_id: str, url: str = "s3://results/run") -> dict:
    return {
        "processRequest": {
            "input": {
                "bounds": {
                    "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
                    "bbox": [14.2, 48.2, 14.4, 48.35],
                },
                "data": [
                    {
                        "type": f"byoc-{collection_id}",
                        "dataFilter": {
                            "timeRange": {
                                "from": "2024-01-01T00:00:00Z",
                                "to": "2024-12-31T00:00:00Z",
                            }
                        },
                    }
                ],
            },
            "evalscript": EVALSCRIPT,
            "output": {"responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        },
        "input": {"type": "tiling-grid", "id": 7, "resolution": 20.0},
        "output": {
            "type": "raster",
            "delivery": {
                "s3": {"url": url, "accessKey": "AKIAEXAMPLE", "secretAccessKey": "very-secret"}
            },
        },
        "instanceType": "normal",
        "description": "test task",
    }


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def task_count(db) -> int:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return session.query(Task).count()


def assert_error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert error["reason"] and error["message"]
    if code:
        assert error["code"] == code
    return error


# -- create, read, list ------------------------------------------------------------------------


def test_create_returns_the_task_and_writes_the_redacted_request(alice: User, settings) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    response = alice.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "CREATED" and task["userAction"] == "NONE"
    assert task["domainAccountId"] == alice.account_id
    assert task["completionPercentage"] == 0 and task["costPU"] == 0
    assert datetime.fromisoformat(task["created"]).tzinfo is not None
    echo = task["request"]
    assert echo["processRequest"]["evalscript"] == EVALSCRIPT
    assert echo["output"]["delivery"]["s3"]["url"] == "s3://results/run"
    assert "very-secret" not in json.dumps(task)
    written = settings.buckets_dir / "results" / "run" / f"request-{task['id']}.json"
    stored = json.loads(written.read_text())
    assert stored["input"] == body["input"] and "very-secret" not in written.read_text()
    got = alice.http.get(f"/api/v2/batch/process/{task['id']}").json()
    assert got == task


def test_multipart_create_takes_the_evalscript_part(alice: User) -> None:
    body = valid_request(alice.collection_id)
    del body["processRequest"]["evalscript"]
    response = alice.http.post(
        "/api/v2/batch/process",
        files={
            "request": (None, json.dumps(body), "application/json"),
            "evalscript": (None, EVALSCRIPT, "text/plain"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["request"]["processRequest"]["evalscript"] == EVALSCRIPT


def test_nulls_and_unknown_keys_are_ignored(alice: User) -> None:
    body = valid_request(alice.collection_id)
    body["input"]["bufferX"] = None
    body["somethingNew"] = {"x": 1}
    body["processRequest"]["input"]["data"][0]["processing"] = None
    assert alice.http.post("/api/v2/batch/process", json=body).status_code == 201


def test_pagination_sort_and_search(alice: User) -> None:
    ids = []
    for i in range(5):
        body = valid_request(alice.collection_id)
        body["description"] = f"run {i} {'forest' if i % 2 else 'water'}"
        ids.append(alice.http.post("/api/v2/batch/process", json=body).json()["id"])
    seen, token, pages = [], None, 0
    while True:
        params = {"count": 2, **({"viewtoken": token} if token else {})}
        page = alice.http.get("/api/v2/batch/process", params=params).json()
        pages += 1
        seen += [t["id"] for t in page["data"]]
        links = page["links"]
        assert links["currentToken"] == (token or "0")
        assert links["@id"].endswith(f"viewtoken={token or '0'}")
        token = links.get("nextToken")
        if token is None:
            assert "next" not in links
            break
        assert f"viewtoken={token}" in links["next"] and "count=2" in links["next"]
    assert pages == 3 and seen == list(reversed(ids))  # default: newest first
    oldest_first = alice.http.get("/api/v2/batch/process", params={"sort": "created"}).json()
    assert [t["id"] for t in oldest_first["data"]] == ids
    forest = alice.http.get("/api/v2/batch/process", params={"search": "forest"}).json()["data"]
    assert sorted(t["id"] for t in forest) == sorted([ids[1], ids[3]])
    either = alice.http.get("/api/v2/batch/process", params={"search": "run 0|run 4"}).json()[
        "data"
    ]
    assert sorted(t["id"] for t in either) == sorted([ids[0], ids[4]])


def test_search_words_are_literal_text(alice: User) -> None:
    ids = {}
    for description in ("100% cover", "s2_l2a run", "s2 l2a run", "plain"):
        body = valid_request(alice.collection_id)
        body["description"] = description
        ids[description] = alice.http.post("/api/v2/batch/process", json=body).json()["id"]

    def found(search: str) -> set[str]:
        response = alice.http.get("/api/v2/batch/process", params={"search": search})
        assert response.status_code == 200, response.text
        return {d for d, i in ids.items() if i in {t["id"] for t in response.json()["data"]}}

    assert found("%") == {"100% cover"}  # not a wildcard
    assert found("s2_l2a") == {"s2_l2a run"}  # `_` is not "any character"
    assert found("S2 L2A") == {"s2 l2a run"}  # case does not matter
    assert found("nowhere|") == set()  # an empty alternative matches nothing, not everything
    assert found("run & ") == {"s2_l2a run", "s2 l2a run"}
    assert found("|") == set(ids)  # no word at all: no filter


def test_update_description_and_actions(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    task_id = alice.http.post(
        "/api/v2/batch/process", json=valid_request(alice.collection_id)
    ).json()["id"]
    response = alice.http.put(f"/api/v2/batch/process/{task_id}", json={"description": "renamed"})
    assert response.status_code == 200
    assert response.json()["description"] == "renamed"
    assert set(response.json()) == {"processRequest", "input", "output", "description"}
    assert (
        alice.http.get(f"/api/v2/batch/process/{task_id}").json()["request"]["description"]
        == "renamed"
    )
    response = alice.http.post(
        f"/api/v2/batch/process/{task_id}/analyse", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 204 and response.content == b""
    task = alice.http.get(f"/api/v2/batch/process/{task_id}").json()
    assert task["userAction"] == "ANALYSE" and task["status"] == "CREATED"
    # while an action is pending the description is locked
    assert_error(alice.http.put(f"/api/v2/batch/process/{task_id}", json={"description": "x"}), 409)
    with db.session() as session:
        session.get(Task, task_id).status = "PROCESSING"
        session.get(Task, task_id).action_pending = False
    assert_error(alice.http.put(f"/api/v2/batch/process/{task_id}", json={"description": "x"}), 409)
    assert alice.http.post(f"/api/v2/batch/process/{task_id}/stop").status_code == 204


def test_tiling_grids(alice: User) -> None:
    page = alice.http.get("/api/v2/batch/tilinggrids").json()
    assert [g["id"] for g in page["data"]] == [0, 1, 2, 3, 6, 7]
    assert page["links"]["currentToken"] == "0" and "nextToken" not in page["links"]
    grid = alice.http.get("/api/v2/batch/tilinggrids/7").json()
    assert grid["name"] == "LAEA 20km grid"
    assert grid["properties"]["tileWidth"] == 20000.0
    assert sorted(grid["properties"]["resolutions"]) == [10.0, 20.0]
    assert_error(alice.http.get("/api/v2/batch/tilinggrids/5"), 404, "COMMON_NOT_FOUND")
    assert_error(alice.http.get("/api/v2/batch/tilinggrids/abc"), 400, "COMMON_BAD_PAYLOAD")
    two = alice.http.get("/api/v2/batch/tilinggrids", params={"count": 4}).json()
    assert len(two["data"]) == 4 and two["links"]["nextToken"] == "4"


# -- bad inputs: each a 4xx with the SH error body, and nothing stored or written ---------------


def _mutate(path: str, value):  # type: ignore[no-untyped-def]
    """A mutation setting (or, with value=..., deleting) a '.'-separated key path."""

    def apply(body: dict) -> dict:
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is ...:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return body

    return apply


BAD_BODIES = {
    "wrong type for grid id": (_mutate("input.id", "seven"), "input->id"),
    "unknown grid": (_mutate("input.id", 42), "input->id"),
    "resolution not in grid": (_mutate("input.resolution", 30.0), "input->resolution"),
    "negative resolution": (_mutate("input.resolution", -20), "input->resolution"),
    "negative buffer": (_mutate("input.bufferX", -3), "input->bufferX"),
    "huge buffer": (_mutate("input.bufferY", 40000), "input->bufferY"),
    "bbox with 3 numbers": (
        _mutate("processRequest.input.bounds.bbox", [14.2, 48.2, 14.4]),
        "processRequest->input->bounds->bbox",
    ),
    "inverted bbox": (
        _mutate("processRequest.input.bounds.bbox", [14.4, 48.35, 14.2, 48.2]),
        "processRequest->input->bounds->bbox",
    ),
    "bbox of strings": (
        _mutate("processRequest.input.bounds.bbox", ["a", "b", "c", "d"]),
        "processRequest->input->bounds->bbox",
    ),
    "geometry not a polygon": (
        _mutate(
            "processRequest.input.bounds", {"geometry": {"type": "Point", "coordinates": [14, 48]}}
        ),
        "processRequest->input->bounds->geometry",
    ),
    "unknown CRS": (
        _mutate(
            "processRequest.input.bounds.properties.crs",
            "http://www.opengis.net/def/crs/EPSG/0/999999",
        ),
        "processRequest->input->bounds->properties->crs",
    ),
    "garbage CRS": (
        _mutate("processRequest.input.bounds.properties.crs", "not a crs"),
        "processRequest->input->bounds->properties->crs",
    ),
    "missing bounds for a grid": (
        _mutate("processRequest.input.bounds", ...),
        "processRequest->input->bounds",
    ),
    "missing delivery": (_mutate("output.delivery", ...), "output->delivery"),
    "two storage kinds": (
        _mutate("output.delivery.gs", {"url": "gs://b/x", "credentials": "e30="}),
        "output->delivery",
    ),
    "delivery not s3": (
        _mutate("output.delivery.s3.url", "http://example.com/x"),
        "output->delivery->s3->url",
    ),
    "half a key pair": (_mutate("output.delivery.s3.secretAccessKey", ...), "output->delivery"),
    "template without tile": (
        _mutate("output.delivery.s3.url", "s3://results/<requestId>/x.tiff"),
        "output->delivery->s3->url",
    ),
    "unknown template placeholder": (
        _mutate("output.delivery.s3.url", "s3://results/<featureId>/<tileName>.tiff"),
        "output->delivery->s3->url",
    ),
    "missing evalscript": (_mutate("processRequest.evalscript", ...), "processRequest->evalscript"),
    "empty evalscript": (_mutate("processRequest.evalscript", "   "), "processRequest->evalscript"),
    "unknown data type": (
        _mutate("processRequest.input.data.0.type", "sentinel-7"),
        "processRequest->input->data->0->type",
    ),
    "unserved collection": (
        _mutate("processRequest.input.data.0.type", "sentinel-3-olci"),
        "processRequest->input->data->0->type",
    ),
    "unknown byoc collection": (
        _mutate("processRequest.input.data.0.type", "byoc-00000000-0000-0000-0000-000000000000"),
        "processRequest->input->data->0->type",
    ),
    "no data sources": (_mutate("processRequest.input.data", []), "processRequest->input->data"),
    "unknown output format": (
        _mutate("processRequest.output.responses.0.format.type", "image/png"),
        "processRequest->output->responses->0->format->type",
    ),
    "json output not userdata": (
        _mutate("processRequest.output.responses.0.format.type", "application/json"),
        "processRequest->output->responses->0->format->type",
    ),
    "duplicate output identifier": (
        _mutate(
            "processRequest.output.responses.1",
            {"identifier": "default", "format": {"type": "image/tiff"}},
        ),
        "processRequest->output->responses->1->identifier",
    ),
    "createCollection without COG": (
        _mutate("output.createCollection", True),
        "output->createCollection",
    ),
    "unknown output type": (_mutate("output.type", "netcdf"), "output"),
    "geopackage in a missing bucket": (
        _mutate("input", {"type": "geopackage", "features": {"s3": {"url": "s3://b/f.gpkg"}}}),
        "input->features",
    ),
    "zarr output without arrayParameters": (
        _mutate(
            "output",
            {
                "type": "zarr",
                "delivery": {"s3": {"url": "s3://b/<requestId>"}},
                "group": {"zarr_format": 2},
            },
        ),
        "output->arrayParameters",
    ),
    "unknown instance type": (_mutate("instanceType", "huge"), "instanceType"),
    "time range backwards": (
        _mutate(
            "processRequest.input.data.0.dataFilter.timeRange",
            {"from": "2024-12-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
        ),
        "processRequest->input->data->0->dataFilter->timeRange",
    ),
    "bad mosaicking order": (
        _mutate("processRequest.input.data.0.dataFilter.mosaickingOrder", "random"),
        "processRequest->input->data->0->dataFilter->mosaickingOrder",
    ),
    "bad upsampling": (
        _mutate("processRequest.input.data.0.processing", {"upsampling": "LANCZOS"}),
        "processRequest->input->data->0->processing->upsampling",
    ),
    "missing processRequest": (_mutate("processRequest", ...), "processRequest"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_bodies(case: str, alice: User, db, settings) -> None:  # type: ignore[no-untyped-def]
    mutate, parameter = BAD_BODIES[case]
    if case == "duplicate output identifier":
        body = valid_request(alice.collection_id)
        body["processRequest"]["output"]["responses"].append({})
        body = mutate(body)
    else:
        body = mutate(copy.deepcopy(valid_request(alice.collection_id)))
    error = assert_error(alice.http.post("/api/v2/batch/process", json=body), 400)
    parameters = [e["parameter"] for e in error.get("errors", [])]
    assert any(p.startswith(parameter) for p in parameters), (parameters, error["message"])
    assert all(e["violation"] for e in error["errors"])
    assert task_count(db) == 0
    assert files_under(settings.buckets_dir / "results") == []


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", "application/json"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_malformed_bodies(raw: bytes, content_type: str, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    response = alice.http.post(
        "/api/v2/batch/process", content=raw, headers={"Content-Type": content_type}
    )
    assert_error(response, 400, "COMMON_BAD_PAYLOAD")
    assert task_count(db) == 0


def test_multipart_without_request_part(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    response = alice.http.post("/api/v2/batch/process", files={"evalscript": (None, EVALSCRIPT)})
    assert_error(response, 400)
    assert task_count(db) == 0


def test_delivery_keys_that_cannot_write_are_a_400(
    alice: User, db, settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Keys allowed to list the bucket (the check at create) but not to write to it."""

    def refused(self, key: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
        raise PermissionDeniedError("Access Denied: s3:PutObject")

    monkeypatch.setattr(Location, "put", refused)
    response = alice.http.post("/api/v2/batch/process", json=valid_request(alice.collection_id))
    error = assert_error(response, 400)
    assert "cannot write to" in error["message"] and "PermissionDeniedError" in error["message"]
    assert error["errors"][0]["parameter"] == "output->delivery"
    assert task_count(db) == 0

    def unreachable(self, key: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
        raise ConnectionResetError("connection reset by peer")

    # the storage failing, not the request: a 503 a client may retry, and nothing created
    monkeypatch.setattr(Location, "put", unreachable)
    response = alice.http.post("/api/v2/batch/process", json=valid_request(alice.collection_id))
    error = assert_error(response, 503)
    assert "ConnectionResetError: connection reset by peer" in error["message"]
    assert task_count(db) == 0


def test_low_balance_is_forbidden(app, db, settings) -> None:  # type: ignore[no-untyped-def]
    poor = _user(app, db, settings, "poor", pu=999)
    response = poor.http.post("/api/v2/batch/process", json=valid_request(poor.collection_id))
    error = assert_error(response, 403, "COMMON_INSUFFICIENT_PERMISSIONS")
    assert "1000" in error["message"] and "999" in error["message"]
    assert task_count(db) == 0
    assert files_under(settings.buckets_dir / "results") == []


def test_a_count_over_the_page_maximum_is_capped(alice: User) -> None:
    ids = [
        alice.http.post("/api/v2/batch/process", json=valid_request(alice.collection_id)).json()[
            "id"
        ]
        for _ in range(2)
    ]
    for count in (1000, 10**30):  # as Sentinel Hub does: a full page, not an error
        response = alice.http.get("/api/v2/batch/process", params={"count": count})
        assert response.status_code == 200, response.text
        assert sorted(t["id"] for t in response.json()["data"]) == sorted(ids)
    assert page_window(1000, None) == (0, MAX_COUNT) == page_window(None, None)
    assert page_window(7, "200") == (200, 7)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"count": 0}, "count"),
        ({"count": -3}, "count"),
        ({"count": "x"}, "count"),
        ({"viewtoken": "abc"}, "viewtoken"),
        ({"viewtoken": "-4"}, "viewtoken"),
        ({"sort": "name"}, "sort"),
    ],
)
def test_bad_list_parameters(params: dict, parameter: str, alice: User) -> None:
    error = assert_error(alice.http.get("/api/v2/batch/process", params=params), 400)
    assert parameter in error["message"] or parameter in json.dumps(error.get("errors"))


def test_illegal_actions(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    task_id = alice.http.post(
        "/api/v2/batch/process", json=valid_request(alice.collection_id)
    ).json()["id"]
    error = assert_error(alice.http.post(f"/api/v2/batch/process/{task_id}/stop"), 400)
    assert "CREATED" in error["message"]
    with db.session() as session:
        session.get(Task, task_id).status = "DONE"
    for action in ("analyse", "start", "stop"):
        error = assert_error(alice.http.post(f"/api/v2/batch/process/{task_id}/{action}"), 400)
        assert "DONE" in error["message"]
    with db.session() as session:
        task = session.get(Task, task_id)
        task.status, task.stopped_status_reason = "STOPPED", "USER_ACTION"
        task.user_action, task.user_action_updated = (
            "STOP",
            datetime.now(UTC) - timedelta(minutes=1),
        )
    error = assert_error(alice.http.post(f"/api/v2/batch/process/{task_id}/start"), 400)
    assert "30 minutes" in error["message"]
    assert alice.http.get(f"/api/v2/batch/process/{task_id}").json()["userAction"] == "STOP"


def test_unknown_ids(alice: User) -> None:
    for path in (
        "/api/v2/batch/process/3f1c5ab0-0000-4000-8000-000000000000",
        "/api/v2/batch/process/not-a-uuid",
    ):
        assert_error(alice.http.get(path), 404, "COMMON_NOT_FOUND")
        assert_error(alice.http.post(f"{path}/start"), 404, "COMMON_NOT_FOUND")
    assert_error(alice.http.get("/api/v2/batch/nothing-here"), 404, "COMMON_NOT_FOUND")
    assert_error(alice.http.delete("/api/v2/batch/process"), 405, "COMMON_METHOD_NOT_ALLOWED")


# -- authentication and isolation ------------------------------------------------------------


def test_tokens(app, db, settings) -> None:  # type: ignore[no-untyped-def]
    creds = create_account(db, "carol", 2000)
    http = TestClient(app, raise_server_exceptions=False)
    for path in ("/oauth/token", "/auth/realms/main/protocol/openid-connect/token"):
        response = http.post(
            path,
            data={
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
            },
        )
        assert response.status_code == 200
        token = response.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == settings.token_lifetime_s
    bad = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": "wrong",
        },
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    grant = http.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"

    secret = settings.jwt_secret
    expired = issue_token(
        secret, Principal(creds.account_id, creds.client_id), timedelta(seconds=-5)
    )
    forged = issue_token("x" * 40, Principal(creds.account_id, creds.client_id), timedelta(hours=1))
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer a.b.c"},
    ):
        for method, path in (
            ("GET", "/api/v2/batch/process"),
            ("POST", "/api/v2/batch/process"),
            ("GET", "/api/v2/batch/tilinggrids"),
            ("GET", "/api/v1/byoc/collections"),
        ):
            response = http.request(method, path, headers=headers, json={})
            assert_error(response, 401, "COMMON_UNAUTHORIZED")
    assert task_count(db) == 0


def test_accounts_are_isolated(alice: User, bob: User) -> None:
    task_id = alice.http.post(
        "/api/v2/batch/process", json=valid_request(alice.collection_id)
    ).json()["id"]
    assert bob.http.get("/api/v2/batch/process").json()["data"] == []
    assert_error(bob.http.get(f"/api/v2/batch/process/{task_id}"), 404)
    assert_error(bob.http.put(f"/api/v2/batch/process/{task_id}", json={"description": "x"}), 404)
    for action in ("analyse", "start", "stop"):
        assert_error(bob.http.post(f"/api/v2/batch/process/{task_id}/{action}"), 404)
    # bob cannot read, change, delete or use alice's collection
    cid = alice.collection_id
    assert [c["id"] for c in bob.http.get("/api/v1/byoc/collections").json()["data"]] == [
        bob.collection_id
    ]
    assert_error(bob.http.get(f"/api/v1/byoc/collections/{cid}"), 404)
    assert_error(
        bob.http.put(f"/api/v1/byoc/collections/{cid}", json={"name": "x", "s3Bucket": "data"}), 404
    )
    assert_error(bob.http.delete(f"/api/v1/byoc/collections/{cid}"), 404)
    assert_error(
        bob.http.post(f"/api/v1/byoc/collections/{cid}/tiles", json={"path": "a/(BAND).tif"}), 404
    )
    error = assert_error(bob.http.post("/api/v2/batch/process", json=valid_request(cid)), 400)
    assert "not found" in error["errors"][0]["violation"]
    # alice still sees everything unchanged
    task = alice.http.get(f"/api/v2/batch/process/{task_id}").json()
    assert task["userAction"] == "NONE" and task["request"]["description"] == "test task"
    assert alice.http.get(f"/api/v1/byoc/collections/{cid}").status_code == 200
