"""Build test GeoPackages: a valid one with pyogrio, malformed ones by breaking one rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio
import shapely


def write_layer(
    path: Path,
    table: str,
    epsg: int,
    geometries: list[shapely.Geometry],
    identifiers: list[str | None] | None = None,
    ids: list[int] | None = None,
    geometry_type: str = "Polygon",
    **columns: list,
) -> None:
    """Add a feature table (id INTEGER PK, identifier TEXT, optional width/height/resolution)."""
    n = len(geometries)
    ids = ids or list(range(1, n + 1))
    identifiers = identifiers if identifiers is not None else [f"{table}-{i}" for i in ids]
    names, values = ["id", "identifier"], [np.array(ids), np.array(identifiers, dtype=object)]
    nulls = {}
    for name, data in columns.items():
        names.append(name)
        kind = np.float64 if name == "resolution" else np.int64
        values.append(np.array([0 if v is None else v for v in data], dtype=kind))
        nulls[name] = [i for i, v in zip(ids, data, strict=True) if v is None]
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(np.array(geometries, dtype=object)), dtype=object),
        field_data=values,
        fields=names,
        layer=table,
        driver="GPKG",
        geometry_type=geometry_type,
        crs=f"EPSG:{epsg}",
        append=path.exists(),
        layer_options={"FID": "id"},
    )
    for name, where in nulls.items():  # pyogrio writes no NULLs from plain arrays
        if where:
            sql(path, f"UPDATE {table} SET {name} = NULL WHERE id IN ({','.join(map(str, where))})")


def squares(x0: float, y0: float, size: float, count: int) -> list[shapely.Geometry]:
    """`count` squares of `size` in a row eastwards from (x0, y0)."""
    return [shapely.box(x0 + i * size, y0, x0 + (i + 1) * size, y0 + size) for i in range(count)]


def valid_geopackage(path: Path) -> Path:
    """Two tables in two CRSs: 3 squares of 1 km in UTM 33N (width/height), 2 in WGS84 (res)."""
    write_layer(
        path,
        "fields_utm",
        32633,
        squares(500000, 5350000, 1000, 3),
        width=[100, 100, 50],
        height=[100, 100, 50],
    )
    write_layer(path, "fields_wgs", 4326, squares(14.30, 48.28, 0.01, 2), resolution=[1e-4, 5e-4])
    return path


def sql(path: Path, *statements: str) -> None:
    """Run raw SQL; GDAL's R-tree triggers (which need SpatiaLite functions) are dropped first."""
    with sqlite3.connect(path) as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (trigger,) in triggers:
            db.execute(f'DROP TRIGGER "{trigger}"')
        for statement in statements:
            db.execute(statement)


def rebuild_table(path: Path, table: str, create: str, columns: str) -> None:
    """Recreate `table` with another schema (SQLite cannot alter a primary key in place)."""
    sql(
        path,
        f'ALTER TABLE "{table}" RENAME TO old_{table}',
        create,
        f'INSERT INTO "{table}" SELECT {columns} FROM old_{table}',
        f"DROP TABLE old_{table}",
    )


Breaker = Callable[[Path], None]
