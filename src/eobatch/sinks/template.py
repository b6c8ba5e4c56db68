"""Delivery path templates of raster outputs (batch-v2-api.md §4.4).

A delivery URL is either a plain prefix, `s3://bucket/folder`, which means the default layout
`s3://bucket/folder/<requestId>/<tileName>/<outputId>.<format>`, or a template with placeholders,
e.g. `s3://bucket/folder/<tileName>/<outputId>-<requestId>.<format>`.

The *root* of a delivery is the URL up to the first path segment holding a placeholder: the
bookkeeping files (request JSON, feature manifest, execution database) go there, and every output
key is relative to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from eobatch.errors import InvalidRequest

PLACEHOLDERS = ("requestId", "tileName", "tileId", "outputId", "format")
DEFAULT_LAYOUT = "<requestId>/<tileName>/<outputId>.<format>"
_PLACEHOLDER = re.compile(r"<([^<>]*)>")


@dataclass(frozen=True)
class DeliveryTemplate:
    """Where each output file of each feature goes, relative to the delivery root."""

    url: str  # the delivery URL as given (trailing '/' removed)
    root: str  # e.g. s3://bucket/folder: bookkeeping files and outputs below it
    pattern: (
        str  # the key template relative to `root`, e.g. <requestId>/<tileName>/<outputId>.<format>
    )

    @classmethod
    def parse(cls, url: str, output_ids: list[str], parameter: str) -> DeliveryTemplate:
        """Check a delivery URL for the given output identifiers; raises `InvalidRequest`."""
        parts = urlsplit(url)
        if not parts.scheme or not url.startswith(f"{parts.scheme}://"):
            raise InvalidRequest.at(parameter, f"'{url}' is not a URL like s3://bucket/folder")
        bucket, _, path = url[len(parts.scheme) + 3 :].partition("/")
        if not bucket:
            raise InvalidRequest.at(parameter, f"'{url}' has no bucket name")
        if "<" in bucket or ">" in bucket:
            raise InvalidRequest.at(
                parameter, f"placeholders are not allowed in the bucket name of '{url}'"
            )
        base = f"{parts.scheme}://{bucket}"
        segments = path.split("/")
        if "<" not in path and ">" not in path:
            folder = path.strip("/")
            root = f"{base}/{folder}" if folder else base
            return cls(url=url.rstrip("/"), root=root, pattern=DEFAULT_LAYOUT)

        _check_placeholders(url, path, output_ids, parameter)
        if path.endswith("/") or not segments[-1]:
            raise InvalidRequest.at(
                parameter,
                f"the template '{url}' must end with a file name, e.g. .../<outputId>.<format>",
            )
        first = next(i for i, s in enumerate(segments) if "<" in s or ">" in s)
        fixed = [s for s in segments[:first] if s]
        pattern_segments = segments[first:]
        if any(not s for s in pattern_segments):
            raise InvalidRequest.at(parameter, f"the template '{url}' has an empty path segment")
        root = "/".join([base, *fixed])
        return cls(url=url, root=root, pattern="/".join(pattern_segments))

    def key(self, request_id: str, tile_name: str, tile_id: int, output_id: str, fmt: str) -> str:
        """The object key, relative to `root`, of one output of one feature."""
        values = {
            "requestId": request_id,
            "tileName": tile_name,
            "tileId": str(tile_id),
            "outputId": output_id,
            "format": fmt,
        }
        return _PLACEHOLDER.sub(lambda m: values[m[1]], self.pattern)


def _check_placeholders(url: str, path: str, output_ids: list[str], parameter: str) -> None:
    names = _PLACEHOLDER.findall(path)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise InvalidRequest.at(
            parameter,
            f"unknown placeholder(s) {', '.join(f'<{n}>' for n in unknown)} in '{url}'; allowed: "
            + ", ".join(f"<{n}>" for n in PLACEHOLDERS),
        )
    leftover = _PLACEHOLDER.sub("", path)
    if "<" in leftover or ">" in leftover:
        raise InvalidRequest.at(
            parameter, f"unbalanced '<' or '>' in '{url}'; placeholders look like <tileName>"
        )
    if "tileName" not in names and "tileId" not in names:
        raise InvalidRequest.at(
            parameter,
            f"the template '{url}' must contain <tileName> or <tileId>, or every feature would "
            "write the same file",
        )
    if len(set(output_ids)) > 1 and "outputId" not in names:
        raise InvalidRequest.at(
            parameter,
            f"the template '{url}' must contain <outputId> because the request has "
            f"{len(set(output_ids))} outputs ({', '.join(sorted(set(output_ids)))})",
        )
