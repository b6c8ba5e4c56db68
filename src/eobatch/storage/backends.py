"""One class per kind of object store, behind one interface (`Backend`).

`Location` (location.py) checks every key once and hands the backend keys relative to the
location; a backend maps them to its own objects. Which backend serves a location is decided in
one place, `backend_for`. A new kind of store is one more `Backend` subclass in `_BACKENDS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
import rasterio.session
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store
from rasterio.errors import RasterioDeprecationWarning

if TYPE_CHECKING:
    from eobatch.storage.location import Location

# `gdal_options()` passes credentials the way rasterio 1.x still supports, with a warning per use.
warnings.filterwarnings(
    "ignore",
    message="Passing abstract session keyword arguments is deprecated",
    category=RasterioDeprecationWarning,
)

_TEMP_SUFFIX = ".eobatch-partial"
# Where a metadata lookup would go if anything tried one anyway: a closed loopback port.
_NO_METADATA = "http://127.0.0.1:9"

# GDAL tuned for cloud-optimised files in object storage. rasterio.Env applies these per thread,
# per read, with that location's credentials, so nothing leaks across tenants or threads.
REMOTE_READS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no LIST of the folder on open
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",  # adjacent blocks in one range request
    "GDAL_HTTP_MULTIPLEX": "YES",  # parallel ranges on one connection where HTTP/2 allows
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",  # a COG header in the first request
    "VSI_CACHE": "TRUE",  # re-reads of the same blocks (bands of one file) stay in memory
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def _process_umask() -> int:
    """The umask, read without changing it where Linux tells (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore once, at import
    os.umask(mask)
    return mask


# Files in local-folder buckets get the mode any file written by this process gets.
_FILE_MODE = 0o666 & ~_process_umask()


class Backend(ABC):
    """The objects of one location. Keys are relative to the location and already checked."""

    def __init__(self, location: Location) -> None:
        self.location = location

    @classmethod
    @abstractmethod
    def serves(cls, location: Location) -> bool:
        """Whether this backend is the one for `location`."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Write the file `source` at `key`, streamed from disk."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes at `key`; raises `FileNotFoundError` if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Keys of every object below the folder `prefix` (empty: the whole location)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at `key`; nothing happens if there is none."""

    @abstractmethod
    def gdal_path(self, key: str) -> str: ...

    @abstractmethod
    def gdal_options(self) -> dict[str, str]: ...

    @abstractmethod
    def problem(self) -> str | None:
        """Why the location cannot be used (no such bucket, access denied, ...), or None."""

    def object_key(self, key: str) -> str:
        """The key of `key` inside the bucket."""
        prefix = self.location.prefix
        return f"{prefix}/{key}".strip("/") if prefix else key

    def _relative(self, object_keys: list[str]) -> list[str]:
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        return [k[strip:] for k in object_keys]


class LocalFolder(Backend):
    """A folder of the local file system (embedded buckets, `file://` locations). Writes are
    atomic: a temporary file beside the target, then a rename.

    Plain file operations rather than obstore's LocalStore: LocalStore's listing silently skips
    every file with '#' in its name (its staging-file convention), which a BYOC tile path or a
    user's delivery folder may well hold."""

    @classmethod
    def serves(cls, location: Location) -> bool:
        return location.local_root is not None

    @property
    def root(self) -> Path:
        assert self.location.local_root is not None
        return Path(self.location.local_root)

    def put(self, key: str, data: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=_TEMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(temp, _FILE_MODE)  # mkstemp makes it private; deliveries are plain files
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=_TEMP_SUFFIX
        )
        os.close(fd)
        try:
            shutil.copyfile(source, temp)
            os.chmod(temp, _FILE_MODE)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        path = self.root / key
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return [
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(_TEMP_SUFFIX)
        ]

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def gdal_path(self, key: str) -> str:
        return str(self.root / key)

    def gdal_options(self) -> dict[str, str]:
        return {}

    def problem(self) -> str | None:
        # An embedded bucket is a folder that must exist (created with mkdir); the prefix
        # below it is created on the first write.
        depth = len(Path(self.location.prefix).parts)
        bucket_dir = self.root.parents[depth - 1] if depth else self.root
        if bucket_dir.is_dir():
            return None
        return (
            f"bucket '{self.location.bucket}' not found: this server keeps buckets as folders "
            f"under {bucket_dir.parent}; create the folder {bucket_dir} (or configure "
            "EOBATCH_S3_ENDPOINT to use an S3 server)"
        )


class S3Bucket(Backend):
    """A bucket on an S3-compatible endpoint, through obstore's S3Store (and GDAL's /vsis3/)."""

    @classmethod
    def serves(cls, location: Location) -> bool:
        return location.local_root is None and not location.is_gcs

    def put(self, key: str, data: bytes) -> None:
        obstore.put(self._store(), self.object_key(key), data)

    def put_file(self, key: str, source: Path) -> None:
        obstore.put(self._store(), self.object_key(key), source)  # multipart when large

    def get(self, key: str) -> bytes:
        return bytes(obstore.get(self._store(), self.object_key(key)).bytes())

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self._store(), self.object_key(key))
        except FileNotFoundError:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        base = self.object_key(prefix)
        stream = obstore.list(self._store(), prefix=base or None)
        return self._relative([meta["path"] for chunk in stream for meta in chunk])

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self._store(), self.object_key(key))

    def gdal_path(self, key: str) -> str:
        return f"/vsis3/{self.location.bucket}/{self.object_key(key)}"

    def gdal_options(self) -> dict[str, str]:
        location = self.location
        assert location.endpoint is not None
        endpoint = urlsplit(location.endpoint)
        options = REMOTE_READS | {
            "AWS_S3_ENDPOINT": (endpoint.netloc + endpoint.path).rstrip("/"),
            "AWS_HTTPS": "NO" if endpoint.scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": location.region,
            "AWS_DEFAULT_REGION": location.region,
            "AWS_SESSION_TOKEN": "",
            "CPL_AWS_AUTODETECT_EC2": "NO",
            "CPL_AWS_EC2_API_ROOT_URL": _NO_METADATA,
        }
        access_key, secret_key, token = s3_credentials(location)
        if access_key and secret_key:
            if rasterio.session.boto3 is None:
                raise RuntimeError("reading rasters from S3 with credentials needs boto3 installed")
            # rasterio refuses GDAL's AWS_ACCESS_KEY_ID option; these keywords make it build an
            # AWSSession that sets GDAL's credential options from exactly these values.
            options |= {
                "aws_access_key_id": access_key,
                "aws_secret_access_key": secret_key,
                "region_name": location.region,
                "AWS_NO_SIGN_REQUEST": "NO",
            }
            if token:
                options["aws_session_token"] = token
                options["AWS_SESSION_TOKEN"] = token
        else:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        return options

    def problem(self) -> str | None:
        """One cheap list call: the bucket must exist and the credentials must allow listing."""
        location = self.location
        # A hung server answers nothing: give up in seconds, not after an upload's timeout.
        store = _s3_store(location, max_retries=1, retry_timeout_s=15, timeout_s=15)
        try:
            stream = obstore.list(store, prefix=location.prefix or None, chunk_size=1)
            next(iter(stream), None)
        except Exception as exc:
            text = str(exc)
            if "NoSuchBucket" in text or "404 Not Found" in text:
                return (
                    f"bucket '{location.bucket}' not found on {location.endpoint}; create it first"
                )
            if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or any(
                s in text for s in ("AccessDenied", "403 Forbidden", "401 Unauthorized")
            ):
                return (
                    f"access to bucket '{location.bucket}' denied on {location.endpoint}; give an "
                    "accessKey and secretAccessKey allowed to list, read and write it"
                )
            return (
                f"bucket '{location.bucket}' is not accessible on {location.endpoint} "
                f"({type(exc).__name__}); check that the bucket exists and the server is reachable"
            )
        return None

    def _store(self) -> S3Store:
        location = self.location
        assert location.endpoint is not None, "an S3 location needs an endpoint"
        keys = s3_credentials(location)
        cache_key = (os.getpid(), location.bucket, location.endpoint, location.region, *keys)
        with _CLIENTS_LOCK:
            store = _CLIENTS.get(cache_key)
            if store is None:
                store = _CLIENTS[cache_key] = _s3_store(
                    location, max_retries=5, retry_timeout_s=120
                )
        return store


