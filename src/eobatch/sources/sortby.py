"""The STAC API Sort extension of Catalog searches: `sortby` as query text
(`+datetime,-eo:cloud_cover`) or a JSON list (`[{"field": "properties.datetime",
"direction": "desc"}]`, as pystac-client posts it)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from eobatch.errors import InvalidRequest

_TOP_LEVEL = ("id", "collection")
_MAX_KEYS = 8


def parse_sortby(value: Any, sortable: Collection[str]) -> list[tuple[str, bool]]:
    """[(field, descending)], fields named as in the items' `properties` or `id`/`collection`
    (a `properties.` prefix is optional); a field not in `sortable` is a 400 naming them."""
    if value is None or value == "" or value == []:
        return []
    keys: list[tuple[str, bool]] = []
    if isinstance(value, str):
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            descending = part.startswith("-")
            keys.append((part.lstrip("+-").strip(), descending))
    elif isinstance(value, list):
        for entry in value:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("field"), str):
                raise InvalidRequest.at("sortby", 'is a list of {"field": ..., "direction": ...}')
            direction = entry.get("direction", "asc")
            if direction not in ("asc", "desc"):
                raise InvalidRequest.at("sortby", f"direction '{direction}' is not asc or desc")
            keys.append((entry["field"], direction == "desc"))
    else:
        raise InvalidRequest.at("sortby", "is '+field,-field' text or a list of field objects")
    if len(keys) > _MAX_KEYS:
        raise InvalidRequest.at("sortby", f"sorts by at most {_MAX_KEYS} fields")
    named = []
    for field, descending in keys:
        name = field.removeprefix("properties.")
        if name not in _TOP_LEVEL and name not in sortable:
            allowed = ", ".join([*_TOP_LEVEL, *sortable])
            raise InvalidRequest.at("sortby", f"'{field}' cannot be sorted by; allowed: {allowed}")
        named.append((name, descending))
    return named


def sort_items(items: list[dict[str, Any]], keys: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """`items` in the order of `keys` (the first decides, the next break ties); the order they
    came in breaks the remaining ties. Items without the field come last either way."""
    ordered = list(items)
    for name, descending in reversed(keys):  # stable sorts, least significant key first

        def value(item: dict[str, Any], name: str = name) -> Any:
            return item.get(name) if name in _TOP_LEVEL else item["properties"].get(name)

        present = [i for i in ordered if value(i) is not None]
        missing = [i for i in ordered if value(i) is None]
        ordered = sorted(present, key=lambda i: _comparable(value(i)), reverse=descending)
        ordered += missing
    return ordered


def _comparable(value: Any) -> tuple[int, Any]:
    """Numbers before text before anything else, so that mixed values never fail to compare."""
    if isinstance(value, int | float):
        return 0, float(value)
    if isinstance(value, str):
        return 1, value
    return 2, json.dumps(value, sort_keys=True, default=str)
