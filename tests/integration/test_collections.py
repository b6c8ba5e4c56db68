"""Data types beyond Sentinel-2, whole tasks: one synthetic catalogue (stac-geoparquet) holding
items shaped like Earth Search's `landsat-c2-l2` and `cop-dem-glo-30/90`, USGS LandsatLook's
`landsat-c2l1`, and Planetary Computer's `sentinel-1-rtc`, `hls2-l30/s30` and
`modis-43A4-061`, their COGs on the S3 server; the built-in mapping with every type's `source`
moved to that file (as a deployment points a type at its own catalogue). Outputs are compared
pixel for pixel with numpy models of the documented rules (docs/collections/).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import numpy as np
import pytest
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.io import MemoryFile
from sqlalchemy import select

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.script import EvalscriptError, parse_setup
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from eobatch.sources.stac_search import Retry, StacQuery, StacSearchError, search_items
from eobatch.store import Database
from eobatch.store.models import PinnedScenes
from tests.geopackages import write_layer
from tests.integration.harness import Service, run_until, status_is
from tests.integration.test_api import signed_in
from tests.reference import matches_nearest
from tests.sentinel2 import write_geoparquet
from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET, FlakyProxy, start_stac_api
from tests.stac_fixtures import EPSG, PX, SIZE, X0, Y0, Asset, Item, publish, utm_asset

F32 = np.float32
JUNE_2024 = {"from": "2024-06-01T00:00:00Z", "to": "2024-06-30T23:59:59Z"}
JUNE_2022 = {"from": "2022-06-01T00:00:00Z", "to": "2022-06-30T23:59:59Z"}
JUNE_2011 = {"from": "2011-06-01T00:00:00Z", "to": "2011-06-30T23:59:59Z"}
YEAR_2018 = {"from": "2018-01-01T00:00:00Z", "to": "2018-12-31T23:59:59Z"}
HOLE = (slice(40, 80), slice(40, 80))  # a no-data block, in an asset's 30 m pixels
RTC = {"backCoeff": "GAMMA0_TERRAIN", "orthorectify": True}  # what sentinel-1-rtc serves


# -- the catalogue -------------------------------------------------------------------------------


def landsat_l2_item(
    rng: np.random.Generator,
    id: str,
    platform: str,
    when: str,
    tier: str,
    cloud: float,
    hole: bool = False,
) -> Item:
    """Earth Search / stactools `landsat-c2-l2` (asset keys, properties, raster:bands)."""
    sr = {"scale": 2.75e-05, "offset": -0.2}
    st = {"scale": 0.00341802, "offset": 149.0, "unit": "kelvin"}
    optical = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
    if platform in ("landsat-4", "landsat-5", "landsat-7"):
        optical, thermal = ["blue", "green", "red", "nir08", "swir16", "swir22"], "lwir"
    else:
        thermal = "lwir11"
    assets = {k: utm_asset(rng, "uint16", 30, 7300, 30000, 0, sr) for k in optical}
    assets[thermal] = utm_asset(rng, "uint16", 30, 38000, 50000, 0, st)
    flags = np.array([21824, 21952, 22080, 23888, 54596], dtype=np.uint16)
    qa = utm_asset(rng, "uint16", 30, 0, 5, 1)
    qa.values = flags[qa.values]
    assets["qa_pixel"] = qa
    assets["qa_radsat"] = utm_asset(rng, "uint16", 30, 0, 3)  # 0 (not saturated) is data
    assets["cdist"] = utm_asset(rng, "int16", 30, 0, 500, -9999, {"scale": 0.01})
    assets["qa"] = utm_asset(rng, "int16", 30, 50, 800, -9999, {"scale": 0.01})
    if hole:
        for asset in assets.values():
            if asset.nodata is not None:
                asset.values[HOLE] = asset.nodata
    path, row = "190", "029"
    properties = {
        "platform": platform,
        "instruments": ["oli", "tirs"] if thermal == "lwir11" else ["etm+"],
        "gsd": 30,
        "description": "Landsat Collection 2 Level-2",
        "eo:cloud_cover": cloud,
        "view:off_nadir": 0,
        "view:sun_elevation": 62.1,
        "view:sun_azimuth": 139.5,
        "proj:epsg": EPSG,
        "landsat:cloud_cover_land": cloud,
        "landsat:wrs_type": "2",
        "landsat:wrs_path": path,
        "landsat:wrs_row": row,
        "landsat:collection_category": tier,
        "landsat:collection_number": "02",
        "landsat:correction": "L2SP",
    }
    return Item(id, "landsat-c2-l2", when, properties, assets)


def landsat_l1_item(
    rng: np.random.Generator, id: str, platform: str, when: str, tier: str, elevation: float
) -> Item:
    """USGS LandsatLook `landsat-c2l1`: https hrefs, the S3 copies as `alternate.s3`."""
    assets = {k: utm_asset(rng, "uint16", 30, 6000, 30000, 0) for k in ("red", "nir08")}
    assets["pan"] = utm_asset(rng, "uint16", 15, 6000, 30000, 0)
    assets["lwir11"] = utm_asset(rng, "uint16", 30, 20000, 40000, 0)
    assets["lwir12"] = utm_asset(rng, "uint16", 30, 20000, 40000, 0)
    properties = {
        "platform": platform,
        "instruments": ["OLI", "TIRS"],
        "eo:cloud_cover": 12.0,
        "view:sun_elevation": elevation,
        "view:sun_azimuth": 140.0,
        "landsat:collection_category": tier,
        "landsat:correction": "L1TP",
        "landsat:wrs_path": "190",
        "landsat:wrs_row": "029",
    }
    return Item(id, "landsat-c2l1", when, properties, assets, alternate_s3=True)


def s1_item(
    rng: np.random.Generator,
    day: str,
    platform: str,
    orbit: str,
    polarizations: list[str],
    hole: bool = False,
) -> Item:
    """Planetary Computer `sentinel-1-rtc`: float32 gamma0 at 10 m, no-data -32768."""
    assets = {p.lower(): utm_asset(rng, "float32", 10, 0.001, 0.5, -32768) for p in polarizations}
    if hole:
        for asset in assets.values():
            asset.values[120:240, 120:240] = -32768
    code = "DV" if len(polarizations) == 2 else "SV"
    stamp = day.replace("-", "")
    id = f"S1{platform[-1]}_IW_GRDH_1S{code}_{stamp}T050327_{stamp}T050352_021405_024D8E_rtc"
    properties = {
        "platform": platform,
        "constellation": "Sentinel-1",
        "s1:resolution": "high",
        "s1:product_timeliness": "Fast-24h",
        "sar:instrument_mode": "IW",
        "sar:polarizations": polarizations,
        "sar:product_type": "GRD",
        "sar:frequency_band": "C",
        "sat:orbit_state": orbit,
        "sat:relative_orbit": 117,
        "proj:epsg": EPSG,
    }
    return Item(id, "sentinel-1-rtc", f"{day}T05:03:39Z", properties, assets)


def dem_item(
    rng: np.random.Generator,
    collection: str,
    west: float,
    south: float,
    east: float,
    north: float,
    res: float,
) -> Item:
    """Earth Search `cop-dem-glo-30`/`-90`: float32 heights in EPSG:4326 (smaller than the
    real 1-degree tiles), no no-data value, asset `data`."""
    width, height = round((east - west) / res), round((north - south) / res)
    values = rng.uniform(-20, 900, (height, width)).astype("float32")
    asset = Asset(values, res, west, north, None, "EPSG:4326", {"unit": "meter"})
    code = "10" if collection.endswith("30") else "30"
    id = f"Copernicus_DSM_COG_{code}_N{int(south):02d}_00_E{int(west):03d}_00_DEM"
    properties = {"platform": "tandem-x", "gsd": 30 if code == "10" else 90, "proj:epsg": 4326}
    return Item(id, collection, "2021-04-22T00:00:00Z", properties, {"data": asset})


def hls_item(
    rng: np.random.Generator, sensor: str, when: str, cloud: float, hole: bool = False
) -> Item:
    """Planetary Computer `hls2-l30`/`hls2-s30`: int16 reflectance (-9999), Fmask, angles."""
    keys = ["B04", "B05", "B10"] if sensor == "L30" else ["B04", "B05", "B8A"]
    assets = {k: utm_asset(rng, "int16", 30, 100, 6000, -9999) for k in keys}
    if sensor == "L30":
        assets["B10"] = utm_asset(rng, "int16", 30, 1500, 3500, -9999)  # degrees C x 100
    assets["Fmask"] = utm_asset(rng, "uint8", 30, 0, 255, 255)
    assets["SAA"] = utm_asset(rng, "uint16", 30, 0, 36000, 40000)
    if hole:
        for asset in assets.values():
            asset.values[HOLE] = asset.nodata
    collection = f"hls2-{sensor.lower()}"
    platform = "Landsat 9" if sensor == "L30" else "Sentinel-2B"
    stamp = when[:10].replace("-", "")
    properties = {
        "platform": platform,
        "eo:cloud_cover": cloud,
        "proj:epsg": EPSG,
        "view:sun_azimuth": 140.2,
        "view:sun_elevation": 60.4,
    }
    return Item(f"HLS.{sensor}.T33TWL.{stamp}T095031.v2.0", collection, when, properties, assets)


SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"


def modis_item(rng: np.random.Generator, day: str, hole: bool = False) -> Item:
    """Planetary Computer `modis-43A4-061`: int16 NBAR (no-data 32767), sinusoidal 463 m."""
    to_sinu = Transformer.from_crs(EPSG, ProjCRS.from_proj4(SINUSOIDAL), always_xy=True)
    xs, ys = to_sinu.transform([X0 - 1000, X0 + SIZE + 1000], [Y0 + 1000, Y0 - SIZE - 1000])
    res = 463.312716528
    x0, y0 = np.floor(min(xs) / res) * res, np.ceil(max(ys) / res) * res
    n = int(np.ceil((max(xs) - x0) / res)) + 1
    m = int(np.ceil((y0 - min(ys)) / res)) + 1
    assets = {}
    for band in (1, 2):
        values = rng.integers(100, 5000, (m, n)).astype("int16")
        if hole:
            values[: m // 2, : n // 2] = 32767
        assets[f"Nadir_Reflectance_Band{band}"] = Asset(
            values, res, x0, y0, 32767, SINUSOIDAL, {"scale": 0.0001}
        )
    doy = f"{np.datetime64(day).astype('datetime64[D]').item().timetuple().tm_yday:03d}"
    properties = {
        "start_datetime": f"{day}T00:00:00Z",
        "end_datetime": f"{day}T23:59:59Z",
        "platform": "terra",
        "instruments": ["modis"],
        "modis:tile-id": "51019004",
        "modis:horizontal-tile": 19,
        "modis:vertical-tile": 4,
    }
    return Item(
        f"MCD43A4.A2024{doy}.h19v04.061.2024170034521",
        "modis-43A4-061",
        f"{day}T00:00:00Z",
        properties,
        assets,
    )


def s2_item(rng: np.random.Generator) -> Item:
    """Earth Search `sentinel-2-l2a` (baseline 02.14: no offset), 10 m red and nir."""
    assets = {k: utm_asset(rng, "uint16", 10, 1, 12000, 0) for k in ("red", "nir")}
    properties = {
        "eo:cloud_cover": 3.0,
        "s2:processing_baseline": "02.14",
        "proj:code": f"EPSG:{EPSG}",
        "platform": "sentinel-2a",
    }
    return Item(
        "S2A_33TWL_20240612_0_L2A", "sentinel-2-l2a", "2024-06-12T10:00:00Z", properties, assets
    )


@dataclass
class Catalogue:
    items: dict[str, Item]  # by a short test name

    def __getitem__(self, name: str) -> Item:
        return self.items[name]


def build_catalogue() -> Catalogue:
    rng = np.random.default_rng(21)
    items = {
        "l9": landsat_l2_item(
            rng,
            "LC09_L2SP_190029_20240614_02_T2",
            "landsat-9",
            "2024-06-14T09:51:10Z",
            "T2",
            40.0,
            hole=True,
        ),
        "l8": landsat_l2_item(
            rng, "LC08_L2SP_190029_20240606_02_T1", "landsat-8", "2024-06-06T09:51:02Z", "T1", 10.0
        ),
        "l7": landsat_l2_item(
            rng, "LE07_L2SP_190029_20220610_02_T1", "landsat-7", "2022-06-10T09:20:00Z", "T1", 5.0
        ),
        "l5": landsat_l2_item(
            rng, "LT05_L2SP_190029_20110612_02_T1", "landsat-5", "2011-06-12T09:10:00Z", "T1", 7.0
        ),
        "l1_8": landsat_l1_item(
            rng,
            "LC08_L1TP_190029_20240606_20240613_02_RT",
            "LANDSAT_8",
            "2024-06-06T09:51:02Z",
            "RT",
            62.0,
        ),
        "l1_9": landsat_l1_item(
            rng,
            "LC09_L1TP_190029_20240614_20240615_02_T1",
            "LANDSAT_9",
            "2024-06-14T09:51:10Z",
            "T1",
            48.5,
        ),
        "s1_0411": s1_item(rng, "2018-04-11", "SENTINEL-1A", "descending", ["VV", "VH"]),
        "s1_0505": s1_item(rng, "2018-05-05", "SENTINEL-1B", "ascending", ["VV", "VH"]),
        "s1_0610": s1_item(rng, "2018-06-10", "SENTINEL-1B", "descending", ["VV", "VH"]),
        "s1_0701": s1_item(rng, "2018-07-01", "SENTINEL-1A", "descending", ["VV"]),
        "s1_0821": s1_item(rng, "2018-08-21", "SENTINEL-1A", "descending", ["VV", "VH"], hole=True),
        "s1_190311": s1_item(rng, "2019-03-11", "SENTINEL-1A", "descending", ["VV", "VH"]),
        "s1_190323": s1_item(rng, "2019-03-23", "SENTINEL-1A", "descending", ["VV", "VH"]),
        "dem30": dem_item(rng, "cop-dem-glo-30", 14.97, 45.12, 15.005, 45.19, 0.0005),
        "dem90": dem_item(rng, "cop-dem-glo-90", 14.97, 45.155, 15.06, 45.19, 0.001),
        "hls_l": hls_item(rng, "L30", "2024-06-09T09:51:00Z", 30.0),
        "hls_s": hls_item(rng, "S30", "2024-06-11T10:00:30Z", 20.0, hole=True),
        "modis_9": modis_item(rng, "2024-06-09"),
        "modis_10": modis_item(rng, "2024-06-10", hole=True),
        "s2": s2_item(rng),
    }
    return Catalogue(items)


@dataclass
class World:
    service: Service
    s3: Any
    cog_bucket: str
    out_bucket: str
    features_url: str
    catalogue: Catalogue
    geojson: list[dict]
    parquet: str

    @property
    def http(self) -> Any:
        return self.service.http

    def run(self, body: dict, expect: str = "DONE") -> tuple[str, dict]:
        task = self.service.run(body)
        assert task["status"] == expect, task.get("error")
        return task["id"], task

    def using(self, **overrides: object) -> World:
        settings = self.service.settings.model_copy(update=overrides)
        return replace(self, service=replace(self.service, settings=settings))

    def output(self, task_id: str, name: str = "default") -> np.ndarray:
        key = f"run/{task_id}/f-1/{name}.tiff"
        body = self.s3.get_object(Bucket=self.out_bucket, Key=key)["Body"].read()
        with MemoryFile(body) as memory, memory.open() as src:
            assert src.crs.to_epsg() == EPSG and src.transform.c == X0 and src.transform.f == Y0
            return src.read()

    def userdata(self, task_id: str) -> Any:
        key = f"run/{task_id}/f-1/userdata.json"
        return json.loads(self.s3.get_object(Bucket=self.out_bucket, Key=key)["Body"].read())

    def request(self, evalscript: str, data: list[dict], userdata: bool = False) -> dict:
        responses = [{"identifier": "default", "format": {"type": "image/tiff"}}]
        if userdata:
            responses.append({"identifier": "userdata", "format": {"type": "application/json"}})
        return {
            "processRequest": {
                "input": {"data": data},
                "evalscript": evalscript,
                "output": {"responses": responses},
            },
            "input": {"type": "geopackage", "features": {"s3": {"url": self.features_url}}},
            "output": {
                "type": "raster",
                "delivery": {"s3": {"url": f"s3://{self.out_bucket}/run"}},
            },
        }

    def refused(self, body: dict) -> dict[str, str]:
        """The violations of a request refused at creation (400), by parameter."""
        response = self.http.post("/api/v2/batch/process", json=body)
        assert response.status_code == 400, response.text
        return {e["parameter"]: e["violation"] for e in response.json()["error"]["errors"]}


# Types whose built-in mapping names their own catalogue (Planetary Computer, USGS)
OWN_SOURCE = ("landsat-ot-l1", "sentinel-1-grd", "hls", "modis")


def overlay(source: str) -> dict[str, dict[str, str]]:
    return {data_type: {"source": source} for data_type in OWN_SOURCE}


def world_settings(
    tmp: Any, moto_endpoint: str, parquet: str, database_url: str | None = None, **overrides: object
) -> Settings:
    mapping = tmp / "mapping.json"
    mapping.write_text(json.dumps(overlay(parquet)))
    return Settings(
        data_dir=tmp / "data",
        database_url=database_url or f"sqlite:///{tmp / 'store.sqlite'}",
        jwt_secret="test-signing-key-that-is-long-enough-for-hs256",
        workers=1,
        s3_endpoint=moto_endpoint,
        s3_access_key=MOTO_KEY,
        s3_secret_key=MOTO_SECRET,
        stac_source=parquet,
        stac_mapping=mapping,
        execution_db_interval_s=3600,
        stac_backoff_s=0.05,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, dask_client: Any
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("collections")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
    suffix = uuid.uuid4().hex[:8]
    cogs, out = f"stac-cogs-{suffix}", f"stac-out-{suffix}"
    for name in (cogs, out):
        s3.create_bucket(Bucket=name)
    catalogue = build_catalogue()
    geojson = publish(s3, cogs, list(catalogue.items.values()))
    parquet = str(write_geoparquet(tmp / "items.parquet", geojson))
    gpkg = tmp / "feature.gpkg"
    square = shapely.box(X0, Y0 - SIZE, X0 + SIZE, Y0)
    write_layer(gpkg, "features", EPSG, [square], identifiers=["f-1"], width=[PX], height=[PX])
    s3.upload_file(str(gpkg), out, "input/feature.gpkg")
    settings = world_settings(tmp, moto_endpoint, parquet)
    db = Database(settings.resolved_database_url)
    db.migrate()
    creds = create_account(db, "collections-user", 1_000_000.0)
    http = signed_in(create_app(settings, db), creds)
    service = Service(settings, db, http, dask_client, creds.account_id, collection_id="")
    yield World(
        service, s3, cogs, out, f"s3://{out}/input/feature.gpkg", catalogue, geojson, parquet
    )
    db.dispose()


# -- numpy models --------------------------------------------------------------------------------


def linear(stored: np.ndarray, scale: float, offset: float = 0.0) -> np.ndarray:
    """A linear unit in float32, as the reader converts (NaN stays NaN)."""
    return (stored.astype(F32) * F32(scale) + F32(offset)).astype(F32)


def first_valid(layers: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mosaic scenes in priority order: each pixel takes every band from the first scene where
    all of them have data (NaN elsewhere)."""
    names = list(layers[0])
    out = {n: np.full(layers[0][n].shape, np.nan) for n in names}
    filled = np.zeros(layers[0][names[0]].shape, dtype=bool)
    for layer in layers:
        valid = np.logical_and.reduce([~np.isnan(layer[n]) for n in names]) & ~filled
        for n in names:
            out[n][valid] = layer[n][valid]
        filled |= valid
    return out


