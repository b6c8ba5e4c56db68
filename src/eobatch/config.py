"""One settings object for the whole service, read from `EOBATCH_*` environment variables."""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "EOBATCH_"
DATABASES = ("sqlite", "postgresql")


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as `EOBATCH_<FIELD>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
        description="Catalogue of the STAC data types whose mapping names none: a STAC API URL "
        "or a local stac-geoparquet file (docs/collections.md).",
    )
    stac_mapping: Path | None = Field(
        default=None,
        description="JSON file laid over the built-in mapping of data types to STAC catalogues, "
        "collections, assets and units (docs/collections.md).",
    )
    stac_attempts: int = Field(
        default=5, ge=1, description="Attempts at a STAC API page that fails transiently."
    )
    stac_backoff_s: float = Field(
        default=1.0, ge=0, description="First wait before retrying a STAC API page (doubles)."
    )
    cloud: str = Field(default="aws", description="Cloud the deployment runs in (aws or gcp).")
    region: str = Field(default="eu-central-1", description="Region the deployment runs in.")
    jwt_secret: str | None = Field(
        default=None,
        description="Key that signs access tokens; default: generated once and kept in the "
        "store, so every replica on the same database shares it.",
    )
    token_lifetime_s: int = Field(default=3600, ge=60)
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that seal stored credentials and the token-signing key, "
        "separated by commas (the first seals, every one opens: docs/security.md); default: "
        "the key file <data_dir>/secret.key, created with mode 0600.",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Feature jobs in flight per controller; default 2 x the Dask cluster's "
        "worker threads.",
    )
    feature_attempts: int = Field(
        default=3, ge=1, description="Attempts before a feature is FATAL."
    )
    feature_retry_delay_s: float = Field(
        default=15.0,
        ge=0,
        description="Wait before a failed feature's next attempt, doubled for each attempt: a "
        "storage or network outage of a minute does not use up its attempts.",
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
    output_threads: int | None = Field(
        default=None,
        ge=1,
        description="GDAL threads per output encode; default: the local cluster's share of the "
        "CPU cores (cores / workers, at least 1), or 2 on a remote Dask cluster.",
    )
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
    process_timeout_s: float = Field(
        default=30.0, gt=0, description="Time limit of a Process API request (read and script)."
    )
    restart_lock_s: float = Field(default=1800.0, ge=0, description="No restart after a user stop.")
    min_balance_pu: float = Field(default=1000.0, ge=0, description="Balance needed to create.")
    # Input limits (docs/limits.md): each is refused with a 4xx before any work is done.
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Largest request body; a bigger one is refused (413) while it streams in.",
    )
    max_features: int = Field(
        default=700_000,
        ge=1,
        description="Most features one task may have (estimated at create, counted at analysis).",
    )
    max_path_bytes: int = Field(
        default=1024,
        ge=64,
        description="Longest object path (delivery URL, GeoPackage URL, BYOC tile path), UTF-8.",
    )
    max_name_bytes: int = Field(
        default=255,
        ge=16,
        description="Longest part of a path (a folder or file name), UTF-8.",
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError("not a database URL") from None
        if backend not in DATABASES:
            raise ValueError(f"the {backend} database is not supported")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'eobatch.sqlite').resolve()}"

    @property
    def resolved_output_threads(self) -> int:
        """Threads per encode that keep local workers from competing for the same cores."""
        if self.output_threads is not None:
            return self.output_threads
        if self.dask_scheduler:
            return 2
        return max(1, (os.cpu_count() or 1) // self.workers)

    @cached_property
    def buckets_dir(self) -> Path:
        """Folder holding the local-folder buckets of the embedded default."""
        return (self.data_dir / "buckets").resolve()


_SECRET_SETTINGS = frozenset({"secret_key", "jwt_secret", "s3_secret_key"})


class SettingsError(Exception):
    """Settings that cannot be used; the message names each variable and what it allows."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `overrides` (command-line options); raises
    `SettingsError` with one line per bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            value = os.environ.get(ENV_PREFIX + name.upper(), error.get("input"))
            if name in _SECRET_SETTINGS:  # an error message must not show a secret
                value = "***"
            allowed = f"; allowed: {allowed_values(name)}" if name in Settings.model_fields else ""
            reason = error["msg"].removeprefix("Value error, ")
            lines.append(f"{ENV_PREFIX}{name.upper()}={value!r}: {reason}{allowed}")
        raise SettingsError("\n".join(lines)) from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each `EOBATCH_*` variable that is no setting (a typo is otherwise ignored
    silently), with the setting it most likely meant."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    warnings = []
    for name in sorted(os.environ if environ is None else environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]}?" if close else "; see the settings in README.md"
        warnings.append(f"{name} is not an eobatch setting and is ignored{hint}")
    return warnings


def allowed_values(name: str) -> str:
    """What the setting `name` accepts, in words: its type and bounds (e.g. 'an integer >= 1')."""
    if name == "database_url":
        return "sqlite:///<file> or postgresql+psycopg://<user>@<host>/<database>"
    field = Settings.model_fields[name]
    annotation = field.annotation
    kinds = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
    words = [
        "one of " + ", ".join(map(str, typing.get_args(kind)))
        if typing.get_origin(kind) is Literal
        else _KINDS.get(kind, getattr(kind, "__name__", str(kind)))
        for kind in kinds
    ]
    bounds = [
        f"{symbol} {getattr(rule, attribute)}"
        for rule in field.metadata
        for cls, attribute, symbol in _BOUNDS
        if isinstance(rule, cls)
    ]
    return " ".join([" or ".join(words), " and ".join(bounds)]).strip()


_KINDS: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    str: "text",
    Path: "a path",
    bool: "true or false",
    SecretStr: "Fernet keys separated by commas",
}
_BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)
