"""Hostile input through the HTTP API, on SQLite and PostgreSQL (issue 16): every case is the
right 4xx with an SH error body, stores nothing, writes no file, and leaves the service serving
other requests."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing

import pytest
from fastapi.testclient import TestClient

from eobatch.api import create_app
from eobatch.lifecycle.controller import Controller
from eobatch.planning import parse_aoi, plan_tiling_grid
from eobatch.planning.estimate import estimate_features
from eobatch.store.models import Collection, Feature, Task, Tile
from tests.geopackages import squares, valid_geopackage, write_layer
from tests.integration.test_api import (
    EVALSCRIPT,
    User,
    _user,
    assert_error,
    files_under,
    task_count,
    valid_request,
)

BODY_LIMIT = 64 * 1024
CREATE = "/api/v2/batch/process"


@pytest.fixture
def limited(settings):  # type: ignore[no-untyped-def]
    """Settings with a small body limit, so that refusing a body is quick to show."""
    return settings.model_copy(update={"max_body_bytes": BODY_LIMIT})


@pytest.fixture
def app(limited, db):  # type: ignore[no-untyped-def]
    for bucket in ("data", "results", "in"):
        (limited.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return create_app(limited, db)


@pytest.fixture
def alice(app, db, limited) -> User:  # type: ignore[no-untyped-def]
    return _user(app, db, limited, "alice")


def stored_nothing(db, settings) -> None:  # type: ignore[no-untyped-def]
    """No task row and no file in the results bucket."""
    assert task_count(db) == 0
    assert files_under(settings.buckets_dir / "results") == []


def still_serving(user: User) -> None:
    """The service answers the next, ordinary request."""
    response = user.http.post(CREATE, json=valid_request(user.collection_id))
    assert response.status_code == 201, response.text


def violations(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    error = assert_error(response, 400, "COMMON_BAD_PAYLOAD")
    return {e["parameter"]: e["violation"] for e in error.get("errors", [])}


# -- request body size ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_stores_nothing(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    body["description"] = "x" * (BODY_LIMIT + 1)
    error = assert_error(alice.http.post(CREATE, json=body), 413, "COMMON_PAYLOAD_TOO_LARGE")
    assert str(BODY_LIMIT) in error["message"] and "EOBATCH_MAX_BODY_BYTES" in error["message"]
    stored_nothing(db, limited)
    still_serving(alice)


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(valid_request(alice.collection_id) | {"description": "y" * 4 * BODY_LIMIT})

    def chunks() -> Iterator[bytes]:
        data = body.encode()
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    response = alice.http.post(
        CREATE, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413)
    stored_nothing(db, limited)
    still_serving(alice)


def test_a_description_update_over_the_limit_is_413(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    task_id = alice.http.post(CREATE, json=valid_request(alice.collection_id)).json()["id"]
    response = alice.http.put(f"{CREATE}/{task_id}", json={"description": "z" * BODY_LIMIT * 2})
    assert_error(response, 413)
    with db.session() as session:
        assert session.get(Task, task_id).description == "test task"


# -- features per task ---------------------------------------------------------------------------


def test_the_whole_world_on_grid_0_at_10_m_is_refused_with_the_estimate(
    alice: User, db, limited
) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    body["processRequest"]["input"]["bounds"] = {"bbox": [-180, -90, 180, 90]}
    body["input"] = {"type": "tiling-grid", "id": 0, "resolution": 10.0}
    found = violations(alice.http.post(CREATE, json=body))
    violation = found["processRequest->input->bounds"]
    assert "about 12" in violation and "features" in violation  # about 1.26 million
    assert f"at most {limited.max_features}" in violation
    stored_nothing(db, limited)
    still_serving(alice)


def test_the_feature_limit_is_a_setting(settings, db) -> None:  # type: ignore[no-untyped-def]
    tight = settings.model_copy(update={"max_features": 10})
    for bucket in ("data", "results"):
        (tight.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    user = _user(create_app(tight, db), db, tight, "carol")
    body = valid_request(user.collection_id)  # 0.2° x 0.15° on the LAEA 20 km grid: ~4 tiles
    assert user.http.post(CREATE, json=body).status_code == 201
    body["processRequest"]["input"]["bounds"]["bbox"] = [14.0, 48.0, 16.0, 49.0]  # ~40 tiles
    found = violations(user.http.post(CREATE, json=body))
    assert "at most 10" in found["processRequest->input->bounds"]
    assert task_count(db) == 1


# -- long paths and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("s3://results/" + "/".join(["p"] * 2000), "bytes long"),
        ("s3://results/" + "q" * 5000, "bytes long"),
        ("s3://results/run/" + "r" * 300, "a folder or file name may have at most 255"),
        ("s3://results/run/<requestId>/../<tileName>/<outputId>.<format>", "'..'"),
        ("s3://results/run/%2e%2e/elsewhere", "'%2e%2e'"),
        ("s3://results/run\\x/y", "backslash"),
        ("s3://results/run/a\tb", "control character U+0009"),
    ],
)
def test_bad_delivery_urls_are_refused(url: str, text: str, alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id, url=url)
    found = violations(alice.http.post(CREATE, json=body))
    assert text in found["output->delivery->s3->url"], found
    stored_nothing(db, limited)
    still_serving(alice)


def test_output_paths_are_checked_with_placeholders_filled_in(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id, url="s3://results/run/<tileName>-<outputId>.tif")
    long_id = "o" * 240
    body["processRequest"]["output"]["responses"][0]["identifier"] = long_id
    found = violations(alice.http.post(CREATE, json=body))
    assert "placeholders filled in" in found["output->delivery->s3->url"]
    stored_nothing(db, limited)


def test_a_long_geopackage_name_is_refused(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    del body["processRequest"]["input"]["bounds"]
    body["input"] = {
        "type": "geopackage",
        "features": {"s3": {"url": "s3://in/" + "g" * 2000 + ".gpkg"}},
    }
    found = violations(alice.http.post(CREATE, json=body))
    assert "bytes long" in found["input->features->s3->url"]
    stored_nothing(db, limited)


def test_a_geopackage_that_breaks_the_rules_is_refused_at_create(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.test_geopackage import MALFORMED

    breaker, _ = MALFORMED["point feature"]
    breaker(valid_geopackage(limited.buckets_dir / "in" / "fields.gpkg"))
    body = valid_request(alice.collection_id)
    del body["processRequest"]["input"]["bounds"]
    body["input"] = {"type": "geopackage", "features": {"s3": {"url": "s3://in/fields.gpkg"}}}
    found = violations(alice.http.post(CREATE, json=body))
    assert "GeoPackage s3://in/fields.gpkg" in found["input->features->s3->url"]
    stored_nothing(db, limited)


# -- NUL and control characters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value", "parameter"),
    [
        (("description",), "a\x00b", "description"),
        (("description",), "bell\x07", "description"),
        (("processRequest", "output", "responses", 0, "identifier"), "de\x00f", None),
        (("processRequest", "evalscript"), EVALSCRIPT + "\x00", "processRequest->evalscript"),
    ],
)
def test_nul_and_control_characters_in_the_body_are_refused(  # type: ignore[no-untyped-def]
    where: tuple, value: str, parameter: str | None, alice: User, db, limited
) -> None:
    body = valid_request(alice.collection_id)
    target = body
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    found = violations(alice.http.post(CREATE, json=body))
    expected = parameter or "->".join(map(str, where))
    assert "NUL" in found[expected] or "control character" in found[expected], found
    stored_nothing(db, limited)
    still_serving(alice)


def test_line_breaks_and_tabs_in_a_description_are_kept(alice: User) -> None:
    body = valid_request(alice.collection_id)
    body["description"] = "first line\n\tsecond line\r\n"
    response = alice.http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["request"]["description"] == body["description"]


def test_nul_in_a_multipart_evalscript_is_refused(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    del body["processRequest"]["evalscript"]
    response = alice.http.post(
        CREATE,
        files={
            "request": (None, json.dumps(body), "application/json"),
            "evalscript": (None, EVALSCRIPT + "\x00", "text/plain"),
        },
    )
    assert "NUL" in violations(response)["processRequest->evalscript"]
    stored_nothing(db, limited)


def test_nul_in_a_description_update_is_refused(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    task_id = alice.http.post(CREATE, json=valid_request(alice.collection_id)).json()["id"]
    response = alice.http.put(f"{CREATE}/{task_id}", json={"description": "bad\x00"})
    assert "NUL" in violations(response)["description"]
    with db.session() as session:
        assert session.get(Task, task_id).description == "test task"


@pytest.mark.parametrize(
    "url",
    [
        f"{CREATE}?search=a%00b",
        f"{CREATE}?search=a%0Ab",
        "/api/v1/byoc/collections?search=%00",
        f"{CREATE}/%00",
    ],
)
def test_control_characters_in_the_url_are_refused(url: str, alice: User) -> None:
    found = violations(alice.http.get(url))
    assert any("NUL" in v or "control character" in v for v in found.values()), found
    assert alice.http.get(CREATE, params={"search": "test"}).status_code == 200


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("s3://data/" + "/".join(["p"] * 2000), "bytes long"),
        ("s3://data/" + "q" * 5000, "bytes long"),
        ("s3://data/a/../b", "'..'"),
    ],
)
def test_bad_collection_storage_urls_are_refused(url: str, text: str, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        before = session.query(Collection).count()
    response = alice.http.post(
        "/api/v1/byoc/collections", json={"name": "mine", "storage": {"s3": {"url": url}}}
    )
    assert text in violations(response)["storage->s3->url"]
    with db.session() as session:
        assert session.query(Collection).count() == before


@pytest.mark.parametrize(
    "query",
    [
        {"search": "|".join(["a"] * 3000)},  # one LIKE per word: SQLite's expression limit
        {"search": "x" * 501},
        {"viewtoken": "9" * 25},  # past a 64-bit SQL offset
    ],
)
@pytest.mark.parametrize("listing", [CREATE, "/api/v1/byoc/collections"])
def test_listing_parameters_beyond_reason_are_400(query: dict, listing: str, alice: User) -> None:
    found = violations(alice.http.get(listing, params=query))
    assert set(found) == set(query)
    assert alice.http.get(listing, params={"search": "a|b&c"}).status_code == 200


def test_nul_in_a_collection_name_is_refused(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        before = session.query(Collection).count()
    response = alice.http.post(
        "/api/v1/byoc/collections", json={"name": "bad\x00name", "s3Bucket": "data"}
    )
    assert "NUL" in violations(response)["name"]
    with db.session() as session:
        assert session.query(Collection).count() == before


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("2024/\x00/(BAND).tif", "NUL"),
        ("2024/%2e%2e/(BAND).tif", "'%2e%2e'"),
        ("2024\\..\\(BAND).tif", "backslash"),
        ("2024/" + "t" * 300 + "/(BAND).tif", "at most 255"),
    ],
)
def test_bad_tile_paths_are_refused(path: str, text: str, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    response = alice.http.post(
        f"/api/v1/byoc/collections/{alice.collection_id}/tiles", json={"path": path}
    )
    assert text in json.dumps(violations(response)), response.text
    with db.session() as session:
        assert session.query(Tile).count() == 0


# -- seed rules ----------------------------------------------------------------------------------


def test_tiling_grid_ids_that_are_not_numbers_are_400(alice: User) -> None:
    found = violations(alice.http.get("/api/v2/batch/tilinggrids/abc"))
    assert "not a tiling grid id" in found["id"]
    assert_error(alice.http.get("/api/v2/batch/tilinggrids/99"), 404)
    assert_error(alice.http.get("/api/v2/batch/tilinggrids/" + "9" * 5000), 404)
    assert alice.http.get("/api/v2/batch/tilinggrids/7").json()["id"] == 7


def test_a_start_right_after_a_stop_is_refused(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    task_id = alice.http.post(CREATE, json=valid_request(alice.collection_id)).json()["id"]
    with db.session() as session:  # as if analysed
        session.get(Task, task_id).status = "ANALYSIS_DONE"
    assert alice.http.post(f"{CREATE}/{task_id}/stop").status_code == 204
    error = assert_error(alice.http.post(f"{CREATE}/{task_id}/start"), 400)
    assert "cannot be restarted for 30 minutes" in error["message"]
    task = alice.http.get(f"{CREATE}/{task_id}").json()
    assert task["userAction"] == "STOP"


def test_a_delivered_file_is_readable_by_others(alice: User, limited) -> None:  # type: ignore[no-untyped-def]
    task = alice.http.post(CREATE, json=valid_request(alice.collection_id)).json()
    written = limited.buckets_dir / "results" / "run" / f"request-{task['id']}.json"
    assert written.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_several_users_are_unaffected_by_a_refused_body(alice: User, app, db, limited) -> None:  # type: ignore[no-untyped-def]
    bob = _user(app, db, limited, f"bob-{uuid.uuid4().hex[:6]}")
    big = valid_request(alice.collection_id) | {"description": "x" * BODY_LIMIT * 4}
    assert_error(alice.http.post(CREATE, json=big), 413)
    assert bob.http.post(CREATE, json=valid_request(bob.collection_id)).status_code == 201
    with db.session() as session:
        assert session.query(Task).filter(Task.account_id == bob.account_id).count() == 1
        assert session.query(Task).filter(Task.account_id == alice.account_id).count() == 0


def test_a_test_client_without_a_token_gets_413_before_401(app) -> None:  # type: ignore[no-untyped-def]
    """The size check comes before everything, authentication included: no work is done."""
    anonymous = TestClient(app, raise_server_exceptions=False)
    assert_error(anonymous.post(CREATE, content=b"x" * (BODY_LIMIT + 1)), 413)
    assert_error(anonymous.post(CREATE, content=b"{}"), 401)


# -- at analysis ---------------------------------------------------------------------------------

MASK_SCRIPT = """//VERSION=3
function setup() { return { input: ["dataMask"], output: { bands: 1, sampleType: "UINT8" } }; }
function evaluatePixel(s) { return [s.dataMask]; }
"""


def _analysed(user: User, db, settings, body: dict) -> dict:  # type: ignore[no-untyped-def]
    response = user.http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    assert user.http.post(f"{CREATE}/{task_id}/analyse").status_code == 204
    controller = Controller(db, settings, client=None)  # analysis needs no Dask cluster
    for claimed in controller.claim():
        controller.advance(claimed)
    return user.http.get(f"{CREATE}/{task_id}").json()


def test_the_execution_database_lists_geopackage_ids(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    path = limited.buckets_dir / "in" / "fields.gpkg"
    squares_ = squares(500000, 5350000, 1000, 3)
    write_layer(path, "fields", 32633, squares_, ids=[10, 20, 30], width=[8] * 3, height=[8] * 3)
    body = valid_request(alice.collection_id)
    body["processRequest"]["evalscript"] = MASK_SCRIPT
    del body["processRequest"]["input"]["bounds"]
    body["input"] = {"type": "geopackage", "features": {"s3": {"url": "s3://in/fields.gpkg"}}}
    task = _analysed(alice, db, limited, body)
    assert task["status"] == "ANALYSIS_DONE", task
    Controller(db, limited, client=None).upload_execution_db(task["id"])
    written = limited.buckets_dir / "results" / "run" / f"execution-{task['id']}.sqlite"
    with closing(sqlite3.connect(written)) as connection:
        rows = connection.execute("SELECT id, name FROM features ORDER BY id").fetchall()
    assert rows == [(10, "fields-10"), (20, "fields-20"), (30, "fields-30")]


def test_a_misplaced_setup_key_fails_the_analysis_naming_it(alice: User, db, limited) -> None:  # type: ignore[no-untyped-def]
    body = valid_request(alice.collection_id)
    body["processRequest"]["evalscript"] = MASK_SCRIPT.replace(
        'sampleType: "UINT8" }', 'sampleType: "UINT8" }, noDataValue: 0'
    )
    task = _analysed(alice, db, limited, body)
    assert task["status"] == "FAILED"
    assert "setup().noDataValue is not a property" in task["error"]
    assert "belongs in each object of setup().output" in task["error"]
    with db.session() as session:
        assert session.query(Feature).filter(Feature.task_id == task["id"]).count() == 0


def test_too_many_planned_features_fail_the_analysis_before_anything_is_written(  # type: ignore[no-untyped-def]
    alice: User, db, limited
) -> None:
    """An AOI the estimate lets through (a thin diagonal line of tiles) is counted exactly."""
    body = valid_request(alice.collection_id)
    body["processRequest"]["evalscript"] = MASK_SCRIPT
    line = [[10.0, 45.0], [16.0, 50.0], [16.0001, 50.0], [10.0001, 45.0], [10.0, 45.0]]
    geometry = {"type": "Polygon", "coordinates": [line]}
    body["processRequest"]["input"]["bounds"] = {"geometry": geometry}
    aoi = parse_aoi(None, geometry, None)
    estimate = estimate_features(7, aoi)
    planned = len(plan_tiling_grid(7, 20.0, 0, 0, aoi))
    assert planned > estimate  # a line meets more cells than the average shape of its size
    tight = limited.model_copy(update={"max_features": estimate})
    task = _analysed(alice, db, tight, body)
    assert task["status"] == "FAILED"
    assert task["error"] == (
        f"The task has {planned} features; a task may have at most {estimate}. Split the area "
        "into several tasks or choose a coarser grid"
    )
    manifest = limited.buckets_dir / "results" / "run" / f"featureManifest-{task['id']}.gpkg"
    assert not manifest.exists()
