"""The Catalog API's `filter` (CQL2, the subset Sentinel Hub supports) and `fields` selection.

Sentinel Hub's catalogue compares properties with =, <>, <, <=, >, >= and BETWEEN, joined by
AND only (catalog-process.md §1.6); both cql2-text and cql2-json say that much. A filter parses
to a list of `Condition`s that an item must all meet.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eobatch.errors import InvalidRequest

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r"|(?P<op><>|<=|>=|=|<|>)|(?P<word>[A-Za-z_][\w:.\-]*)|(?P<other>\S))"
)
_LOGIC = ("or", "not")


@dataclass(frozen=True)
class Condition:
    """`property <op> value`, or BETWEEN with `value` a (low, high) pair."""

    property: str
    op: str  # one of _COMPARE, or "between"
    value: Any

    def holds(self, properties: Mapping[str, Any]) -> bool:
        """Whether an item's `properties` meet it (an item lacking the property does not)."""
        actual = properties.get(self.property)
        if actual is None:
            return False
        try:
            if self.op == "between":
                low, high = self.value
                return bool(low <= actual <= high)
            return _COMPARE[self.op](actual, self.value)
        except TypeError:  # a number compared with text: no match
            return False


def parse_filter(value: Any, language: str | None) -> list[Condition]:
    """The conditions of a `filter` in `language` (cql2-text or cql2-json; by default text
    for a string and json for an object); raises InvalidRequest naming what is not supported."""
    if value is None or value == "":
        return []
    language = language or ("cql2-json" if isinstance(value, dict) else "cql2-text")
    if language == "cql2-text":
        if not isinstance(value, str):
            raise InvalidRequest.at("filter", "a cql2-text filter is a string")
        return _parse_text(value)
    if language == "cql2-json":
        if not isinstance(value, dict):
            raise InvalidRequest.at("filter", "a cql2-json filter is a JSON object")
        return _parse_json(value)
    raise InvalidRequest.at("filter-lang", f"'{language}' is not cql2-text or cql2-json")


def _unsupported(what: str) -> InvalidRequest:
    return InvalidRequest.at(
        "filter",
        f"{what}; supported: comparisons (=, <>, <, <=, >, >=, BETWEEN) of a property with a "
        "value, joined by AND",
    )


def _parse_text(text: str) -> list[Condition]:
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        if kind == "other":
            raise _unsupported(f"unexpected '{match[kind]}' in '{text}'")
        tokens.append((kind, match[kind]))
    conditions = []
    position = 0

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise _unsupported(f"'{text}' ends too early")
        position += 1
        return tokens[position - 1]

    while True:
        kind, name = take()
        if kind != "word" or name.lower() in ("and", *_LOGIC):
            raise _unsupported(f"'{name}' where a property name belongs in '{text}'")
        kind, op = take()
        if kind == "word" and op.lower() == "between":
            low = _text_value(take(), text)
            if take()[1].lower() != "and":
                raise _unsupported(f"BETWEEN needs 'low AND high' in '{text}'")
            conditions.append(Condition(name, "between", (low, _text_value(take(), text))))
        elif kind == "op":
            conditions.append(Condition(name, op, _text_value(take(), text)))
        else:
            raise _unsupported(f"'{op}' is no comparison this catalogue supports")
        if position == len(tokens):
            return conditions
        kind, word = take()
        if word.lower() in _LOGIC:
            raise _unsupported(f"{word.upper()} is not supported")
        if word.lower() != "and":
            raise _unsupported(f"'{word}' where AND belongs in '{text}'")


def _text_value(token: tuple[str, str], text: str) -> Any:
    kind, value = token
    if kind == "string":
        return value[1:-1].replace("''", "'")
    if kind == "number":
        return float(value) if any(c in value for c in ".eE") else int(value)
    if kind == "word" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _unsupported(f"'{value}' where a value belongs in '{text}'")


def _parse_json(node: Mapping[str, Any]) -> list[Condition]:
    op = str(node.get("op", "")).lower()
    args = node.get("args")
    if not isinstance(args, list):
        raise _unsupported(f"cql2-json node {node} has no 'args' list")
    if op == "and":
        return [c for arg in args for c in _parse_json(_json_node(arg))]
    if op in _LOGIC:
        raise _unsupported(f"{op.upper()} is not supported")
    if op not in (*_COMPARE, "between") or not args or not isinstance(args[0], dict):
        raise _unsupported(f"cql2-json operator '{op}' with args {args}")
    name = args[0].get("property")
    if not isinstance(name, str):
        raise _unsupported(f"the first argument of '{op}' must be {{'property': name}}")
    values = args[1:]
    if op == "between":
        pair = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        if len(pair) != 2:
            raise _unsupported("BETWEEN needs a low and a high value")
        return [Condition(name, op, (pair[0], pair[1]))]
    if len(values) != 1 or isinstance(values[0], dict | list):
        raise _unsupported(f"'{op}' compares a property with one literal value")
    return [Condition(name, op, values[0])]


def _json_node(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _unsupported(f"{value!r} is not a cql2-json expression")
    return value


# -- fields --------------------------------------------------------------------------------------

# What an item keeps when `fields` is given (catalog-process.md §1.7), plus what pystac needs.
DEFAULT_FIELDS = (
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "collection",
    "geometry",
    "bbox",
    "links",
    "assets",
    "properties.datetime",
)


def parse_fields(value: Any) -> tuple[list[str], list[str]] | None:
    """(include, exclude) from the object form or the compact `a,-b` text; None: every field."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip()]
        return (
            [n.lstrip("+") for n in names if not n.startswith("-")],
            [n[1:] for n in names if n.startswith("-")],
        )
    if not isinstance(value, dict):
        raise InvalidRequest.at("fields", "give {'include': [...], 'exclude': [...]} or 'a,-b'")
    lists = []
    for key in ("include", "exclude"):
        names = value.get(key) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidRequest.at(f"fields->{key}", "is a list of dotted property paths")
        lists.append(names)
    return lists[0], lists[1]


def select_fields(item: Mapping[str, Any], include: Sequence[str], exclude: Sequence[str]) -> dict:
    """The item reduced to (default ∪ include) − (exclude − include): an explicit include
    wins over an exclude of the same path, an exclude removes default members."""
    kept: dict[str, Any] = {}
    for path in dict.fromkeys([*DEFAULT_FIELDS, *include]):
        found, value = _get(item, path)
        if found:
            _put(kept, path, copy.deepcopy(value))
    for path in exclude:
        if path not in include:
            _drop(kept, path)
    return kept


def _get(item: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = item
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _drop(target: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.get(part)  # type: ignore[assignment]
        if not isinstance(target, dict):
            return
    target.pop(last, None)