def stored(item: Item, *assets: str) -> dict[str, np.ndarray]:
    return {key: item.assets[key].on_feature() for key in assets}


# -- Landsat ------------------------------------------------------------------------------------

# With several data sources, Sentinel Hub hands each source's sample as a one-element array
# (`samples.<id>[0]`) even under SIMPLE mosaicking: `one` takes either shape.
LANDSAT_UNITS = """//VERSION=3
function one(x) { return Array.isArray(x) ? x[0] : x; }
function setup() {
  return {
    input: ["all", "t1"].map(id => ({ datasource: id,
      bands: ["B04", "B10", "BQA", "QA_RADSAT", "ST_CDIST", "ST_QA", "dataMask"] })),
    output: { bands: 8, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  const a = one(s.all);
  return [a.B04, a.B10, a.BQA, a.QA_RADSAT, a.ST_CDIST, a.ST_QA, a.dataMask, one(s.t1).B04];
}
"""


def test_landsat_ot_l2_units_qa_bands_and_tiers(world: World) -> None:
    """Surface reflectance and temperature from their Collection 2 scale and offset, QA bands as
    stored (QA_RADSAT 0 is data, BQA 1 is fill), the other ST bands in their units; the newest
    scene (Landsat 9, Tier 2) first, its no-data block filled from Landsat 8; TIER_1 drops it."""
    data = [
        {"type": "landsat-ot-l2", "id": "all", "dataFilter": {"timeRange": JUNE_2024}},
        {"type": "LOTL2", "id": "t1", "dataFilter": {"timeRange": JUNE_2024, "tiers": "TIER_1"}},
    ]
    task_id, _ = world.run(world.request(LANDSAT_UNITS, data))
    got = world.output(task_id)
    keys = ("red", "lwir11", "qa_pixel", "qa_radsat", "cdist", "qa")
    l9, l8 = (stored(world.catalogue[n], *keys) for n in ("l9", "l8"))
    mosaic = first_valid([l9, l8])
    assert np.isnan(l9["red"]).any() and (l9["qa_radsat"] == 0).any()
    expected = [
        linear(mosaic["red"], 2.75e-05, -0.2),
        linear(mosaic["lwir11"], 0.00341802, 149.0),
        mosaic["qa_pixel"].astype(F32),
        mosaic["qa_radsat"].astype(F32),
        linear(mosaic["cdist"], 0.01),
        linear(mosaic["qa"], 0.01),
        np.ones((PX, PX), F32),
        linear(l8["red"], 2.75e-05, -0.2),  # Tier 1 only: Landsat 8
    ]
    for n, want in enumerate(expected):
        assert np.array_equal(got[n], want), n
    assert 270 < float(np.nanmean(got[1])) < 330  # kelvin


