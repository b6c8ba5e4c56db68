"""Input limits as pure checks: text, object paths, feature estimates, the streaming body guard."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eobatch.api.guard import InputGuard
from eobatch.config import Settings
from eobatch.errors import InvalidRequest
from eobatch.limits import MAX_JSON_DEPTH, check_json_text, path_violations, too_many_features
from eobatch.planning import parse_aoi, plan_tiling_grid
from eobatch.planning.estimate import estimate_features
from eobatch.schemas import parse_json

SETTINGS = Settings(max_path_bytes=1024, max_name_bytes=255, max_features=700_000)


def test_nul_anywhere_in_a_body_is_named() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_json_text({"a": [{"b": "ok"}, {"c": "x\x00y"}]})
    assert info.value.errors[0].parameter == "a->1->c"
    assert "NUL byte at position 1" in info.value.errors[0].violation


def test_control_characters_in_keys_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="U\\+0001"):
        check_json_text({"ke\x01y": 1})


def test_the_evalscript_may_hold_javascript_whitespace() -> None:
    check_json_text({"processRequest": {"evalscript": "a\x0bb\x0cc\td\r\n"}})
    with pytest.raises(InvalidRequest):
        check_json_text({"description": "form\x0cfeed"})


def test_deep_json_is_a_400_not_a_recursion_error() -> None:
    with pytest.raises(InvalidRequest, match=f"more than {MAX_JSON_DEPTH} levels"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(InvalidRequest, match=f"more than {MAX_JSON_DEPTH} levels"):
        parse_json(json.dumps({"a": [[[[[]]]]] * 1}).replace("[]", "[" * 70 + "]" * 70).encode())


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("s3://b/" + "/".join(["p"] * 2000), "4006 bytes long"),
        ("s3://b/" + "é" * 200, "400 bytes long (UTF-8); a folder or file name may have at most"),
        ("s3://b/a/../c", "'..'"),
        ("s3://b/a/%2E%2e/c", "'%2E%2e'"),
        ("s3://b/a/./c", "'.'"),
        ("a\\b", "backslash"),
        ("a/%5cb", "backslash"),
        ("a/b\nc", "U+000A"),
    ],
)
def test_bad_paths(path: str, text: str) -> None:
    found = path_violations(path, "p", SETTINGS)
    assert found and text in found[0].violation, found


@pytest.mark.parametrize(
    "path", ["s3://b/folder/<tileName>/<outputId>.<format>", "2024/(BAND).tif", "a..b/c.d"]
)
def test_good_paths(path: str) -> None:
    assert path_violations(path, "p", SETTINGS) == []


def test_feature_limit_message() -> None:
    assert too_many_features(700_000, SETTINGS, estimated=True) is None
    message = too_many_features(1_287_197, SETTINGS, estimated=False)
    assert message is not None and "1287197 features" in message and "700000" in message


@pytest.mark.parametrize(
    ("grid_id", "resolution", "bbox"),
    [
        (0, 60.0, [14.0, 45.0, 16.0, 47.0]),
        (1, 20.0, [14.0, 45.0, 14.5, 45.3]),
        (2, 360.0, [0.0, 0.0, 10.0, 10.0]),
        (3, 0.001, [170.0, -10.0, 190.0, 10.0]),
        (6, 100.0, [-180.0, -90.0, 180.0, 90.0]),
        (7, 20.0, [-180.0, -90.0, 180.0, 90.0]),
    ],
)
def test_the_estimate_is_close_to_the_planned_count(
    grid_id: int, resolution: float, bbox: list[float]
) -> None:
    aoi = parse_aoi(bbox, None, None)
    planned = len(plan_tiling_grid(grid_id, resolution, 0, 0, aoi))
    assert 0.85 * planned <= estimate_features(grid_id, aoi) <= 1.3 * planned


def test_the_whole_world_on_grid_0_is_estimated_at_over_a_million() -> None:
    estimate = estimate_features(0, parse_aoi([-180.0, -90.0, 180.0, 90.0], None, None))
    assert 1_200_000 < estimate < 1_350_000  # planned: 1 287 197


@settings(max_examples=30, deadline=None)
@given(st.floats(-170, 160), st.floats(-60, 50), st.floats(0.05, 8), st.floats(0.05, 8))
def test_the_estimate_stays_near_the_plan_on_grid_3(
    west: float, south: float, width: float, height: float
) -> None:
    aoi = parse_aoi([west, south, west + width, south + height], None, None)
    planned = len(plan_tiling_grid(3, 0.001, 0, 0, aoi))
    # an average over placements: one box may meet a row or column of cells more or fewer
    assert planned / 2 - 2 <= estimate_features(3, aoi) <= 2 * planned + 4


# -- the streaming body guard --------------------------------------------------------------------


def _drive(guard: InputGuard, chunks: list[bytes], headers: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
    """Run one POST through `guard`; how many chunks it pulled and what it sent."""
    pulled, sent = [], []

    async def receive():  # type: ignore[no-untyped-def]
        index = len(pulled)
        pulled.append(index)
        return {
            "type": "http.request",
            "body": chunks[index],
            "more_body": index + 1 < len(chunks),
        }

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "query_string": b"",
        "headers": headers,
    }
    asyncio.run(guard(scope, receive, send))
    return len(pulled), sent


async def _read_everything(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """An app that buffers the whole body, as a naive endpoint would."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    guard = InputGuard(_read_everything, max_body_bytes=10_000)
    chunks = [b"x" * 1000] * 50_000  # 50 MB if it were read to the end
    pulled, sent = _drive(guard, chunks, [])
    assert pulled == 11  # stopped at the first chunk past 10 000 bytes
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "COMMON_PAYLOAD_TOO_LARGE"


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    guard = InputGuard(_read_everything, max_body_bytes=10_000)
    pulled, sent = _drive(guard, [b"x"], [(b"content-length", b"52428800")])
    assert pulled == 0 and sent[0]["status"] == 413


def test_a_body_within_the_limit_passes() -> None:
    guard = InputGuard(_read_everything, max_body_bytes=10_000)
    pulled, sent = _drive(guard, [b"x" * 5000, b"y" * 5000], [(b"content-length", b"10000")])
    assert pulled == 2 and sent[0]["status"] == 200
