"""The STAC mapping: the built-in entries, a deployment's file laid over them, the options a
request may set, units, item filters and what the store keeps of an item."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import shapely

from eobatch.sources.stac import (
    check_source,
    item_from_record,
    item_record,
    item_scene,
    load_mapping,
    search_terms,
    served_types,
)
from eobatch.sources.stac_search import StacItem, matches
from eobatch.sources.units import Conversion, parse_conversion

SERVED = (
    "sentinel-2-l2a",
    "landsat-ot-l1",
    "landsat-ot-l2",
    "landsat-etm-l2",
    "landsat-tm-l2",
    "sentinel-1-grd",
    "dem",
    "hls",
    "modis",
)


def test_the_built_in_mapping_serves_every_type_with_the_sentinel_hub_bands() -> None:
    mapping = load_mapping()
    assert set(SERVED) <= set(mapping)
    assert list(mapping["landsat-ot-l2"].bands)[:8] == [
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B10",
    ]
    assert set(mapping["landsat-ot-l1"].bands) >= {f"B{n:02d}" for n in range(1, 12)} | {"BQA"}
    assert list(mapping["landsat-etm-l2"].bands)[:7] == [f"B0{n}" for n in range(1, 8)]
    assert set(mapping["sentinel-1-grd"].bands) == {"VV", "VH", "HH", "HV"}
    assert list(mapping["dem"].bands) == ["DEM"]
    assert set(mapping["hls"].bands) >= {"CoastalAerosol", "NIR_Narrow", "ThermalInfrared2", "QA"}
    assert list(mapping["modis"].bands) == [f"B0{n}" for n in range(1, 8)]
    # units as Sentinel Hub lists them: the first is the default
    assert list(mapping["landsat-ot-l2"].bands["B10"].units) == ["SURFACE_TEMPERATURE"]
    assert list(mapping["landsat-ot-l1"].bands["B11"].units) == ["BRIGHTNESS_TEMPERATURE"]
    assert list(mapping["sentinel-1-grd"].bands["VV"].units) == ["LINEAR_POWER"]
    assert list(mapping["hls"].bands["Red"].units) == ["REFLECTANCE", "DN"]
    # QA bit flags are never interpolated; QA_RADSAT 0 (not saturated) is data
    assert mapping["landsat-ot-l2"].bands["BQA"].resampling == "NEAREST"
    assert mapping["landsat-ot-l2"].bands["QA_RADSAT"].no_data is None


def test_a_deployment_file_moves_replaces_adds_and_withdraws_types(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(
        json.dumps(
            {
                "sentinel-1-grd": {"source": "https://stac.example/v1"},
                "modis": None,
                "my-type": {"stacCollection": "mine", "bands": {"X": {"asset": "x"}}},
            }
        )
    )
    mapping = load_mapping(path)
    assert mapping["sentinel-1-grd"].source == "https://stac.example/v1"
    assert mapping["sentinel-1-grd"].stac_collections == ("sentinel-1-rtc",)  # kept
    assert "modis" not in mapping and "dem" in mapping
    assert mapping["my-type"].bands["X"].units == {"DN": Conversion()}
    path.write_text(json.dumps({"dem": {"bands": {"DEM": {"units": {"METERS": 1}}}}}))
    with pytest.raises(ValueError, match="STAC mapping entry dem"):
        load_mapping(path)  # a band needs its asset


def test_served_types_list_what_each_type_maps_to() -> None:
    listed = {t.data_type: t for t in served_types(None, "https://es.example/v1")}
    assert listed["landsat-ot-l2"].source == "https://es.example/v1"
    assert listed["sentinel-1-grd"].source.startswith("https://planetarycomputer")
    assert listed["dem"].stac_collections == ("cop-dem-glo-30", "cop-dem-glo-90")
    assert listed["hls"].stac_collections == ("hls2-l30", "hls2-s30")
    assert (
        "dataMask" in listed["modis"].bands
        and "requester-pays" in listed["landsat-tm-l2"].description
    )


def test_options_select_collections_and_item_filters() -> None:
    mapping = load_mapping()
    assert search_terms(mapping["dem"], {}) == (("cop-dem-glo-30", "cop-dem-glo-90"), {})
    assert search_terms(mapping["dem"], {"dataFilter.demInstance": "COPERNICUS_90"})[0] == (
        "cop-dem-glo-90",
    )
    assert search_terms(mapping["hls"], {"dataFilter.constellation": "SENTINEL"})[0] == (
        "hls2-s30",
    )
    _, accepted = search_terms(mapping["landsat-tm-l2"], {"dataFilter.tiers": "TIER_1"})
    assert accepted == {
        "platform": ("landsat-4", "landsat-5"),
        "landsat:collection_category": ("T1",),
    }
    _, accepted = search_terms(
        mapping["sentinel-1-grd"],
        {"dataFilter.polarization": "DV", "dataFilter.orbitDirection": "ASCENDING"},
    )
    assert accepted == {"sar:polarizations": (["VV", "VH"],), "sat:orbit_state": ("ascending",)}


def test_item_filters_compare_lists_as_sets_and_drop_items_lacking_the_property() -> None:
    dual = {"sar:polarizations": (["VV", "VH"],)}
    assert matches({"sar:polarizations": ["VH", "VV"]}, dual)
    assert not matches({"sar:polarizations": ["VV"]}, dual)
    assert not matches({}, dual)
    assert matches({"platform": "landsat-8"}, {"platform": ("landsat-8", "landsat-9")})


@pytest.mark.parametrize(
    ("data_type", "data_filter", "processing", "expected"),
    [
        (
            "landsat-ot-l2",
            {"tiers": "TIER_1_AND_RT"},
            {},
            [("dataFilter->tiers", "TIER_1_AND_RT is not served")],
        ),
        ("landsat-ot-l1", {"tiers": "TIER_1_AND_RT", "maxCloudCoverage": 20}, {}, []),
        ("sentinel-2-l2a", {"tiers": "TIER_1"}, {}, [("dataFilter->tiers", "not an option")]),
        ("modis", {"maxCloudCoverage": 100}, {}, []),  # no filter at all: accepted
        ("sentinel-1-grd", {}, {"backCoeff": "GAMMA0_TERRAIN", "orthorectify": True}, []),
        (
            "sentinel-1-grd",
            {},
            {"backCoeff": "GAMMA0_TERRAIN", "orthorectify": False},
            [("processing->orthorectify", "false is not served")],
        ),
        ("dem", {}, {"egm": False, "clampNegative": False}, []),
    ],
)
def test_check_source(
    data_type: str, data_filter: dict, processing: dict, expected: list[tuple[str, str]]
) -> None:
    found = check_source(load_mapping()[data_type], data_filter, processing)
    assert [p for p, _ in found] == [p for p, _ in expected]
    for (_, violation), (_, text) in zip(found, expected, strict=True):
        assert text in violation


def test_conversions_linear_sun_elevation_and_planck() -> None:
    values = np.array([10000.0, np.nan], dtype=np.float32)
    sr = parse_conversion({"scale": 2.75e-05, "offset": -0.2})
    out = values.copy()
    sr.apply(out, {})
    assert out[0] == np.float32(10000) * np.float32(2.75e-05) + np.float32(-0.2)
    assert np.isnan(out[1])
    toa = parse_conversion({"scale": 2e-05, "offset": -0.1, "sunElevation": "view:sun_elevation"})
    out = values.copy()
    toa.apply(out, {"view:sun_elevation": 30.0})
    assert out[0] == pytest.approx((10000 * 2e-05 - 0.1) / 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="view:sun_elevation"):
        toa.apply(values.copy(), {})
    bt = load_mapping()["landsat-ot-l1"].bands["B10"].units["BRIGHTNESS_TEMPERATURE"]
    assert bt.properties == ("platform",)
    for platform, (ml, k1, k2) in (
        ("LANDSAT_8", (3.342e-4, 774.8853, 1321.0789)),
        ("landsat-9", (3.8e-4, 799.0284, 1329.2405)),
    ):
        out = values.copy()
        bt.apply(out, {"platform": platform})
        assert out[0] == pytest.approx(k2 / np.log(k1 / (10000 * ml + 0.1) + 1), rel=1e-6)


def test_what_the_store_keeps_of_an_item_gives_the_same_scene() -> None:
    collection = load_mapping()["landsat-ot-l1"]
    item = StacItem(
        id="LC08_L1TP_190029_20240606_20240613_02_RT",
        datetime=datetime(2024, 6, 6, 9, 51, 2, tzinfo=UTC),
        geometry=shapely.box(14.5, 45.0, 15.5, 46.0),
        properties={
            "platform": "LANDSAT_8",
            "view:sun_elevation": 62.0,
            "eo:cloud_cover": 12.0,
            "landsat:wrs_path": "190",
            "created": datetime(2024, 6, 13, tzinfo=UTC),
        },
        assets={"red": "s3://usgs-landsat/red.TIF", "ANG.txt": "s3://usgs-landsat/ANG.txt"},
        collection="landsat-c2l1",
    )
    record = json.loads(json.dumps(item_record(item, collection)))
    assert set(record["properties"]) == {"platform", "view:sun_elevation", "eo:cloud_cover"}
    assert set(record["assets"]) == {"red"}

    def locate(href: str) -> tuple[str, dict[str, str]]:
        return "/vsis3/" + href[5:], {"AWS_REGION": "us-west-2"}

    again = item_from_record(record)
    assert again.geometry.equals(item.geometry) and again.datetime == item.datetime
    scene, original = (item_scene(i, collection, True, locate) for i in (again, item))
    assert scene == original
    assert scene.bands["B04"].path == "/vsis3/usgs-landsat/red.TIF"
    assert scene.gdal_options["AWS_REQUEST_PAYER"] == "requester"
    assert scene.properties == {"view:sun_elevation": 62.0, "platform": "LANDSAT_8"}