TILES = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "dataMask"] }], mosaicking: "TILE",
           output: { bands: 2, sampleType: "FLOAT32" } };
}
function evaluatePixel(samples) {
  return [samples[samples.length - 1].B04, samples.length];
}
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = scenes.tiles.map(t => [t.shId, t.cloudCoverage, t.date]);
}
"""


@pytest.mark.parametrize(
    ("data_filter", "expected"),
    [
        ({}, ["l9", "l8"]),
        ({"mosaickingOrder": "leastCC"}, ["l8", "l9"]),
        ({"maxCloudCoverage": 20}, ["l8"]),
    ],
)
def test_landsat_tile_mosaicking_orders_and_cloud_cover(
    world: World, data_filter: dict, expected: list[str]
) -> None:
    data = [{"type": "landsat-ot-l2", "dataFilter": {"timeRange": JUNE_2024, **data_filter}}]
    task_id, _ = world.run(world.request(TILES, data, userdata=True))
    items = [world.catalogue[n] for n in expected]
    assert world.userdata(task_id) == [
        [i.id, i.properties["eo:cloud_cover"], i.datetime[:19] + "Z"] for i in items
    ]
    got = world.output(task_id)
    assert (got[1] == len(expected)).all()
    last = items[-1].assets["red"].on_feature()  # a tile without data there: NaN
    assert np.array_equal(got[0], linear(last, 2.75e-05, -0.2), equal_nan=True)


THERMAL = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B01", "B06", "BQA", "dataMask"] }],
           output: { bands: 4, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.B01, s.B06, s.BQA, s.dataMask]; }
"""


