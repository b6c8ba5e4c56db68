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

import base64
import binascii
import contextlib
import copy
import json
import os
import re
import tempfile
import threading
import time
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
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
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
    role_arn: str | None = None  # S3: assume this role through STS with the key pair above
    sts_endpoint: str | None = None
    role_session: str = "eobatch"
    gcs_credentials: str | None = field(default=None, repr=False)  # service-account JSON text
    gcs_endpoint: str | None = None  # GCS JSON API endpoint; None: Google's

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
    def is_gcs(self) -> bool:
        return self.url.startswith("gs://") and not self.is_local

    @property
    def cloud(self) -> str | None:
        """The cloud holding the objects ("aws" for S3, "gcp" for GCS); None for local folders."""
        if self.is_local:
            return None
        return "gcp" if self.is_gcs else "aws"

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
        if self.is_gcs:
            return f"/vsigs/{self.bucket}/{self._object_key(key)}"
        return f"/vsis3/{self.bucket}/{self._object_key(key)}"

    def gdal_options(self) -> dict[str, str]:
        """`rasterio.Env(**options)` keywords needed to read `gdal_path()`s; empty for local files.

        Credentials are given as rasterio's session keywords (`aws_access_key_id`, ...), so
        the options only work through `rasterio.Env`, not as raw GDAL config options.
        """
        if self.local_root is not None:
            return {}
        if self.is_gcs:
            if self.gcs_endpoint:  # an emulator: unsigned requests to its XML API
                return REMOTE_READS | {
                    "CPL_GS_ENDPOINT": f"{self.gcs_endpoint}/",
                    "GS_NO_SIGN_REQUEST": "YES",
                }
            info = json.loads(self.gcs_credentials or "{}")
            return REMOTE_READS | {
                "GS_OAUTH2_PRIVATE_KEY": info.get("private_key", ""),
                "GS_OAUTH2_CLIENT_EMAIL": info.get("client_email", ""),
                "GS_NO_SIGN_REQUEST": "NO",
            }
        assert self.endpoint is not None
        endpoint = urlsplit(self.endpoint)
        options = REMOTE_READS | {
            "AWS_S3_ENDPOINT": (endpoint.netloc + endpoint.path).rstrip("/"),
            "AWS_HTTPS": "NO" if endpoint.scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_SESSION_TOKEN": "",
            "CPL_AWS_AUTODETECT_EC2": "NO",
            "CPL_AWS_EC2_API_ROOT_URL": _NO_METADATA,
        }
        access_key, secret_key, token = self.credentials()
        if access_key and secret_key:
            if rasterio.session.boto3 is None:
                raise RuntimeError("reading rasters from S3 with credentials needs boto3 installed")
            # rasterio refuses GDAL's AWS_ACCESS_KEY_ID option; these keywords make it build an
            # AWSSession that sets GDAL's credential options from exactly these values.
            options |= {
                "aws_access_key_id": access_key,
                "aws_secret_access_key": secret_key,
                "region_name": self.region,
                "AWS_NO_SIGN_REQUEST": "NO",
            }
            if token:
                options["aws_session_token"] = token
                options["AWS_SESSION_TOKEN"] = token
        else:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        return options

    # -- I/O -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing any object there (atomically for local files)."""
        key = _clean_key(key)
        if self.is_gcs:
            self._gcs().blob(self._object_key(key)).upload_from_string(data)
            return
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
            os.chmod(temp, _FILE_MODE)  # mkstemp makes it private; deliveries are plain files
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """The bytes at `key`; raises `FileNotFoundError` if there is no such object."""
        key = _clean_key(key)
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            try:
                return self._gcs().blob(self._object_key(key)).download_as_bytes()
            except NotFound:
                raise FileNotFoundError(f"{self.url_for(key)} does not exist") from None
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
        if self.is_gcs:
            return bool(self._gcs().blob(self._object_key(key)).exists())
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
        if self.is_gcs:
            folder = f"{base}/" if base else None  # a folder, not every name starting alike
            bucket = self._gcs()
            return sorted(b.name[strip:] for b in bucket.client.list_blobs(bucket, prefix=folder))
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
        if self.is_gcs:
            from google.api_core.exceptions import NotFound

            with contextlib.suppress(NotFound):
                self._gcs().blob(self._object_key(key)).delete()
            return
        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self._store(), self._object_key(key))

    # -- internals ---------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def _store(self) -> S3Store:
        assert self.endpoint is not None, "an S3 location needs an endpoint"
        keys = self.credentials()
        cache_key = (os.getpid(), self.bucket, self.endpoint, self.region, *keys)
        with _STORES_LOCK:
            store = _STORES.get(cache_key)
            if store is None:
                store = _s3_store(self, max_retries=5, retry_timeout_s=120)
                _STORES[cache_key] = store
        return store

    def credentials(self) -> tuple[str | None, str | None, str | None]:
        """(access key, secret key, session token) for S3 requests.

        With a role ARN these are temporary credentials from STS `AssumeRole`, requested with
        the location's key pair and renewed before they expire; otherwise the key pair itself.
        """
        if not self.role_arn:
            return self.access_key, self.secret_key, None
        return _assumed_role(self)

    def _gcs(self) -> Any:
        """The google-cloud-storage bucket of this location, cached per process."""
        cache_key = (os.getpid(), "gs", self.bucket, self.gcs_endpoint, self.gcs_credentials)
        with _STORES_LOCK:
            bucket = _STORES.get(cache_key)
            if bucket is None:
                bucket = _STORES[cache_key] = _gcs_bucket(self)
        return bucket


