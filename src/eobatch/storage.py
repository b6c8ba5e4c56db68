"""Object storage: Sentinel Hub storage locators turned into `Location`s that read and write keys.

Two kinds of bucket exist behind an `s3://bucket/prefix` URL:

- **embedded mode** (`EOBATCH_S3_ENDPOINT` unset): the bucket is the local folder
  `<data_dir>/buckets/<bucket>`; it must exist (create it with `mkdir`), keys are files below it.
- **S3 mode** (`EOBATCH_S3_ENDPOINT` set): the bucket lives on that S3-compatible endpoint and is
  reached with obstore (and GDAL's `/vsis3/` for raster reads), using the locator's key pair or,
  without one, the deployment's key pair (`EOBATCH_S3_ACCESS_KEY` / `EOBATCH_S3_SECRET_KEY`);
  with no key pair at all requests are anonymous.

No client ever falls back to the cloud's instance-metadata credentials: every one is given explicit
credentials (or anonymous access) and an explicit endpoint.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Before any AWS-shaped client is created: never ask 169.254.169.254 for credentials.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import obstore
import rasterio.session
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store
from rasterio.errors import RasterioDeprecationWarning

from eobatch.config import Settings
from eobatch.errors import InvalidRequest

# `gdal_options()` passes credentials the way rasterio 1.x still supports, with a warning per use.
warnings.filterwarnings(
    "ignore",
    message="Passing abstract session keyword arguments is deprecated",
    category=RasterioDeprecationWarning,
)

_SECRET_KEYS = frozenset({"secretAccessKey", "accessKey", "credentials", "sessionToken"})
# S3 bucket naming rules, relaxed to what S3-compatible servers and folders accept.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$", re.IGNORECASE)
_TEMP_SUFFIX = ".eobatch-partial"
# Where a metadata lookup would go if anything tried one anyway: a closed loopback port.
_NO_METADATA = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Location:
    """A folder of an object store (or of the local file system) that keys are relative to.

    Picklable and cheap: it holds only configuration, the live client is created lazily and cached
    per process, so a `Location` can travel to Dask workers.
    """

    url: str  # user-facing: s3://bucket/prefix (either kind of bucket) or file:///abs/path
    local_root: str | None = None  # absolute folder for local buckets; None for S3
    endpoint: str | None = None  # S3 endpoint URL with scheme, e.g. http://127.0.0.1:9000
    region: str = "us-east-1"
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @classmethod
    def local(cls, path: str | os.PathLike[str]) -> Location:
        """A folder of the local file system, as a `file://` location."""
        root = Path(path).resolve()
        return cls(url=root.as_uri(), local_root=str(root))

    # -- naming ----------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    @property
    def cloud(self) -> str | None:
        """The cloud holding the objects ("aws" for S3); None for local folders (never remote)."""
        return None if self.is_local else "aws"

    @property
    def bucket(self) -> str:
        """The bucket name (S3 and embedded buckets); empty for `file://` locations."""
        parts = urlsplit(self.url)
        return parts.netloc if parts.scheme != "file" else ""

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, without leading or trailing '/'."""
        return urlsplit(self.url).path.strip("/")

    def child(self, key: str) -> Location:
        """The location of the folder `key` below this one."""
        key = _clean_key(key, allow_empty=True)
        if not key:
            return self
        local_root = str(Path(self.local_root) / key) if self.local_root is not None else None
        return replace(self, url=f"{self.url}/{key}", local_root=local_root)

    def url_for(self, key: str) -> str:
        """The user-facing URL of `key`, e.g. `s3://bucket/prefix/key`."""
        return f"{self.url}/{_clean_key(key)}"

    def gdal_path(self, key: str) -> str:
        """A path GDAL opens (with `gdal_options()`): a local file path or `/vsis3/bucket/key`."""
        key = _clean_key(key)
        if self.local_root is not None:
            return str(Path(self.local_root) / key)
        return f"/vsis3/{self.bucket}/{self._object_key(key)}"

    def gdal_options(self) -> dict[str, str]:
        """`rasterio.Env(**options)` keywords needed to read `gdal_path()`s; empty for local files.

        Credentials are given as rasterio's session keywords (`aws_access_key_id`, ...), so
        the options only work through `rasterio.Env`, not as raw GDAL config options.
        """
        if self.local_root is not None:
            return {}
        assert self.endpoint is not None
        endpoint = urlsplit(self.endpoint)
        options = {
            "AWS_S3_ENDPOINT": (endpoint.netloc + endpoint.path).rstrip("/"),
            "AWS_HTTPS": "NO" if endpoint.scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_SESSION_TOKEN": "",
            "CPL_AWS_AUTODETECT_EC2": "NO",
            "CPL_AWS_EC2_API_ROOT_URL": _NO_METADATA,
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": "3",
            "GDAL_HTTP_RETRY_DELAY": "1",
        }
        if self.access_key and self.secret_key:
            if rasterio.session.boto3 is None:
                raise RuntimeError("reading rasters from S3 with credentials needs boto3 installed")
            # rasterio refuses GDAL's AWS_ACCESS_KEY_ID option; these keywords make it build an
            # AWSSession that sets GDAL's credential options from exactly these values.
            options |= {
                "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key,
                "region_name": self.region,
                "AWS_NO_SIGN_REQUEST": "NO",
            }
        else:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        return options

    # -- I/O -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing any object there (atomically for local files)."""
        key = _clean_key(key)
        if self.local_root is None:
            obstore.put(self._store(), self._object_key(key), data)
            return
        target = Path(self.local_root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=_TEMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """The bytes at `key`; raises `FileNotFoundError` if there is no such object."""
        key = _clean_key(key)
        if self.local_root is None:
            return bytes(obstore.get(self._store(), self._object_key(key)).bytes())
        path = Path(self.local_root) / key
        if not path.is_file():
            raise FileNotFoundError(f"{self.url_for(key)} does not exist")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        """Whether an object exists at `key`."""
        key = _clean_key(key)
        if self.local_root is not None:
            return (Path(self.local_root) / key).is_file()
        try:
            obstore.head(self._store(), self._object_key(key))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to this location) of all objects below the folder `prefix`, sorted."""
        prefix = _clean_key(prefix, allow_empty=True)
        if self.local_root is not None:
            root = Path(self.local_root)
            folder = root / prefix
            if not folder.is_dir():
                return []
            return sorted(
                path.relative_to(root).as_posix()
                for path in folder.rglob("*")
                if path.is_file() and not path.name.endswith(_TEMP_SUFFIX)
            )
        base = self._object_key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = [
            meta["path"][strip:]
            for chunk in obstore.list(self._store(), prefix=base or None)
            for meta in chunk
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove the object at `key`; nothing happens if there is none."""
        key = _clean_key(key)
        if self.local_root is not None:
            (Path(self.local_root) / key).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self._store(), self._object_key(key))

    # -- internals ---------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def _store(self) -> S3Store:
        assert self.endpoint is not None, "an S3 location needs an endpoint"
        cache_key = (
            os.getpid(),
            self.bucket,
            self.endpoint,
            self.region,
            self.access_key,
            self.secret_key,
        )
        with _STORES_LOCK:
            store = _STORES.get(cache_key)
            if store is None:
                store = _s3_store(self, max_retries=5, retry_timeout_s=120)
                _STORES[cache_key] = store
        return store