@pytest.mark.parametrize(
    ("data_type", "time_range", "item"),
    [("landsat-etm-l2", JUNE_2022, "l7"), ("landsat-tm-l2", JUNE_2011, "l5")],
)
def test_landsat_etm_and_tm_l2_read_their_platform_only(
    world: World, data_type: str, time_range: dict, item: str
) -> None:
    """Landsat 4-7 share the collection with Landsat 8-9: the platform decides. Their B01 is
    the blue band and B06 the (60 m / 120 m resampled) surface temperature `lwir`."""
    wide = {"from": "2010-01-01T00:00:00Z", "to": "2024-12-31T23:59:59Z"}
    data = [{"type": data_type, "dataFilter": {"timeRange": wide}}]
    task_id, _ = world.run(world.request(THERMAL, data))
    got = world.output(task_id)
    scene = stored(world.catalogue[item], "blue", "lwir", "qa_pixel")
    assert np.array_equal(got[0], linear(scene["blue"], 2.75e-05, -0.2))
    assert np.array_equal(got[1], linear(scene["lwir"], 0.00341802, 149.0))
    assert np.array_equal(got[2], scene["qa_pixel"].astype(F32))
    assert (got[3] == 1).all()


L1_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "B10", "B11", "dataMask"] }], mosaicking: "ORBIT",
           output: { bands: 9, sampleType: "FLOAT32" } };
}
function evaluatePixel(samples) {
  const out = [samples.length];
  for (const s of samples) out.push(s.B04, s.B08, s.B10, s.B11);
  while (out.length < 9) out.push(-1);
  return out;
}
"""


def toa(dn: np.ndarray, elevation: float) -> np.ndarray:
    return linear(dn, 2e-05, -0.1) / F32(np.sin(np.radians(elevation)))


def brightness(dn: np.ndarray, ml: float, k1: float, k2: float) -> np.ndarray:
    radiance = linear(dn, ml, 0.1)
    with np.errstate(invalid="ignore"):
        return F32(k2) / np.log(F32(k1) / radiance + F32(1))


@pytest.mark.parametrize("tiers", [None, "TIER_1_AND_RT", "TIER_1"])
def test_landsat_ot_l1_toa_reflectance_and_brightness_temperature(
    world: World, tiers: str | None
) -> None:
    """TOA reflectance with each scene's sun elevation; brightness temperature from radiance
    with each satellite's constants (Landsat 8 and 9 differ); the 15 m pan band; assets read
    from their requester-pays S3 alternates (the primary hrefs point at a closed port)."""
    data_filter: dict[str, Any] = {"timeRange": JUNE_2024}
    if tiers:
        data_filter["tiers"] = tiers
    task_id, _ = world.run(
        world.request(L1_SCRIPT, [{"type": "landsat-ot-l1", "dataFilter": data_filter}])
    )
    got = world.output(task_id)
    scenes = [
        ("l1_9", 48.5, (0.00038, 799.0284, 1329.2405), (0.000349, 475.6581, 1198.3494)),
        ("l1_8", 62.0, (0.0003342, 774.8853, 1321.0789), (0.0003342, 480.8883, 1201.1442)),
    ]
    if tiers == "TIER_1":  # Landsat 8's scene is real-time (RT)
        scenes = scenes[:1]
    assert (got[0] == len(scenes)).all()
    for n, (name, elevation, b10, b11) in enumerate(scenes):
        item = world.catalogue[name]
        red, pan = item.assets["red"].on_feature(), item.assets["pan"].on_feature()
        t10, t11 = item.assets["lwir11"].on_feature(), item.assets["lwir12"].on_feature()
        np.testing.assert_allclose(got[1 + 4 * n], toa(red, elevation), rtol=2e-7)
        np.testing.assert_allclose(got[2 + 4 * n], toa(pan, elevation), rtol=2e-7)
        np.testing.assert_allclose(got[3 + 4 * n], brightness(t10, *b10), rtol=2e-7)
        np.testing.assert_allclose(got[4 + 4 * n], brightness(t11, *b11), rtol=2e-7)
    assert 250 < float(got[3].mean()) < 330


# -- Sentinel-1 ----------------------------------------------------------------------------------

S1_LINEAR = """//VERSION=3
function setup() {
  return { input: [{ bands: ["VV", "VH", "dataMask"] }],
           output: { bands: 3, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.VV, s.VH, s.dataMask]; }
"""


def test_sentinel1_terrain_flattened_gamma0_with_its_filters(world: World) -> None:
    """GAMMA0_TERRAIN from the RTC collection in linear power; dual-pol descending IW scenes
    only (the newest, ascending 2018-05-05 and single-pol 2018-07-01 scenes are left out);
    `upsampling` also resamples down (the 10 m scenes onto 30 m: nearest, not the bilinear
    `downsampling` asks for, which Sentinel-1 ignores)."""
    data_filter = {
        "timeRange": YEAR_2018,
        "polarization": "DV",
        "orbitDirection": "DESCENDING",
        "acquisitionMode": "IW",
        "resolution": "HIGH",
        "timeliness": "Fast24h",
    }
    data = [
        {
            "type": "S1GRD",
            "dataFilter": data_filter,
            "processing": {
                **RTC,
                "upsampling": "NEAREST",
                "downsampling": "BILINEAR",
                "speckleFilter": {"type": "NONE"},
            },
        }
    ]
    task_id, _ = world.run(world.request(S1_LINEAR, data))
    got = world.output(task_id)
    newest, older = (stored(world.catalogue[n], "vv", "vh") for n in ("s1_0821", "s1_0610"))
    assert np.isnan(newest["vv"]).any()
    mosaic = first_valid([newest, older])
    assert np.array_equal(got[0], mosaic["vv"].astype(F32))
    assert np.array_equal(got[1], mosaic["vh"].astype(F32))
    assert (got[2] == 1).all()


COMPOSITE = """//VERSION=3
// A multi-temporal backscatter composite: three chosen acquisitions in decibels
var dates = ["2018-08-21", "2018-06-10", "2018-04-11"];
function setup() {
  return { input: [{ bands: ["VV"] }], output: { bands: 6, sampleType: "FLOAT32" },
           mosaicking: "ORBIT" };
}
function preProcessScenes(collections) {
  collections.scenes.orbits = collections.scenes.orbits.filter(
    orbit => dates.includes(orbit.dateFrom.split("T")[0]));
  return collections;
}
function evaluatePixel(samples) {
  const db = s => 10 * Math.log(s.VV) / Math.LN10;
  return [samples[0].VV, samples[1].VV, samples[2].VV, db(samples[0]), db(samples[1]),
          samples.length];
}
"""


def test_sentinel1_orbit_composite_of_chosen_dates(world: World) -> None:
    data = [{"type": "sentinel-1-grd", "dataFilter": {"timeRange": YEAR_2018}, "processing": RTC}]
    task_id, _ = world.run(world.request(COMPOSITE, data))
    got = world.output(task_id)
    vv = [world.catalogue[n].assets["vv"].on_feature() for n in ("s1_0821", "s1_0610", "s1_0411")]
    for n in range(3):  # newest first; the newest scene's no-data block stays no data
        assert np.array_equal(got[n], vv[n].astype(F32), equal_nan=True)
    np.testing.assert_allclose(got[4], 10 * np.log10(vv[1]), rtol=1e-5)
    assert (got[5] == 3).all()


@pytest.mark.parametrize(
    ("data_filter", "processing", "parameter", "text"),
    [
        ({}, {}, "processing->backCoeff", "defaults to GAMMA0_ELLIPSOID"),
        ({}, {}, "processing->orthorectify", "defaults to false"),
        ({}, {**RTC, "backCoeff": "BETA0"}, "processing->backCoeff", "served: GAMMA0_TERRAIN"),
        (
            {},
            {**RTC, "speckleFilter": {"type": "LEE", "windowSizeX": 3, "windowSizeY": 3}},
            "processing->speckleFilter",
            "LEE is not served",
        ),
        ({}, {**RTC, "demInstance": "COPERNICUS_30"}, "processing->demInstance", "omit it"),
        (
            {},
            {**RTC, "radiometricTerrainOversampling": 3},
            "processing->radiometricTerrainOversampling",
            "omit it",
        ),
        ({"acquisitionMode": "EW"}, RTC, "dataFilter->acquisitionMode", "served: IW"),
        ({"resolution": "MEDIUM"}, RTC, "dataFilter->resolution", "served: HIGH"),
        ({"tiers": "TIER_1"}, RTC, "dataFilter->tiers", "not an option of sentinel-1-grd"),
        ({"maxCloudCoverage": 30}, RTC, "dataFilter->maxCloudCoverage", "no cloud cover"),
        ({"mosaickingOrder": "leastCC"}, RTC, "dataFilter->mosaickingOrder", "leastCC needs"),
        ({"polarization": "XX"}, RTC, "dataFilter->polarization", ""),
    ],
)
def test_sentinel1_options_it_cannot_honour_are_refused_at_creation(
    world: World, data_filter: dict, processing: dict, parameter: str, text: str
) -> None:
    data = [{"type": "sentinel-1-grd", "dataFilter": data_filter, "processing": processing}]
    found = world.refused(world.request(S1_LINEAR, data))
    key = f"processRequest->input->data->0->{parameter}"
    matching = [v for p, v in found.items() if p.startswith(key)]
    assert matching and text in matching[0], found
    if parameter == "processing->backCoeff" and text.startswith("defaults"):
        assert "GAMMA0_TERRAIN" in matching[0] and "sentinel-1-rtc" in matching[0]


def test_sentinel1_has_no_tile_mosaicking(world: World) -> None:
    script = S1_LINEAR.replace("output: {", 'mosaicking: "TILE", output: {').replace(
        "return [s.VV, s.VH, s.dataMask]", "return [s[0].VV, s[0].VH, s.length]"
    )
    data = [{"type": "sentinel-1-grd", "dataFilter": {"timeRange": YEAR_2018}, "processing": RTC}]
    _, task = world.run(world.request(script, data), expect="FAILED")
    assert "sentinel-1-grd has no TILE mosaicking; use SIMPLE or ORBIT" in task["error"]


# -- DEM -----------------------------------------------------------------------------------------

DEM_SCRIPT = """//VERSION=3
function setup() {
  return { input: ["DEM", "dataMask"], output: { bands: 2, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.DEM, s.dataMask]; }
"""


@pytest.mark.parametrize("instance", [None, "COPERNICUS_30", "COPERNICUS_90"])
def test_dem_instances_infill_and_sea_level_where_no_tile_exists(
    world: World, instance: str | None
) -> None:
    """COPERNICUS_30 (the default here) is GLO-30 infilled with GLO-90, COPERNICUS_90 GLO-90
    alone; where no tile exists (the sea) the DEM is 0 with dataMask 1. The DEM is timeless: a
    time range that misses its items' date is ignored."""
    data_filter: dict[str, Any] = {"timeRange": JUNE_2024}
    if instance:
        data_filter["demInstance"] = instance
    task_id, _ = world.run(world.request(DEM_SCRIPT, [{"type": "DEM", "dataFilter": data_filter}]))
    got = world.output(task_id)
    glo30 = world.catalogue["dem30"].assets["data"].sampler()
    glo90 = world.catalogue["dem90"].assets["data"].sampler()

    def expected(shift: tuple[float, float]) -> np.ndarray:
        height = glo90(shift)
        if instance != "COPERNICUS_90":
            fine = glo30(shift)
            height = np.where(np.isnan(fine), height, fine)
        return np.where(np.isnan(height), 0.0, height).astype(F32).astype(np.float64)

    ok = matches_nearest(got[0].astype(np.float64), expected, WARP_TOLERANCE_PX)
    assert ok.all(), f"{(~ok).sum()} pixels differ"
    assert (got[1] == 1).all()
    exact = expected((0.0, 0.0))
    assert (exact == 0).sum() > 100 and (got[0] == 0).sum() > 100  # the sea
    assert np.isin(got[0], world.catalogue["dem90"].assets["data"].values).sum() > 100


TOPOGRAPHIC = """//VERSION=3
// Heights coloured on a ramp, and the heights themselves as a second output
const visualizer = new ColorRampVisualizer([[0, 0x0f0f8c], [0.00001, 0x165407], [100, 0x3d873d],
                                            [500, 0x7aba70], [1000, 0xfcedbf]], 0, 1000);
function setup() {
  return { input: ["DEM", "dataMask"],
           output: [{ id: "default", bands: 4, sampleType: "AUTO" },
                    { id: "index", bands: 1, sampleType: "FLOAT32" }] };
}
function evaluatePixel(samples) {
  return { default: [...visualizer.process(samples.DEM), samples.dataMask],
           index: [samples.DEM] };
}
"""


def test_dem_script_with_a_colour_ramp_and_two_outputs(world: World) -> None:
    body = world.request(TOPOGRAPHIC, [{"type": "dem"}])
    body["processRequest"]["output"]["responses"].append(
        {"identifier": "index", "format": {"type": "image/tiff"}}
    )
    task_id, _ = world.run(body)
    index, colour = world.output(task_id, "index")[0], world.output(task_id)
    assert colour.dtype == np.uint8 and (colour[3] == 255).all()
    sea = index == 0
    assert sea.any() and (colour[0][sea] == 0x0F).all() and (colour[2][sea] == 0x8C).all()
    below = index < 0  # clamped to the ramp's first colour too
    assert below.any() and (colour[2][below] == 0x8C).all()
    mid = (index >= 100) & (index <= 500)  # between the 100 m and 500 m greens
    assert mid.any() and (colour[0][mid] >= 0x3D).all() and (colour[0][mid] <= 0x7A).all()
    assert (colour[1][mid] >= 0x87).all() and (colour[1][mid] <= 0xBA).all()


@pytest.mark.parametrize(
    ("data_filter", "processing", "parameter", "text"),
    [
        (
            {"demInstance": "MAPZEN"},
            {},
            "dataFilter->demInstance",
            "served: COPERNICUS_30, COPERNICUS_90",
        ),
        ({}, {"egm": True}, "processing->egm", "true is not served"),
        ({}, {"clampNegative": True}, "processing->clampNegative", "true is not served"),
        ({"maxCloudCoverage": 10}, {}, "dataFilter->maxCloudCoverage", "no cloud cover"),
        ({}, {"harmonizeValues": True}, "processing->harmonizeValues", "Sentinel-2"),
        ({"constellation": "LANDSAT"}, {}, "dataFilter->constellation", "not an option of dem"),
    ],
)
def test_dem_options_it_cannot_honour_are_refused_at_creation(
    world: World, data_filter: dict, processing: dict, parameter: str, text: str
) -> None:
    data = [{"type": "dem", "dataFilter": data_filter, "processing": processing}]
    found = world.refused(world.request(DEM_SCRIPT, data))
    violation = found.get(f"processRequest->input->data->0->{parameter}", "")
    assert text in violation, found


# -- HLS -----------------------------------------------------------------------------------------

HLS_SCRIPT = """//VERSION=3
function one(x) { return Array.isArray(x) ? x[0] : x; }
function setup() {
  return {
    input: [{ datasource: "all", bands: ["Red", "NIR_Narrow", "dataMask"] },
            { datasource: "re", bands: ["RedEdge1", "dataMask"] },
            { datasource: "ls", bands: ["ThermalInfrared1", "QA", "SAA", "dataMask"] },
            { datasource: "dn", bands: ["Red"], units: "DN" }],
    output: { bands: 9, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  const all = one(s.all), re = one(s.re), ls = one(s.ls);
  return [all.Red, all.NIR_Narrow, re.RedEdge1, re.dataMask, ls.ThermalInfrared1, ls.QA,
          ls.SAA, ls.dataMask, one(s.dn).Red];
}
"""


def test_hls_bands_of_both_constellations(world: World) -> None:
    """NIR_Narrow is B8A in Sentinel-2 scenes and B05 in Landsat ones; a Landsat scene has no
    red-edge band, so RedEdge1 comes from Sentinel-2 only (no data in its hole); LANDSAT gives
    the thermal band (brightness temperature in kelvin from degrees Celsius x 100), QA (Fmask)
    and the sun azimuth in degrees."""
    data = [
        {"type": "hls", "id": "all", "dataFilter": {"timeRange": JUNE_2024}},
        {"type": "hls", "id": "re", "dataFilter": {"timeRange": JUNE_2024}},
        {
            "type": "HLS",
            "id": "ls",
            "dataFilter": {"timeRange": JUNE_2024, "constellation": "LANDSAT"},
        },
        {
            "type": "hls",
            "id": "dn",
            "dataFilter": {"timeRange": JUNE_2024, "mosaickingOrder": "leastRecent"},
        },
    ]
    task_id, _ = world.run(world.request(HLS_SCRIPT, data))
    got = world.output(task_id)
    sentinel, landsat = world.catalogue["hls_s"], world.catalogue["hls_l"]
    newest = {
        "red": sentinel.assets["B04"].on_feature(),
        "nir": sentinel.assets["B8A"].on_feature(),
    }
    older = {"red": landsat.assets["B04"].on_feature(), "nir": landsat.assets["B05"].on_feature()}
    mosaic = first_valid([newest, older])
    assert np.array_equal(got[0], linear(mosaic["red"], 0.0001))
    assert np.array_equal(got[1], linear(mosaic["nir"], 0.0001))
    red_edge = sentinel.assets["B05"].on_feature()
    assert np.array_equal(got[2], linear(red_edge, 0.0001), equal_nan=True)
    assert np.array_equal(got[3], (~np.isnan(red_edge)).astype(F32))
    assert np.array_equal(got[4], linear(landsat.assets["B10"].on_feature(), 0.01, 273.15))
    assert np.array_equal(got[5], landsat.assets["Fmask"].on_feature().astype(F32))
    assert np.array_equal(got[6], linear(landsat.assets["SAA"].on_feature(), 0.01))
    assert (got[7] == 1).all()
    assert np.array_equal(got[8], landsat.assets["B04"].on_feature().astype(F32))  # leastRecent


def test_hls_tiles_carry_their_cloud_cover(world: World) -> None:
    script = TILES.replace('"B04"', '"Red"').replace(".B04", ".Red")
    data = [{"type": "hls", "dataFilter": {"timeRange": JUNE_2024, "mosaickingOrder": "leastCC"}}]
    task_id, _ = world.run(world.request(script, data, userdata=True))
    items = [world.catalogue["hls_s"], world.catalogue["hls_l"]]  # 20 % before 30 %
    assert world.userdata(task_id) == [
        [i.id, i.properties["eo:cloud_cover"], i.datetime[:19] + "Z"] for i in items
    ]


# -- MODIS ---------------------------------------------------------------------------------------

MODIS_SCRIPT = """//VERSION=3
function setup() {
  return { input: ["B01", "B02", "dataMask"], output: { bands: 3, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.B01, s.B02, s.dataMask]; }
"""


@pytest.mark.parametrize("order", ["mostRecent", "leastRecent"])
def test_modis_nbar_from_sinusoidal_tiles(world: World, order: str) -> None:
    """500 m sinusoidal NBAR warped to 30 m UTM (nearest): the newest day's fill (32767) is
    no data, filled from the day before."""
    data = [{"type": "modis", "dataFilter": {"timeRange": JUNE_2024, "mosaickingOrder": order}}]
    task_id, _ = world.run(world.request(MODIS_SCRIPT, data))
    got = world.output(task_id)
    days = [world.catalogue["modis_10"], world.catalogue["modis_9"]]
    if order == "leastRecent":
        days.reverse()
    for band in (1, 2):
        samplers = [d.assets[f"Nadir_Reflectance_Band{band}"].sampler() for d in days]

        def expected(shift: tuple[float, float], samplers: list = samplers) -> np.ndarray:
            first, second = (s(shift) for s in samplers)
            value = np.where(np.isnan(first), second, first)
            return linear(value, 0.0001).astype(np.float64)

        ok = matches_nearest(got[band - 1].astype(np.float64), expected, WARP_TOLERANCE_PX)
        assert ok.all(), (band, int((~ok).sum()))
    assert (got[2] == 1).all()


def test_modis_has_no_cloud_cover_to_order_by(world: World) -> None:
    data = [{"type": "MODIS", "dataFilter": {"mosaickingOrder": "leastCC"}}]
    found = world.refused(world.request(MODIS_SCRIPT, data))
    assert (
        "leastCC needs cloud cover"
        in found["processRequest->input->data->0->dataFilter->mosaickingOrder"]
    )


# -- data fusion ---------------------------------------------------------------------------------

FUSION = """//VERSION=3
function one(x) { return Array.isArray(x) ? x[0] : x; }
function setup() {
  return { input: [{ datasource: "s2", bands: ["B04", "dataMask"] },
                   { datasource: "ls", bands: ["B04", "dataMask"] },
                   { datasource: "dem", bands: ["DEM", "dataMask"] }],
           output: { bands: 4, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  const s2 = one(s.s2), ls = one(s.ls), dem = one(s.dem);
  return [s2.B04, ls.B04, dem.DEM, s2.dataMask * ls.dataMask * dem.dataMask];
}
"""

FUSION_ORBIT = """//VERSION=3
function setup() {
  return { input: [{ datasource: "s2", bands: ["B08"] }, { datasource: "ls", bands: ["B05"] },
                   { datasource: "dem", bands: ["DEM"] }],
           mosaicking: "ORBIT", output: { bands: 6, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  return [s.s2.length, s.ls.length, s.dem.length, s.s2[0].B08, s.ls[1].B05, s.dem[0].DEM];
}
"""


def dem_model(world: World) -> Any:
    glo30 = world.catalogue["dem30"].assets["data"].sampler()
    glo90 = world.catalogue["dem90"].assets["data"].sampler()

    def expected(shift: tuple[float, float]) -> np.ndarray:
        height = np.where(np.isnan(glo30(shift)), glo90(shift), glo30(shift))
        return np.where(np.isnan(height), 0.0, height).astype(F32).astype(np.float64)

    return expected


@pytest.mark.parametrize("mosaicking", ["SIMPLE", "ORBIT"])
def test_sentinel2_landsat_and_dem_fused_in_one_script(world: World, mosaicking: str) -> None:
    """Each source keeps its own catalogue entry, filters, units and samples: Sentinel-2 L2A
    reflectance at 10 m, Landsat 8-9 surface reflectance (Tier 1 under SIMPLE, both orbits
    under ORBIT), the DEM's heights; under ORBIT each source has its own orbits."""
    ls_filter: dict[str, Any] = {"timeRange": JUNE_2024}
    if mosaicking == "SIMPLE":
        ls_filter["tiers"] = "TIER_1"
    data = [
        {"type": "sentinel-2-l2a", "id": "s2", "dataFilter": {"timeRange": JUNE_2024}},
        {"type": "landsat-ot-l2", "id": "ls", "dataFilter": ls_filter},
        {"type": "dem", "id": "dem", "dataFilter": {"demInstance": "COPERNICUS_30"}},
    ]
    script = FUSION if mosaicking == "SIMPLE" else FUSION_ORBIT
    task_id, task = world.run(world.request(script, data))
    got = world.output(task_id)
    s2, l8 = world.catalogue["s2"], world.catalogue["l8"]
    if mosaicking == "SIMPLE":
        assert np.array_equal(got[0], linear(s2.assets["red"].on_feature(), 0.0001))
        assert np.array_equal(got[1], linear(l8.assets["red"].on_feature(), 2.75e-05, -0.2))
        heights, mask = got[2], got[3]
    else:
        assert (got[0] == 1).all() and (got[1] == 2).all() and (got[2] == 1).all()
        assert np.array_equal(got[3], linear(s2.assets["nir"].on_feature(), 0.0001))
        assert np.array_equal(got[4], linear(l8.assets["nir08"].on_feature(), 2.75e-05, -0.2))
        heights, mask = got[5], None
    ok = matches_nearest(heights.astype(np.float64), dem_model(world), WARP_TOLERANCE_PX)
    assert ok.all(), f"{(~ok).sum()} DEM pixels differ"
    if mask is not None:
        assert (mask == 1).all()
    assert task["costPU"] > 0


# -- scenes pinned at analysis -------------------------------------------------------------------

B04 = """//VERSION=3
function setup() { return { input: ["B04"], output: { bands: 1, sampleType: "FLOAT32" } }; }
function evaluatePixel(s) { return [s.B04]; }
"""


def test_scenes_found_at_analysis_are_read_after_a_restart_whatever_the_catalogue_says(
    world: World, database_url: str, tmp_path: Any
) -> None:
    """A task analysed, then started by another controller after the catalogue changed (a
    newer scene arrived, one it found was withdrawn): it reads exactly the scenes its analysis
    found, pinned in the store. A task analysed after the change sees the new catalogue."""
    parquet = tmp_path / "items.parquet"
    write_geoparquet(parquet, world.geojson)
    # A short lease: the restarted controller takes the task over from the first one at once.
    settings = world_settings(
        tmp_path,
        world.service.settings.s3_endpoint or "",
        str(parquet),
        database_url=database_url,
        lease_s=1.0,
    )
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        creds = create_account(db, "pinning", 100_000.0)
        http = signed_in(create_app(settings, db), creds)
        service = Service(settings, db, http, world.service.client, creds.account_id, "")
        body = world.request(
            B04, [{"type": "landsat-ot-l2", "dataFilter": {"timeRange": JUNE_2024}}]
        )
        task_id = service.create(body)
        service.action(task_id, "analyse")
        assert service.wait(task_id)["status"] == "ANALYSIS_DONE"
        with db.session() as session:
            pins = session.scalars(
                select(PinnedScenes).where(PinnedScenes.task_id == task_id)
            ).all()
        l9, l8 = world.catalogue["l9"], world.catalogue["l8"]
        assert [(p.source, sorted(i["id"] for i in p.items)) for p in pins] == [
            (0, sorted([l9.id, l8.id]))
        ]
        newer = landsat_l2_item(
            np.random.default_rng(5),
            "LC08_L2SP_190029_20240622_02_T1",
            "landsat-8",
            "2024-06-22T09:51:02Z",
            "T1",
            1.0,
        )
        arrived = publish(world.s3, world.cog_bucket, [newer])
        write_geoparquet(parquet, [g for g in world.geojson if g["id"] != l8.id] + arrived)

        restarted = replace(service)  # a new controller: nothing of the analysis in memory
        restarted.action(task_id, "start")
        run_until([restarted.stepper], status_is(restarted, task_id, "DONE"))
        mosaic = first_valid([stored(l9, "red"), stored(l8, "red")])
        assert np.array_equal(world.output(task_id)[0], linear(mosaic["red"], 2.75e-05, -0.2))

        later = restarted.create(body)
        restarted.action(later, "start")
        assert restarted.wait(later)["status"] == "DONE"
        assert np.array_equal(
            world.output(later)[0], linear(stored(newer, "red")["red"], 2.75e-05, -0.2)
        )
    finally:
        db.dispose()


# -- a STAC API: pages, retries, a type pointed at another catalogue -----------------------------


@pytest.fixture(scope="module")
def flaky_api(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlakyProxy]:
    """The catalogue's items and 600 more (a collection of its own, to page through) behind
    `rustac serve`, reached through a proxy that fails as each test plans."""
    extra = [
        {
            **world.geojson[0],
            "id": f"filler-{n:04d}",
            "collection": "filler",
            "properties": {"datetime": "2024-06-01T00:00:00Z", "platform": f"p{n % 3}"},
        }
        for n in range(600)
    ]
    path = tmp_path_factory.mktemp("api") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": world.geojson + extra}))
    url, stop = start_stac_api(str(path))
    proxy = FlakyProxy(url)
    yield proxy
    proxy.stop()
    stop()


def test_a_large_search_is_paged_and_each_failing_page_retried(flaky_api: FlakyProxy) -> None:
    """600 items in pages of 250; the first page fails twice (503, then a dropped connection)
    and the second once (502): the search still returns every item, each page once."""
    flaky_api.faults = [503, "drop", None, 502]
    flaky_api.log.clear()
    bbox = shapely.box(X0, Y0 - SIZE, X0 + SIZE, Y0)
    to_wgs = Transformer.from_crs(EPSG, 4326, always_xy=True)
    query = StacQuery(
        ("filler",), to_wgs.transform_bounds(*bbox.bounds), filter={"platform": ("p0", "p2")}
    )
    items = search_items(flaky_api.url, query, Retry(attempts=3, backoff_s=0.01))
    assert len(items) == 400 and len({i.id for i in items}) == 400
    assert [what for _, _, what in flaky_api.log] == [
        "503",
        "drop",
        "forwarded",
        "502",
        "forwarded",
        "forwarded",
    ]


@pytest.mark.parametrize(("faults", "attempts", "requests"), [([503] * 3, 3, 3), ([400], 5, 1)])
def test_a_search_fails_after_its_retries_or_at_once_on_a_client_error(
    flaky_api: FlakyProxy, faults: list, attempts: int, requests: int
) -> None:
    flaky_api.faults, flaky_api.log[:] = list(faults), []
    query = StacQuery(("filler",), (14.0, 45.0, 16.0, 46.0))
    with pytest.raises(StacSearchError, match=f"HTTP {faults[0]}"):
        search_items(flaky_api.url, query, Retry(attempts=attempts, backoff_s=0.01))
    assert len(flaky_api.log) == requests


def test_one_type_from_a_stac_api_and_the_others_from_a_geoparquet_file(
    world: World, flaky_api: FlakyProxy, tmp_path: Any
) -> None:
    """A deployment's mapping file points sentinel-1-grd at a STAC API (which fails twice
    before answering); the DEM, fused in, still comes from the stac-geoparquet file."""
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({**overlay(world.parquet), "sentinel-1-grd": {"source": flaky_api.url}})
    )
    flaky_api.faults, flaky_api.log[:] = [503, "drop"], []
    script = """//VERSION=3
function one(x) { return Array.isArray(x) ? x[0] : x; }
function setup() {
  return { input: [{ datasource: "s1", bands: ["VV"] }, { datasource: "dem", bands: ["DEM"] }],
           output: { bands: 2, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [one(s.s1).VV, one(s.dem).DEM]; }
"""
    data = [
        {
            "type": "sentinel-1-grd",
            "id": "s1",
            "processing": RTC,
            "dataFilter": {"timeRange": YEAR_2018, "orbitDirection": "ASCENDING"},
        },
        {"type": "dem", "id": "dem"},
    ]
    task_id, _ = world.using(stac_mapping=mapping).run(world.request(script, data))
    got = world.output(task_id)
    assert np.array_equal(got[0], world.catalogue["s1_0505"].assets["vv"].on_feature().astype(F32))
    assert matches_nearest(got[1].astype(np.float64), dem_model(world), WARP_TOLERANCE_PX).all()
    assert [what for _, _, what in flaky_api.log][:3] == ["503", "drop", "forwarded"]


# -- public custom scripts, unchanged ------------------------------------------------------------

# github.com/sentinel-hub/custom-scripts, read from a checkout named by EOBATCH_CUSTOM_SCRIPTS
# (their code is not ours to copy into this repository): path, request, the helpers of the
# evalscript library they call.
PUBLIC_SCRIPTS = {
    "landsat-8/true-color/script.js": ("landsat-ot-l2", {}, ["processList"]),
    "landsat-8/false-color/script.js": ("landsat-ot-l2", {}, ["processList"]),
    "landsat-8/bqa/script.js": ("landsat-ot-l2", {}, ["decodeL8C2Qa"]),
    "sentinel-1/sar_multi-temporal_backscatter_coefficient_composite/script.js": (
        "sentinel-1-grd",
        {"processing": RTC},
        [],
    ),
    "sentinel-1/flood_mapping/script.js": ("sentinel-1-grd", {"processing": RTC}, []),
    "dem/dem-topographic/cop-dem.js": ("dem", {}, []),
}


def auto(values: np.ndarray) -> np.ndarray:
    """sampleType AUTO: x 255, half away from zero, clamped, non-finite 0."""
    v = np.where(np.isfinite(values), values * 255, 0.0)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("path", sorted(PUBLIC_SCRIPTS))
def test_public_custom_scripts_run_unchanged(world: World, path: str) -> None:
    import os
    from importlib import resources
    from pathlib import Path

    folder = os.environ.get("EOBATCH_CUSTOM_SCRIPTS")
    if not folder:
        pytest.skip("set EOBATCH_CUSTOM_SCRIPTS to a checkout of sentinel-hub/custom-scripts")
    data_type, extra, helpers = PUBLIC_SCRIPTS[path]
    library = resources.files("eobatch.script").joinpath("helpers.js").read_text()
    missing = [h for h in helpers if h not in library]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} of the evalscript helper library")
    script = (Path(folder) / path).read_text()
    try:  # what the evalscript runtime (not the data types) must accept first
        parse_setup(script)
    except EvalscriptError as exc:
        pytest.skip(f"the evalscript runtime refuses it: {exc}")
    time_range = {"landsat-ot-l2": JUNE_2024, "dem": JUNE_2024}.get(data_type)
    wide = {"from": "2018-01-01T00:00:00Z", "to": "2019-12-31T23:59:59Z"}
    body = world.request(
        script, [{"type": data_type, "dataFilter": {"timeRange": time_range or wide}, **extra}]
    )
    if path.startswith("dem/"):
        for name in ("index", "dataMask"):
            body["processRequest"]["output"]["responses"].append(
                {"identifier": name, "format": {"type": "image/tiff"}}
            )
    task_id, _ = world.run(body)
    got = world.output(task_id)
    if "multi-temporal" in path:  # dB of the oldest, middle and newest dates, stretched
        vv = [
            world.catalogue[n].assets["vv"].on_feature() for n in ("s1_0411", "s1_0610", "s1_0821")
        ]
        for band, values in enumerate(vv):
            with np.errstate(invalid="ignore"):
                expected = auto(np.maximum(0, np.log(values) * 0.21714724095 + 1) / 1.1)
            close = np.abs(got[band].astype(int) - expected.astype(int)) <= 1  # last-bit rounding
            assert close.all(), band
    elif "flood" in path:
        before, during = (
            world.catalogue[n].assets["vv"].on_feature() for n in ("s1_190311", "s1_190323")
        )
        assert np.array_equal(got[0], auto(1.5 * before)) and np.array_equal(
            got[1], auto(1.5 * during)
        )
    elif path.startswith("dem/"):
        index = world.output(task_id, "index")[0]
        assert matches_nearest(index.astype(np.float64), dem_model(world), WARP_TOLERANCE_PX).all()
        assert (world.output(task_id, "dataMask")[0] == 255).all()
    else:
        assert got.shape[0] in (3, 4) and got.any()


