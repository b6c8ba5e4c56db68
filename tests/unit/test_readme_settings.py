"""README.md's configuration table lists exactly the settings of `Settings`, with its defaults."""

from __future__ import annotations

import re
from pathlib import Path

from eobatch.config import Settings

README = Path(__file__).parents[2] / "README.md"


def _table() -> dict[str, str]:
    """Variable -> default column of the README's configuration table."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`EOBATCH_"):
            names = re.findall(r"`(EOBATCH_\w+)`", cells[0])
            defaults = [d.strip(" `") for d in cells[1].split(",")]
            for index, name in enumerate(names):
                rows[name] = defaults[index] if len(defaults) == len(names) else cells[1]
    return rows


def test_every_setting_is_in_the_readme_and_nothing_else() -> None:
    documented = set(_table())
    settings = {f"EOBATCH_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "add these settings to README.md's table"
    assert documented - settings == set(), "README.md documents settings that do not exist"


def test_literal_defaults_in_the_readme_are_the_real_ones() -> None:
    checked = 0
    for variable, shown in _table().items():
        default = Settings.model_fields[variable.removeprefix("EOBATCH_").lower()].default
        if isinstance(default, bool) or not isinstance(default, int | float | str):
            continue
        if re.fullmatch(r"[\w.-]+", shown):  # a plain value, not words like "CPU count"
            assert shown == (f"{default:g}" if isinstance(default, float) else str(default)), (
                f"{variable}: README.md says {shown}, Settings says {default}"
            )
            checked += 1
    assert checked >= 12