_STORES: dict[tuple[Any, ...], S3Store] = {}
_STORES_LOCK = threading.Lock()


_ROLES: dict[tuple[Any, ...], tuple[float, tuple[str, str, str]]] = {}
_ROLES_LOCK = threading.Lock()
_ROLE_MARGIN_S = 300.0  # renew temporary credentials this long before they expire


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
    """A google-cloud-storage bucket handle (obstore's GCS client does not agree with the
    emulators on PyPI: see docs/outputs.md); anonymous against a configured emulator."""
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


def _s3_store(location: Location, max_retries: int, retry_timeout_s: float) -> S3Store:
    """A new obstore client of the location's bucket (no prefix: keys are full object keys)."""
    assert location.endpoint is not None
    config: dict[str, Any] = {
        "endpoint": location.endpoint,
        "region": location.region,
        "virtual_hosted_style_request": False,
        "metadata_endpoint": _NO_METADATA,
    }
    access_key, secret_key, token = location.credentials()
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
            "timeout": "300s",
        },
        retry_config={
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout_s),
        },
    )


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
    """The `Location` an `ObjectStorageInfoV2` locator (`{"s3": {...}}` or `{"gs": {...}}`)
    points to.

    Checks that the bucket exists and is accessible; raises `InvalidRequest` at `parameter`.
    `file://` URLs are refused: a client must not reach arbitrary folders of the server.
    """
    if isinstance(locator.get("gs"), dict):
        return _open_gcs(locator["gs"], settings, parameter)
    s3 = locator.get("s3")
    if not isinstance(s3, dict):
        raise InvalidRequest.at(parameter, "an object storage locator needs an 's3' or 'gs' object")
    where = f"{parameter}->s3->url"
    url = s3.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest.at(where, "is required, e.g. s3://bucket/folder")
    bucket, prefix = _parse_s3_url(url, where)
    canonical = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    access_key, secret_key = s3.get("accessKey"), s3.get("secretAccessKey")
    role_arn = s3.get("iamRoleARN")
    if bool(access_key) != bool(secret_key):
        raise InvalidRequest.at(parameter, "accessKey and secretAccessKey must be given together")
    if role_arn and access_key:
        raise InvalidRequest.at(
            parameter, "give either iamRoleARN or accessKey and secretAccessKey, not both"
        )
    if role_arn is not None and not _ROLE_ARN.match(str(role_arn)):
        raise InvalidRequest.at(
            f"{parameter}->s3->iamRoleARN",
            f"'{role_arn}' is not an IAM role ARN like arn:aws:iam::123456789012:role/name",
        )
    region = s3.get("region") or settings.region

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
        return Location(url=canonical, local_root=str(root), region=region)

    if not access_key:
        # The deployment's key pair: used directly, or to assume the request's role.
        access_key, secret_key = settings.s3_access_key, settings.s3_secret_key
    endpoint = _with_scheme(settings.s3_endpoint)
    location = Location(
        url=canonical,
        endpoint=endpoint,
        region=region,
        access_key=access_key or None,
        secret_key=secret_key or None,
        role_arn=role_arn or None,
        sts_endpoint=_with_scheme(settings.sts_endpoint or settings.s3_endpoint),
    )
    if role_arn:
        try:
            location.credentials()
        except Exception as exc:
            raise InvalidRequest.at(
                f"{parameter}->s3->iamRoleARN",
                f"the role {role_arn} could not be assumed ({type(exc).__name__}); allow this "
                "deployment to assume it (sts:AssumeRole)",
            ) from None
    _check_s3_bucket(location, parameter)
    return location


def _with_scheme(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def _open_gcs(gs: dict[str, Any], settings: Settings, parameter: str) -> Location:
    where = f"{parameter}->gs"
    url = gs.get("url")
    if not isinstance(url, str) or not url.startswith("gs://"):
        raise InvalidRequest.at(f"{where}->url", "is required, e.g. gs://bucket/folder")
    bucket, prefix = _parse_s3_url("s3://" + url.removeprefix("gs://"), f"{where}->url")
    canonical = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
    credentials = gs.get("credentials")
    try:
        info = json.loads(base64.b64decode(str(credentials or ""), validate=True))
    except (binascii.Error, ValueError):
        info = None
    if (
        not isinstance(info, dict)
        or info.get("type") != "service_account"
        or not all(info.get(k) for k in ("client_email", "private_key"))
    ):
        raise InvalidRequest.at(
            f"{where}->credentials",
            "must be the base64 encoding of a service-account key in JSON (type "
            "service_account, with client_email and private_key): cat key.json | base64",
        )
    location = Location(
        url=canonical,
        region=settings.region,
        gcs_credentials=json.dumps(info),
        gcs_endpoint=_with_scheme(settings.gcs_endpoint) if settings.gcs_endpoint else None,
    )
    try:
        location._gcs().reload()  # one metadata call: the bucket exists and is readable
    except Exception as exc:
        text = str(exc)
        if "404" in text or "Not Found" in text:
            reason = f"bucket '{bucket}' not found; create it first"
        elif "403" in text or "401" in text:
            reason = (
                f"access to bucket '{bucket}' denied; the service account needs "
                "storage.objects.create, get, delete and list on it"
            )
        else:
            reason = f"bucket '{bucket}' is not accessible ({type(exc).__name__})"
        raise InvalidRequest.at(parameter, reason) from None
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
