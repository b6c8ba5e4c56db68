"""Input limits: what the service refuses before it does any work (docs/limits.md).

Pure checks on text, object paths and feature counts; each problem is a `Violation` naming the
parameter, what was wrong and what is allowed. The byte limits come from `Settings`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from eobatch.config import Settings
from eobatch.errors import InvalidRequest, Violation

# Deeper JSON than this is no request of the API; refusing it keeps parsers off deep recursion.
MAX_JSON_DEPTH = 64
# C0 controls but TAB, LF and CR, and DEL: never meaningful in a name, a path or a description.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The script is JavaScript source, where vertical tab and form feed are whitespace.
_SCRIPT_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SCRIPTS = frozenset({"processRequest->evalscript"})
_SHOWN = 40  # characters of an offending value repeated in a message
# A `search` is words joined by | and &; each word is one LIKE clause of the query.
MAX_SEARCH_CHARS = 500
MAX_SEARCH_WORDS = 32


def shown(text: str) -> str:
    """`text` quoted for a message, cut to a readable length and with controls escaped."""
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    return repr(cut)


def _control_violation(parameter: str, text: str, pattern: re.Pattern[str]) -> Violation | None:
    match = pattern.search(text)
    if match is None:
        return None
    char = match.group()
    what = "a NUL byte" if char == "\x00" else f"the control character U+{ord(char):04X}"
    return Violation(
        parameter,
        f"contains {what} at position {match.start()}; text may hold no NUL or control "
        "characters (tab and line breaks are allowed)",
    )


def check_json_text(data: Any) -> None:
    """Refuse a decoded JSON body holding NUL or control characters in any key or string, or
    nested deeper than `MAX_JSON_DEPTH`; raises `InvalidRequest` naming the parameter."""
    found: list[Violation] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack and len(found) < 10:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest.at(
                path or "body", f"is nested more than {MAX_JSON_DEPTH} levels deep"
            )
        if isinstance(value, str):
            pattern = _SCRIPT_CONTROL if path in _SCRIPTS else _CONTROL
            if (problem := _control_violation(path or "body", value, pattern)) is not None:
                found.append(problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}->{key}" if path else str(key)
                if (problem := _control_violation(where, str(key), _ANY_CONTROL)) is not None:
                    found.append(Violation(f"{path or 'body'} key {shown(key)}", problem.violation))
                    continue
                stack.append((item, where, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}->{i}", depth + 1) for i, item in enumerate(value))
    if found:
        raise InvalidRequest(f"Invalid request: {found[0].parameter}: {found[0].violation}", found)


def text_violation(parameter: str, text: str) -> Violation | None:
    """A query parameter or other single text with NUL or any control character, or None."""
    return _control_violation(parameter, text, _ANY_CONTROL)


def check_search(search: str) -> None:
    """Refuse a `search` too long, or with so many words that its query would be unwieldy."""
    words = len(re.split(r"[|&]", search))
    if len(search) > MAX_SEARCH_CHARS or words > MAX_SEARCH_WORDS:
        raise InvalidRequest.at(
            "search",
            f"has {len(search)} characters and {words} words; at most {MAX_SEARCH_CHARS} "
            f"characters and {MAX_SEARCH_WORDS} words joined by | or & are allowed",
        )


def path_violations(
    path: str, parameter: str, settings: Settings, *, what: str = "path"
) -> list[Violation]:
    """What is wrong with an object path or URL (`s3://bucket/a/b.tif`, `a/(BAND).tif`): too
    long as a whole or in one part, control characters, `.`/`..` parts (also percent-encoded)
    or backslashes."""
    size = len(path.encode())
    if size > settings.max_path_bytes:
        return [
            Violation(
                parameter,
                f"the {what} is {size} bytes long (UTF-8); at most {settings.max_path_bytes} "
                "are allowed",
            )
        ]
    if (problem := _control_violation(parameter, path, _ANY_CONTROL)) is not None:
        return [problem]
    found = []
    _, sep, rest = path.partition("://")
    parts = rest.split("/") if sep else path.split("/")
    for part in parts:
        part_size = len(part.encode())
        if part_size > settings.max_name_bytes:
            found.append(
                Violation(
                    parameter,
                    f"the part {shown(part)} of the {what} is {part_size} bytes long (UTF-8); a "
                    f"folder or file name may have at most {settings.max_name_bytes}",
                )
            )
        elif unquote(part) in (".", ".."):
            found.append(
                Violation(
                    parameter,
                    f"the {what} has a part {part!r}; '.' and '..' (also percent-encoded) are "
                    "not allowed, every part must name a folder or file",
                )
            )
        if "\\" in unquote(part):
            found.append(
                Violation(parameter, f"the {what} has a backslash; parts are separated by '/'")
            )
            break
    return found


def too_many_features(count: int, settings: Settings, *, estimated: bool) -> str | None:
    """Why a task with `count` features (an estimate at create) is refused, or None when
    `settings.max_features` allows it."""
    if count <= settings.max_features:
        return None
    what = (
        f"the area of interest covers about {count} features of this grid"
        if estimated
        else f"the task has {count} features"
    )
    return (
        f"{what}; a task may have at most {settings.max_features}. Split the area into "
        "several tasks or choose a coarser grid"
    )
