"""The pure rules of the Process and Catalog APIs: output size, Accept negotiation, Process PUs,
CQL2 filters and the fields selection."""

from __future__ import annotations

import pytest

from eobatch.errors import InvalidRequest, Violation
from eobatch.lifecycle.billing import Pricing
from eobatch.lifecycle.process_rules import negotiate, output_size
from eobatch.schemas.process import ProcessApiOutput, ProcessResponse, open_time_bounds
from eobatch.sources.cql2 import Condition, parse_fields, parse_filter, select_fields

BOX = (0.0, 0.0, 1000.0, 500.0)


def size(**output: object) -> tuple[tuple[int, int] | None, list[Violation]]:
    found: list[Violation] = []
    return output_size(BOX, ProcessApiOutput.model_validate(output), found), found


def test_output_size_given_derived_or_defaulted() -> None:
    assert size() == ((256, 256), [])
    assert size(width=100, height=40) == ((100, 40), [])
    assert size(width=100) == ((100, 50), [])  # the other side keeps the bbox's aspect ratio
    assert size(resx=10, resy=20) == ((100, 25), [])
    assert size(resx=3000) == ((1, 1), [])  # coarser than the bbox: one pixel, never zero
    assert size(resx=0.3) == (
        None,
        [
            Violation(
                "output->resx", "`width = 3333`, calculated from resx, is larger than allowed 2500."
            )
        ],
    )
    assert [v.parameter for v in size(width=10, resx=1)[1]] == ["output"]


def responses(*kinds: str) -> list[ProcessResponse]:
    return [
        ProcessResponse.model_validate(
            {
                "identifier": "userdata" if k == "application/json" else f"r{n}",
                "format": {"type": k},
            }
        )
        for n, k in enumerate(kinds)
    ]


def test_accept_picks_one_image_or_a_tar() -> None:
    one, two = responses("image/tiff"), responses("image/png", "application/json")
    assert negotiate(None, one) == "image/tiff"
    assert negotiate("*/*", one) == "image/tiff"
    assert negotiate("image/png", one) == "image/png"  # Accept overrides the format
    assert negotiate("text/html, image/jpeg;q=0.9", one) == "image/jpeg"
    assert negotiate("application/x-tar", two) == "application/x-tar"
    assert negotiate("application/tar", one) == "application/tar"
    assert negotiate(None, two) == "application/x-tar"
    with pytest.raises(InvalidRequest) as several:
        negotiate("image/png", two)
    assert several.value.errors[0].parameter == "Accept"
    with pytest.raises(InvalidRequest, match="names no format"):
        negotiate("text/html", one)


def test_process_pu_has_no_batch_discount_and_a_minimum() -> None:
    ndvi_png = Pricing(("B04", "B08", "dataMask"), ())
    assert ndvi_png.request_pu(20, 20) == pytest.approx(0.01 * 2 / 3)  # pu-byoc-process §1.5
    assert Pricing(("B04",), ()).request_pu(10, 10) == 0.005
    assert ndvi_png.request_pu(512, 512) == pytest.approx(2 / 3)  # a batch feature pays 1/3 of it
    assert ndvi_png.feature_pu(512, 512) == pytest.approx(2 / 9)
    float_tiff = Pricing(("B04", "B08"), ("FLOAT32",))
    assert float_tiff.request_pu(512, 512, samples=3) == pytest.approx(4.0)
    assert float_tiff.request_pu(512, 512, samples=0) == 0.005


def test_open_time_bounds_become_null() -> None:
    body = {"input": {"data": [{"dataFilter": {"timeRange": {"from": "..", "to": "2024-01-01"}}}]}}
    assert open_time_bounds(body)["input"]["data"][0]["dataFilter"]["timeRange"]["from"] is None


def test_cql2_text_and_json_as_clients_send_them() -> None:
    assert parse_filter("eo:cloud_cover>10 AND eo:cloud_cover<20", None) == [
        Condition("eo:cloud_cover", ">", 10),
        Condition("eo:cloud_cover", "<", 20),
    ]
    assert parse_filter("sar:instrument_mode='IW' and s1:resolution = 'HIGH'", "cql2-text") == [
        Condition("sar:instrument_mode", "=", "IW"),
        Condition("s1:resolution", "=", "HIGH"),
    ]
    assert parse_filter("eo:cloud_cover BETWEEN 5 AND 12.5", None) == [
        Condition("eo:cloud_cover", "between", (5, 12.5))
    ]
    single_and = {"op": "and", "args": [{"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]}]}
    assert parse_filter(single_and, "cql2-json") == [Condition("eo:cloud_cover", "<", 30)]
    for bad in (
        "eo:cloud_cover < 3 OR eo:cloud_cover > 90",
        "eo:cloud_cover",
        "(a = 1)",
        "a LIKE 'x'",
    ):
        with pytest.raises(InvalidRequest):
            parse_filter(bad, "cql2-text")
    with pytest.raises(InvalidRequest, match="OR"):
        parse_filter({"op": "or", "args": []}, "cql2-json")
    between = Condition("eo:cloud_cover", "between", (5, 12.5))
    assert between.holds({"eo:cloud_cover": 12.5}) and not between.holds({"eo:cloud_cover": 13})
    assert not between.holds({}) and not Condition("x", "<", 3).holds({"x": "text"})


def test_fields_default_include_and_exclude() -> None:
    item = {
        "type": "Feature",
        "id": "a",
        "geometry": {},
        "bbox": [0, 0, 1, 1],
        "links": [],
        "assets": {"data": {}},
        "properties": {"datetime": "2024-01-01T00:00:00Z", "eo:cloud_cover": 3, "gsd": 10},
    }
    default = select_fields(item, *parse_fields({}))  # type: ignore[misc]
    assert default["properties"] == {"datetime": "2024-01-01T00:00:00Z"}
    included = select_fields(item, *parse_fields("properties.gsd,-assets,-links"))  # type: ignore[misc]
    assert included["properties"] == {"datetime": "2024-01-01T00:00:00Z", "gsd": 10}
    assert "assets" not in included and "links" not in included and included["id"] == "a"
    both = select_fields(item, ["properties.gsd"], ["properties.gsd", "bbox"])
    assert both["properties"]["gsd"] == 10 and "bbox" not in both  # include wins over exclude
    assert parse_fields(None) is None
