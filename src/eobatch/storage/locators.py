"""`open_location`: a request's storage locator (`{"s3": {...}}` or `{"gs": {...}}`) checked
and turned into a `Location`; `redact_locator`: the same locator fit to be shown."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from typing import Any
from urllib.parse import urlsplit

from eobatch.config import Settings
from eobatch.errors import InvalidRequest
from eobatch.sealing import SECRET_FIELDS, keyring_for, open_secrets
from eobatch.storage.location import Location, clean_key

# S3 bucket naming rules, relaxed to what S3-compatible servers and folders accept.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$", re.IGNORECASE)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


def open_location(locator: dict[str, Any], settings: Settings, parameter: str) -> Location:
    """The `Location` an `ObjectStorageInfoV2` locator (`{"s3": {...}}` or `{"gs": {...}}`)
    points to.

    Checks that the bucket exists and is accessible; raises `InvalidRequest` at `parameter`.
    `file://` URLs are refused: a client must not reach arbitrary folders of the server.
    Sealed credentials (as the store keeps them) are opened here, where they are used.
    """
    locator = open_secrets(locator, keyring_for(settings))
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
        root = bucket_dir / prefix if prefix else bucket_dir
        return _checked(Location(url=canonical, local_root=str(root), region=region), parameter)

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
    return _checked(location, parameter)


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
    return _checked(location, parameter)


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
        prefix = clean_key(parts.path, allow_empty=True)
    except ValueError:
        raise InvalidRequest.at(
            where, f"'{url}' must not contain '.' or '..' path components"
        ) from None
    return bucket, prefix


def _checked(location: Location, parameter: str) -> Location:
    """`location` if its bucket exists and is accessible; `InvalidRequest` at `parameter` else."""
    problem = location._backend().problem()
    if problem is not None:
        raise InvalidRequest.at(parameter, problem)
    return location


def redact_locator(locator: dict[str, Any]) -> dict[str, Any]:
    """A copy of a storage locator with every credential replaced by `***` (url, region kept)."""
    redacted = copy.deepcopy(locator)
    for kind in redacted.values():
        if isinstance(kind, dict):
            for name in kind:
                if name in SECRET_FIELDS and kind[name] is not None:
                    kind[name] = "***"
    return redacted