# -- what sentinelhub-py sends -------------------------------------------------------------------

SENTINELHUB_PY = [
    "LANDSAT_OT_L1",
    "LANDSAT_OT_L2",
    "LANDSAT_ETM_L2",
    "LANDSAT_TM_L2",
    "SENTINEL1_IW",
    "SENTINEL1_IW_ASC",
    "SENTINEL1_IW_DES",
    "DEM",
    "DEM_COPERNICUS_30",
    "DEM_COPERNICUS_90",
    "HARMONIZED_LANDSAT_SENTINEL",
    "MODIS",
]


@pytest.mark.parametrize("name", SENTINELHUB_PY)
def test_the_input_sentinelhub_py_builds_for_each_collection_is_accepted(
    world: World, name: str
) -> None:
    """sentinelhub-py adds its collections' own filters (Sentinel-1 IW: acquisitionMode,
    polarization DV, resolution HIGH; DEM_COPERNICUS_30: demInstance): all are served."""
    from sentinelhub import DataCollection, SentinelHubRequest

    collection = getattr(DataCollection, name)
    other = {"processing": RTC} if collection.api_id == "sentinel-1-grd" else None
    cloud = 0.5 if collection.has_cloud_coverage else None
    data = SentinelHubRequest.input_data(
        data_collection=collection,
        time_interval=("2024-06-01", "2024-06-30"),
        maxcc=cloud,
        other_args=other,
    )
    response = world.http.post("/api/v2/batch/process", json=world.request(B04, [dict(data)]))
    assert response.status_code == 201, response.text


def test_sentinelhub_py_s_extra_wide_swath_collection_is_refused_with_what_is_served(
    world: World,
) -> None:
    from sentinelhub import DataCollection, SentinelHubRequest

    data = SentinelHubRequest.input_data(
        data_collection=DataCollection.SENTINEL1_EW, other_args={"processing": RTC}
    )
    found = world.refused(world.request(B04, [dict(data)]))
    where = "processRequest->input->data->0->dataFilter->"
    assert "served: IW" in found[where + "acquisitionMode"]
    assert "served: HIGH" in found[where + "resolution"]
