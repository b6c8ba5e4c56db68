"""`Location`: a folder of a bucket (or of the local file system) that keys are relative to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from eobatch.storage.backends import Backend, backend_for


@dataclass(frozen=True)
class Location:
    """A folder of an object store (or of the local file system) that keys are relative to.

    Picklable and cheap: it holds only configuration; the live client is created lazily and cached
    per process (backends.py), so a `Location` can travel to Dask workers. Every key is checked
    here, once, before any backend sees it.
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
        key = clean_key(key, allow_empty=True)
        if not key:
            return self
        local_root = str(Path(self.local_root) / key) if self.local_root is not None else None
        return replace(self, url=f"{self.url}/{key}", local_root=local_root)

    def url_for(self, key: str) -> str:
        """The user-facing URL of `key`, e.g. `s3://bucket/prefix/key`."""
        return f"{self.url}/{clean_key(key)}"

    def gdal_path(self, key: str) -> str:
        """A path GDAL opens (with `gdal_options()`): a local file path or `/vsis3/bucket/key`."""
        return self._backend().gdal_path(clean_key(key))

    def gdal_options(self) -> dict[str, str]:
        """`rasterio.Env(**options)` keywords needed to read `gdal_path()`s; empty for local files.

        Credentials are given as rasterio's session keywords (`aws_access_key_id`, ...), so
        the options only work through `rasterio.Env`, not as raw GDAL config options.
        """
        return self._backend().gdal_options()

    def credentials(self) -> tuple[str | None, str | None, str | None]:
        """(access key, secret key, session token) for S3 requests.

        With a role ARN these are temporary credentials from STS `AssumeRole`, requested with
        the location's key pair and renewed before they expire; otherwise the key pair itself.
        """
        from eobatch.storage.backends import s3_credentials

        return s3_credentials(self)

    # -- I/O -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing any object there (atomically for local files)."""
        self._backend().put(clean_key(key), data)

    def put_file(self, key: str, source: Path) -> None:
        """Write the file `source` at `key` as `put` does, streamed from disk (a large manifest
        is never held in memory whole; S3 gets it in multipart pieces)."""
        self._backend().put_file(clean_key(key), source)

    def get(self, key: str) -> bytes:
        """The bytes at `key`; raises `FileNotFoundError` if there is no such object."""
        key = clean_key(key)
        try:
            return self._backend().get(key)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url_for(key)} does not exist") from None

    def exists(self, key: str) -> bool:
        """Whether an object exists at `key`."""
        return self._backend().exists(clean_key(key))

    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to this location) of all objects below the folder `prefix`, sorted."""
        return sorted(self._backend().keys(clean_key(prefix, allow_empty=True)))

    def delete(self, key: str) -> None:
        """Remove the object at `key`; nothing happens if there is none."""
        self._backend().delete(clean_key(key))

    def _backend(self) -> Backend:
        return backend_for(self)


def clean_key(key: str, allow_empty: bool = False) -> str:
    """`key` as '/'-joined components; refuses components that could leave the location."""
    parts = [p for p in str(key).split("/") if p]
    for part in parts:
        if part in (".", "..") or "\x00" in part or "\\" in part:
            raise ValueError(f"invalid object key {key!r}: '.', '..', '\\' and NUL are not allowed")
    if not parts and not allow_empty:
        raise ValueError("an object key must not be empty")
    return "/".join(parts)
