"""Units: how the values a script sees in one unit come from the stored values of a band.

Most units are linear (`value = stored * scale + offset`: Landsat Collection 2 surface
reflectance is `DN * 2.75e-5 - 0.2`). Two need the scene: top-of-atmosphere reflectance divides
by the sine of the scene's sun elevation, and brightness temperature inverts Planck's law from
radiance with the sensor's constants, which differ between satellites of one collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Conversion:
    """One unit of a band: applied to warped stored values (NaN is no data and stays NaN)."""

    scale: float = 1.0
    offset: float = 0.0
    sun_elevation: str | None = None  # item property (degrees): divide by its sine
    planck: tuple[float, float] | None = None  # (K1, K2): radiance -> brightness temperature
    # Variants by the item's `platform` (e.g. Landsat 8 and 9 TIRS constants)
    by_platform: tuple[tuple[str, Conversion], ...] = ()

    @property
    def identity(self) -> bool:
        return self == IDENTITY

    @property
    def properties(self) -> tuple[str, ...]:
        """The item properties this conversion reads from a scene."""
        names = [self.sun_elevation] if self.sun_elevation else []
        if self.by_platform:
            names.append("platform")
        for _, variant in self.by_platform:
            names.extend(variant.properties)
        return tuple(dict.fromkeys(names))

    def for_scene(self, properties: Mapping[str, Any]) -> Conversion:
        """The variant for a scene's platform (this one when none is specific)."""
        platform = properties.get("platform")
        for name, variant in self.by_platform:
            if name == platform:
                return variant
        return self

    def apply(self, values: np.ndarray, properties: Mapping[str, Any]) -> None:
        """Convert float32 `values` in place for a scene with item `properties`."""
        conversion = self.for_scene(properties)
        if conversion.scale != 1:
            values *= np.float32(conversion.scale)
        if conversion.offset:
            values += np.float32(conversion.offset)
        if conversion.sun_elevation:
            elevation = properties.get(conversion.sun_elevation)
            if elevation is None:
                raise ValueError(
                    f"the scene has no {conversion.sun_elevation}, needed for this unit"
                )
            values /= np.float32(np.sin(np.radians(float(elevation))))
        if conversion.planck is not None:
            k1, k2 = conversion.planck
            with np.errstate(divide="ignore", invalid="ignore"):
                values[...] = np.float32(k2) / np.log(np.float32(k1) / values + 1)


IDENTITY = Conversion()


def parse_conversion(spec: Any) -> Conversion:
    """A unit of the mapping file: a number (scale) or an object (docs/collections.md)."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Conversion(scale=float(spec))
    if not isinstance(spec, dict):
        raise ValueError(f"a unit is a number or an object, not {spec!r}")
    unknown = set(spec) - {"scale", "offset", "sunElevation", "planck", "byPlatform"}
    if unknown:
        raise ValueError(f"unknown unit key(s) {', '.join(sorted(unknown))}")
    planck = spec.get("planck")
    return Conversion(
        scale=float(spec.get("scale", 1.0)),
        offset=float(spec.get("offset", 0.0)),
        sun_elevation=spec.get("sunElevation"),
        planck=(float(planck[0]), float(planck[1])) if planck else None,
        by_platform=tuple(
            (name, parse_conversion(variant))
            for name, variant in (spec.get("byPlatform") or {}).items()
        ),
    )
