"""One settings object for the whole service, read from `EOBATCH_*` environment variables."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as `EOBATCH_<FIELD>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="EOBATCH_", extra="ignore")

    data_dir: Path = Field(default=Path("eobatch-data"), description="Root of all embedded state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data directory."
    )
    dask_scheduler: str | None = Field(
        default=None, description="Address of an existing Dask scheduler; default: LocalCluster."
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    s3_endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint for s3:// locators; unset: s3://<bucket> is the local "
        "folder <data_dir>/buckets/<bucket>.",
    )
    s3_access_key: str | None = Field(default=None, description="Deployment S3 key (BYOC reads).")
    s3_secret_key: str | None = None
    sts_endpoint: str | None = Field(
        default=None,
        description="STS endpoint for iamRoleARN delivery (assume-role with the deployment key "
        "pair); default: the S3 endpoint (S3-compatible servers such as MinIO and moto serve "
        "STS there).",
    )
    gcs_endpoint: str | None = Field(
        default=None,
        description="GCS JSON API endpoint for gs:// locators (an emulator: requests are then "
        "anonymous); default: Google Cloud Storage with the locator's service account.",
    )
    stac_source: str = Field(
        default="https://earth-search.aws.element84.com/v1",
        description="STAC source of sentinel-2-l1c/l2a: a STAC API URL or a local "
        "stac-geoparquet file (docs/collections.md).",
    )
    stac_mapping: Path | None = Field(
        default=None,
        description="JSON file mapping data types to STAC collections, assets and units; "
        "default: the built-in mapping for Earth Search v1.",
    )
    cloud: str = Field(default="aws", description="Cloud the deployment runs in (aws or gcp).")
    region: str = Field(default="eu-central-1", description="Region the deployment runs in.")
    jwt_secret: str | None = Field(
        default=None,
        description="Key that signs access tokens; default: generated once and kept in the "
        "store, so every replica on the same database shares it.",
    )
    token_lifetime_s: int = Field(default=3600, ge=60)
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Feature jobs in flight per controller; default 2 x the Dask cluster's "
        "worker threads.",
    )
    feature_attempts: int = Field(
        default=3, ge=1, description="Attempts before a feature is FATAL."
    )
    execution_db_interval_s: float = Field(default=30.0, gt=0)
    # Measured in benchmarks/write.py (docs/outputs.md): ZSTD level 1 with a predictor encodes
    # several times faster than DEFLATE-6 at a similar size; GDAL >= 2.3 and QGIS read it.
    output_compression: Literal["ZSTD", "DEFLATE", "LZW", "NONE"] = Field(
        default="ZSTD", description="Codec of GeoTIFF/COG tiles."
    )
    output_compression_level: int | None = Field(
        default=1, ge=1, le=22, description="ZSTD (1-22) or DEFLATE (1-9) level; unset: default."
    )
    output_threads: int = Field(default=2, ge=1, description="GDAL threads per output encode.")
    controller_poll_s: float = Field(default=0.5, gt=0)
    lease_s: float = Field(default=30.0, gt=0, description="Controller lease on a task.")
    controller_stall_s: float = Field(
        default=300.0,
        gt=0,
        description="A controller loop without a finished round for this long is stuck: it is "
        "reported not ready and stops renewing its leases, so another replica takes over.",
    )
    dashboard_address: str = Field(
        default="127.0.0.1:8787",
        description="Where the LocalCluster serves the Dask dashboard ('' for none); with "
        "EOBATCH_DASK_SCHEDULER the scheduler serves it.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or one JSON object per line."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    script_timeout_s: float = Field(default=120.0, gt=0, description="CPU time per feature script.")
    script_heap_mb: int = Field(default=2048, ge=64, description="V8 heap cap per worker.")
    restart_lock_s: float = Field(default=1800.0, ge=0, description="No restart after a user stop.")
    min_balance_pu: float = Field(default=1000.0, ge=0, description="Balance needed to create.")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'eobatch.sqlite').resolve()}"

    @cached_property
    def buckets_dir(self) -> Path:
        """Folder holding the local-folder buckets of the embedded default."""
        return (self.data_dir / "buckets").resolve()
