"""Object storage: Sentinel Hub storage locators turned into `Location`s that read and write keys.

Two kinds of bucket exist behind an `s3://bucket/prefix` URL:

- **embedded mode** (`EOBATCH_S3_ENDPOINT` unset): the bucket is the local folder
  `<data_dir>/buckets/<bucket>`; it must exist (create it with `mkdir`), keys are files below it.
- **S3 mode** (`EOBATCH_S3_ENDPOINT` set): the bucket lives on that S3-compatible endpoint and is
  reached with obstore (and GDAL's `/vsis3/` for raster reads), using the locator's key pair or,
  without one, the deployment's key pair (`EOBATCH_S3_ACCESS_KEY` / `EOBATCH_S3_SECRET_KEY`);
  with no key pair at all requests are anonymous.

`gs://bucket/prefix` URLs are Google Cloud Storage buckets, read with a service account.

The modules: `location.py` (the picklable `Location` and its keys), `backends.py` (one class
per kind of store, behind one interface: a new kind of store is one class there) and
`locators.py` (`open_location`: a request's locator checked and turned into a `Location`).

No client ever falls back to the cloud's instance-metadata credentials: every one is given explicit
credentials (or anonymous access) and an explicit endpoint.
"""

from __future__ import annotations

import os

# Before any AWS-shaped client is created: never ask 169.254.169.254 for credentials.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from eobatch.storage.backends import REMOTE_READS
from eobatch.storage.location import Location
from eobatch.storage.locators import open_location, redact_locator

__all__ = ["REMOTE_READS", "Location", "open_location", "redact_locator"]