class GCSBucket(Backend):
    """A Google Cloud Storage bucket, through google-cloud-storage (obstore's GCS client does
    not agree with the emulators on PyPI: see docs/outputs.md) and GDAL's /vsigs/."""

    @classmethod
    def serves(cls, location: Location) -> bool:
        return location.is_gcs

    def put(self, key: str, data: bytes) -> None:
        self._bucket().blob(self.object_key(key)).upload_from_string(data)

    def put_file(self, key: str, source: Path) -> None:
        self._bucket().blob(self.object_key(key)).upload_from_filename(str(source))

    def get(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return bytes(self._bucket().blob(self.object_key(key)).download_as_bytes())
        except NotFound:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return bool(self._bucket().blob(self.object_key(key)).exists())

    def keys(self, prefix: str) -> list[str]:
        base = self.object_key(prefix)
        under = f"{base}/" if base else None  # a folder, not every name starting alike
        bucket = self._bucket()
        return self._relative([b.name for b in bucket.client.list_blobs(bucket, prefix=under)])

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._bucket().blob(self.object_key(key)).delete()

    def gdal_path(self, key: str) -> str:
        return f"/vsigs/{self.location.bucket}/{self.object_key(key)}"

    def gdal_options(self) -> dict[str, str]:
        location = self.location
        if location.gcs_endpoint:  # an emulator: unsigned requests to its XML API
            return REMOTE_READS | {
                "CPL_GS_ENDPOINT": f"{location.gcs_endpoint}/",
                "GS_NO_SIGN_REQUEST": "YES",
            }
        info = json.loads(location.gcs_credentials or "{}")
        return REMOTE_READS | {
            "GS_OAUTH2_PRIVATE_KEY": info.get("private_key", ""),
            "GS_OAUTH2_CLIENT_EMAIL": info.get("client_email", ""),
            "GS_NO_SIGN_REQUEST": "NO",
        }

    def problem(self) -> str | None:
        bucket = self.location.bucket
        try:
            self._bucket().reload()  # one metadata call: the bucket exists and is readable
        except Exception as exc:
            text = str(exc)
            if "404" in text or "Not Found" in text:
                return f"bucket '{bucket}' not found; create it first"
            if "403" in text or "401" in text:
                return (
                    f"access to bucket '{bucket}' denied; the service account needs "
                    "storage.objects.create, get, delete and list on it"
                )
            return f"bucket '{bucket}' is not accessible ({type(exc).__name__})"
        return None

    def _bucket(self) -> Any:
        """The google-cloud-storage bucket, cached per process; anonymous against an emulator."""
        location = self.location
        cache_key = (
            os.getpid(),
            "gs",
            location.bucket,
            location.gcs_endpoint,
            location.gcs_credentials,
        )
        with _CLIENTS_LOCK:
            bucket = _CLIENTS.get(cache_key)
            if bucket is None:
                bucket = _CLIENTS[cache_key] = _gcs_bucket(location)
        return bucket


_BACKENDS: tuple[type[Backend], ...] = (LocalFolder, GCSBucket, S3Bucket)


def backend_for(location: Location) -> Backend:
    """The backend serving `location`."""
    for backend in _BACKENDS:
        if backend.serves(location):
            return backend(location)
    raise ValueError(f"no storage backend serves {location.url}")


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()

_ROLES: dict[tuple[Any, ...], tuple[float, tuple[str, str, str]]] = {}
_ROLES_LOCK = threading.Lock()
_ROLE_MARGIN_S = 300.0  # renew temporary credentials this long before they expire


def s3_credentials(location: Location) -> tuple[str | None, str | None, str | None]:
    """(access key, secret key, session token): the location's key pair, or with a role ARN
    temporary credentials from STS `AssumeRole` (cached, renewed before they expire)."""
    if not location.role_arn:
        return location.access_key, location.secret_key, None
    return _assumed_role(location)


def _assumed_role(location: Location) -> tuple[str, str, str]:
    import boto3

    cache_key = (os.getpid(), location.role_arn, location.sts_endpoint, location.access_key)
    with _ROLES_LOCK:
        cached = _ROLES.get(cache_key)
        if cached is not None and cached[0] - _ROLE_MARGIN_S > time.time():
            return cached[1]
        sts = boto3.client(
            "sts",
            endpoint_url=location.sts_endpoint,
            region_name=location.region,
            aws_access_key_id=location.access_key,
            aws_secret_access_key=location.secret_key,
        )
        answer = sts.assume_role(RoleArn=location.role_arn, RoleSessionName=location.role_session)
        creds = answer["Credentials"]
        keys = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        _ROLES[cache_key] = (creds["Expiration"].timestamp(), keys)
        return keys


def _gcs_bucket(location: Location) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.oauth2 import service_account

    info = json.loads(location.gcs_credentials or "{}")
    if location.gcs_endpoint:
        credentials: Any = AnonymousCredentials()
        options = ClientOptions(api_endpoint=location.gcs_endpoint)
    else:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
        )
        options = None
    client = storage.Client(
        project=info.get("project_id") or "eobatch", credentials=credentials, client_options=options
    )
    return client.bucket(location.bucket)


def _s3_store(
    location: Location, max_retries: int, retry_timeout_s: float, timeout_s: float = 300
) -> S3Store:
    """A new obstore client of the location's bucket (no prefix: keys are full object keys);
    `timeout_s` bounds each request (uploads of large outputs need minutes)."""
    assert location.endpoint is not None
    config: dict[str, Any] = {
        "endpoint": location.endpoint,
        "region": location.region,
        "virtual_hosted_style_request": False,
        "metadata_endpoint": _NO_METADATA,
    }
    access_key, secret_key, token = s3_credentials(location)
    if access_key and secret_key:
        config |= {"access_key_id": access_key, "secret_access_key": secret_key}
        if token:
            config["session_token"] = token
    else:
        config["skip_signature"] = True
    return S3Store(
        location.bucket,
        config=config,  # type: ignore[arg-type]
        client_options={
            "allow_http": location.endpoint.startswith("http://"),
            "connect_timeout": "5s",
            "timeout": f"{timeout_s:g}s",
        },
        retry_config={
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout_s),
        },
    )
