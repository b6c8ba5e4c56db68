"""Property-based fuzzing of the create body (issue 16), on SQLite and PostgreSQL.

Bodies are drawn from the request's own JSON schema (pydantic's, turned into a hypothesis
strategy by `from_schema` below for the keywords it uses), and from a valid
request with one part replaced by arbitrary JSON or text (NUL and control characters, huge
numbers, deep nesting), so that the checks behind schema validation are reached too. Whatever
comes in, the answer is a 201 or a 4xx with an SH error body, never a 5xx, and a refused body
stores nothing. The example counts keep both stores to about a minute in all.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eobatch.api import create_app
from eobatch.schemas import BatchRequest
from eobatch.store.models import Task
from tests.integration.test_api import User, _user, valid_request

CREATE = "/api/v2/batch/process"
SCHEMA_EXAMPLES = 300
MUTATION_EXAMPLES = 500


def _fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,  # the same bodies in CI every time; a failure shows the body
        database=None,
    )


# Strings that get past the first checks, so that later ones are reached too.
_HINTS = [
    "s3://results/fuzz",
    "s3://results/<tileName>/<outputId>.<format>",
    "s3://results/../x",
    "gs://bucket/features.gpkg",
    "e30=",
    "http://www.opengis.net/def/crs/EPSG/0/4326",
    "http://www.opengis.net/def/crs/EPSG/0/3035",
    "default",
    "userdata",
    "sentinel-2-l2a",
    "2024-01-01T00:00:00Z",
]
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def from_schema(schema: dict, root: dict | None = None) -> st.SearchStrategy:
    """Values valid against a JSON schema as pydantic writes them (its keywords only)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(root["$defs"][name], root))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(option, root) for option in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            low,
            schema.get("maximum"),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "string":
        size = schema.get("minLength", 0)
        return (st.sampled_from(_HINTS) | _TEXT).filter(lambda text: len(text) >= size)
    if kind == "array":
        items = from_schema(schema.get("items", {}), root) if schema.get("items") else json_values
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        fields = {k: from_schema(v, root) for k, v in schema["properties"].items()}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    if kind == "object":
        extra = schema.get("additionalProperties")
        values = from_schema(extra, root) if isinstance(extra, dict) else json_values
        return st.dictionaries(_TEXT, values, max_size=3)
    return json_values


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def alice(settings, db) -> User:  # type: ignore[no-untyped-def]
    # gs:// locators reach no one: the GCS "emulator" is a closed loopback port
    fuzzed = settings.model_copy(update={"gcs_endpoint": "http://127.0.0.1:9"})
    for bucket in ("data", "results"):
        (fuzzed.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return _user(create_app(fuzzed, db), db, fuzzed, "alice")


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON value (objects and array items), the root excluded."""
    found = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, item in items:
        found.append((*prefix, key))
        found.extend(_paths(item, (*prefix, key)))
    return found


def _check_answer(user: User, db, body: Any) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        before = session.query(Task).count()
    response = user.http.post(CREATE, json=body)
    assert response.status_code < 500, (response.status_code, response.text, body)
    with db.session() as session:
        after = session.query(Task).count()
    if response.status_code == 201:
        assert after == before + 1
    else:
        assert 400 <= response.status_code < 500
        error = response.json()["error"]
        assert error["status"] == response.status_code and error["message"]
        assert after == before


def test_bodies_drawn_from_the_request_schema(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    schema = BatchRequest.model_json_schema(by_alias=True)

    @_fuzz(SCHEMA_EXAMPLES)
    @given(body=from_schema(schema))
    def run(body: dict) -> None:
        _check_answer(alice, db, body)

    run()


def test_a_valid_body_with_one_part_replaced(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    base = valid_request(alice.collection_id)
    paths = _paths(base)

    @_fuzz(MUTATION_EXAMPLES)
    @given(where=st.sampled_from(paths), value=json_values)
    def run(where: tuple, value: Any) -> None:
        body = copy.deepcopy(base)
        target = body
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
        _check_answer(alice, db, body)

    run()