_STORES: dict[tuple[Any, ...], S3Store] = {}
_STORES_LOCK = threading.Lock()


def _s3_store(location: Location, max_retries: int, retry_timeout_s: float) -> S3Store:
    """A new obstore client of the location's bucket (no prefix: keys are full object keys)."""
    assert location.endpoint is not None
    config: dict[str, Any] = {
        "endpoint": location.endpoint,
        "region": location.region,
        "virtual_hosted_style_request": False,
        "metadata_endpoint": _NO_METADATA,
    }
    if location.access_key and location.secret_key:
        config |= {
            "access_key_id": location.access_key,
            "secret_access_key": location.secret_key,
        }
    else:
        config["skip_signature"] = True
    return S3Store(
        location.bucket,
        config=config,  # type: ignore[arg-type]
        client_options={
            "allow_http": location.endpoint.startswith("http://"),
            "connect_timeout": "5s",
            "timeout": "300s",
        },
        retry_config={
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout_s),
        },
    )


def _clean_key(key: str, allow_empty: bool = False) -> str:
    """`key` as '/'-joined components; refuses components that could leave the location."""
    parts = [p for p in str(key).split("/") if p]
    for part in parts:
        if part in (".", "..") or "\x00" in part or "\\" in part:
            raise ValueError(f"invalid object key {key!r}: '.', '..', '\\' and NUL are not allowed")
    if not parts and not allow_empty:
        raise ValueError("an object key must not be empty")
    return "/".join(parts)


