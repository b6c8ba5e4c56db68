"""Integration fixtures: an S3-compatible server (moto) on loopback and fresh buckets on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET, start_moto_server

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1, shared by the whole session."""
    endpoint, stop = start_moto_server()
    yield endpoint
    stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """The name of a new, empty bucket on the moto server (credentials testing/testing)."""
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
    client.create_bucket(Bucket=name)
    return name
