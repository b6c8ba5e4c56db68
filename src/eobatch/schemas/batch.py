"""The Batch V2 request and task JSON (batch-v2-api.md §4, §5) as pydantic models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

from eobatch.schemas.common import ObjectStorage, WireModel

Resampling = Literal["NEAREST", "BILINEAR", "BICUBIC"]
MosaickingOrder = Literal["mostRecent", "leastRecent", "leastCC"]


class TimeRange(WireModel):
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("'from' must not be later than 'to'")
        return self


DemInstance = Literal["MAPZEN", "COPERNICUS", "COPERNICUS_30", "COPERNICUS_90"]


class DataFilter(WireModel):
    time_range: TimeRange | None = None
    mosaicking_order: MosaickingOrder | None = None
    max_cloud_coverage: float | None = Field(default=None, ge=0, le=100)
    collection_id: str | None = None  # legacy CUSTOM/byoc alias
    # The data types' own filters (docs/collections/): whether a type has one and which values
    # a deployment serves is the STAC mapping's to say (sources/stac.py `check_source`).
    tiers: Literal["TIER_1", "TIER_1_AND_RT", "ALL_TIERS"] | None = None  # Landsat
    acquisition_mode: Literal["SM", "IW", "EW", "WV", "EN", "AN", "IM"] | None = None  # S1
    polarization: Literal["SH", "SV", "DH", "DV", "HH", "HV", "VV", "VH"] | None = None  # S1
    resolution: Literal["HIGH", "MEDIUM", "FULL"] | None = None  # S1
    orbit_direction: Literal["ASCENDING", "DESCENDING"] | None = None  # S1
    timeliness: (
        Literal[
            "NRT10m",
            "NRT1h",
            "NRT3h",
            "Fast24h",
            "Offline",
            "Reprocessing",
            "ArchNormal",
            "NRTI",
            "OFFL",
            "RPRO",
        ]
        | None
    ) = None  # S1 (S5P: NRTI, OFFL, RPRO)
    dem_instance: DemInstance | None = None  # DEM
    constellation: Literal["SENTINEL", "LANDSAT"] | None = None  # HLS


class SpeckleFilter(WireModel):
    type: Literal["NONE", "LEE"]
    window_size_x: int | None = Field(default=None, ge=1, le=7)
    window_size_y: int | None = Field(default=None, ge=1, le=7)


class Processing(WireModel):
    upsampling: Resampling | None = None
    downsampling: Resampling | None = None
    harmonize_values: bool | None = None
    # Sentinel-1 and DEM processing (docs/collections/sentinel-1-grd.md, dem.md)
    back_coeff: (
        Literal["BETA0", "SIGMA0_ELLIPSOID", "GAMMA0_ELLIPSOID", "GAMMA0_TERRAIN"] | None
    ) = None
    orthorectify: bool | None = None
    dem_instance: DemInstance | None = None
    radiometric_terrain_oversampling: float | None = Field(default=None, ge=1, le=4)
    speckle_filter: SpeckleFilter | None = None
    egm: bool | None = None
    clamp_negative: bool | None = None


class DataSource(WireModel):
    type: str = Field(min_length=1)
    id: str | None = None
    data_filter: DataFilter | None = None
    processing: Processing | None = None


class BoundsProperties(WireModel):
    crs: str | None = None


class Bounds(WireModel):
    bbox: list[float] | None = None
    geometry: dict[str, Any] | None = None
    properties: BoundsProperties | None = None


class ProcessInput(WireModel):
    bounds: Bounds | None = None
    data: list[DataSource] = Field(min_length=1)


class Format(WireModel):
    type: Literal["image/tiff", "application/json", "zarr/array"]


class Response(WireModel):
    identifier: str = Field(min_length=1)
    format: Format


class ProcessOutput(WireModel):
    responses: list[Response] = Field(min_length=1)


class ProcessRequest(WireModel):
    evalscript: str | None = None
    input: ProcessInput
    output: ProcessOutput


class TilingGridInput(WireModel):
    type: Literal["tiling-grid"]
    id: int
    resolution: float = Field(gt=0)
    buffer_x: int | None = None
    buffer_y: int | None = None


class GeoPackageDefaults(WireModel):
    width: int | None = Field(default=None, ge=1, le=3500)
    height: int | None = Field(default=None, ge=1, le=3500)
    resolution: float | None = Field(default=None, gt=0)


class GeoPackageInput(WireModel):
    type: Literal["geopackage"]
    features: ObjectStorage
    defaults: GeoPackageDefaults | None = None


class CogParameters(WireModel):
    overview_levels: list[Annotated[int, Field(ge=2)]] | None = None
    overview_min_size: int | None = Field(default=None, ge=1)
    resampling_algorithm: (
        Literal[
            "nearest",
            "average",
            "gauss",
            "cubic",
            "cubicspline",
            "lanczos",
            "average_magphase",
            "mode",
        ]
        | None
    ) = None
    blockxsize: int | None = Field(default=None, ge=16, le=4096)
    blockysize: int | None = Field(default=None, ge=16, le=4096)
    use_predictor: bool | None = None


class RasterOutput(WireModel):
    type: Literal["raster"]
    delivery: ObjectStorage
    overwrite: bool = False
    skip_existing: bool = False
    cog_output: bool = False
    cog_parameters: CogParameters | None = None
    create_collection: bool = False
    collection_id: str | None = None


class ZarrCoordinates(WireModel):
    origin: Literal["topLeft", "bottomLeft"] = "topLeft"


class ZarrGroup(WireModel):
    zarr_format: int = Field(validation_alias=AliasChoices("zarr_format", "zarrFormat"))
    coordinates: ZarrCoordinates | None = None
    custom_attributes: dict[str, Any] | None = None


class ZarrOutput(WireModel):
    type: Literal["zarr"]
    delivery: ObjectStorage
    group: ZarrGroup
    # sentinelhub-py sends the singular `arrayParameter`; accept both.
    array_parameters: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("arrayParameters", "arrayParameter")
    )
    array_overrides: dict[str, dict[str, Any]] | None = None


class BatchRequest(WireModel):
    """`BatchV2ProcessRequest`: what a client posts to create a task."""

    process_request: ProcessRequest
    input: Annotated[TilingGridInput | GeoPackageInput, Field(discriminator="type")]
    output: Annotated[RasterOutput | ZarrOutput, Field(discriminator="type")]
    # sentinelhub-py < 3.11.3 sent `instance_type`.
    instance_type: Literal["normal", "large"] | None = Field(
        default=None, validation_alias=AliasChoices("instanceType", "instance_type")
    )
    description: str | None = None


class DescriptionUpdate(WireModel):
    description: str | None = None