def open_location(locator: dict[str, Any], settings: Settings, parameter: str) -> Location:
    """The `Location` an `ObjectStorageInfoV2` locator (`{"s3": {...}}`) points to.

    Checks that the bucket exists and is accessible; raises `InvalidRequest` at `parameter`.
    `file://` URLs are refused: a client must not reach arbitrary folders of the server.
    """
    if "gs" in locator and locator.get("gs") is not None:
        raise InvalidRequest.at(
            f"{parameter}->gs", "GCS storage (gs) is not supported by this server yet; use s3"
        )
    s3 = locator.get("s3")
    if not isinstance(s3, dict):
        raise InvalidRequest.at(parameter, "an object storage locator needs an 's3' object")
    where = f"{parameter}->s3->url"
    url = s3.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest.at(where, "is required, e.g. s3://bucket/folder")
    bucket, prefix = _parse_s3_url(url, where)
    canonical = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    access_key, secret_key = s3.get("accessKey"), s3.get("secretAccessKey")
    if bool(access_key) != bool(secret_key):
        raise InvalidRequest.at(parameter, "accessKey and secretAccessKey must be given together")

    if settings.s3_endpoint is None:
        bucket_dir = settings.buckets_dir / bucket
        if not bucket_dir.is_dir():
            raise InvalidRequest.at(
                parameter,
                f"bucket '{bucket}' not found: this server keeps buckets as folders under "
                f"{settings.buckets_dir}; create the folder {bucket_dir} (or configure "
                "EOBATCH_S3_ENDPOINT to use an S3 server)",
            )
        root = bucket_dir / prefix if prefix else bucket_dir
        return Location(url=canonical, local_root=str(root), region=settings.region)

    if not access_key:
        # iamRoleARN cannot be assumed here: the deployment's own key pair stands in for the role.
        access_key, secret_key = settings.s3_access_key, settings.s3_secret_key
    endpoint = settings.s3_endpoint.rstrip("/")
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    location = Location(
        url=canonical,
        endpoint=endpoint,
        region=s3.get("region") or settings.region,
        access_key=access_key or None,
        secret_key=secret_key or None,
    )
    _check_s3_bucket(location, parameter)
    return location


def _parse_s3_url(url: str, where: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise InvalidRequest.at(where, f"'{url}' is not an s3:// URL; expected s3://bucket/folder")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidRequest.at(where, f"'{url}' must not contain '?' or '#'")
    bucket = parts.netloc
    if not bucket or not _BUCKET.match(bucket):
        raise InvalidRequest.at(
            where,
            f"'{url}' has no valid bucket name; expected s3://bucket/folder with a bucket name of "
            "letters, digits, '.', '-' and '_'",
        )
    try:
        prefix = _clean_key(parts.path, allow_empty=True)
    except ValueError:
        raise InvalidRequest.at(
            where, f"'{url}' must not contain '.' or '..' path components"
        ) from None
    return bucket, prefix


def _check_s3_bucket(location: Location, parameter: str) -> None:
    """One cheap list call: the bucket must exist and the credentials must allow listing it."""
    store = _s3_store(location, max_retries=1, retry_timeout_s=15)
    try:
        stream = obstore.list(store, prefix=location.prefix or None, chunk_size=1)
        next(iter(stream), None)
    except Exception as exc:
        text = str(exc)
        if "NoSuchBucket" in text or "404 Not Found" in text:
            reason = f"bucket '{location.bucket}' not found on {location.endpoint}; create it first"
        elif isinstance(exc, PermissionDeniedError | UnauthenticatedError) or any(
            s in text for s in ("AccessDenied", "403 Forbidden", "401 Unauthorized")
        ):
            reason = (
                f"access to bucket '{location.bucket}' denied on {location.endpoint}; give an "
                "accessKey and secretAccessKey allowed to list, read and write it"
            )
        else:
            reason = (
                f"bucket '{location.bucket}' is not accessible on {location.endpoint} "
                f"({type(exc).__name__}); check that the bucket exists and the server is reachable"
            )
        raise InvalidRequest.at(parameter, reason) from None


def redact_locator(locator: dict[str, Any]) -> dict[str, Any]:
    """A copy of a storage locator with every credential replaced by `***` (url, region kept)."""
    redacted = copy.deepcopy(locator)
    for kind in redacted.values():
        if isinstance(kind, dict):
            for name in kind:
                if name in _SECRET_KEYS and kind[name] is not None:
                    kind[name] = "***"
    return redacted
