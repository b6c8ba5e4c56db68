"""Output writing: COG encode + upload throughput, and the compression profiles behind the default.

Workloads are 3500 x 3500 single-band rasters (the largest batch feature) shaped like real
results: the demo collection's smooth fields plus sensor noise, UINT16 reflectance and a
FLOAT32 NDVI. Throughput is raw array megabytes (1e6 bytes) per second.

  (1) profiles: encode time and size of each codec/level/predictor, plain tiled GeoTIFF and COG
  (2) eobatch: `encode_geotiff(..., cog=CogOptions())` + `Location.put` to a local-folder bucket,
      against `gdal_translate -of COG` with the same codec, level, predictor, block size,
      resampling and threads, from an uncompressed GeoTIFF on disk to a file (ratio = eobatch
      time / gdal_translate time; goal <= 1.1)
  (3) overviews: what the plain GeoTIFF of a batch output (`encode_output`: no-data tag, band
      descriptions, internal overviews) costs against the same GeoTIFF without overviews, with
      the overview resampling of each sample type and the alternative one

Run: python benchmarks/write.py [--repeat N] [--smoke] [--profiles-only | --cog-only |
     --overviews-only]
Needs `gdal_translate` on PATH for (2) (Debian: apt-get install gdal-bin).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from eobatch.demo_data import demo_band_values
from eobatch.script import ScriptOutput
from eobatch.sinks import CogOptions, CompressionProfile, encode_geotiff, encode_output
from eobatch.storage import Location

SIZE = 3500  # --smoke: 500
EPSG = 32633
TRANSFORM = Affine(10.0, 0.0, 440000.0, 0.0, -10.0, 5350000.0)
PROFILES = [  # (label, profile, predictor)
    ("ZSTD-1 + predictor (default)", CompressionProfile("ZSTD", 1, 2), True),
    ("ZSTD-1 + predictor, 1 thread", CompressionProfile("ZSTD", 1, 1), True),
    ("ZSTD-9 (GDAL default level)", CompressionProfile("ZSTD", 9, 2), True),
    ("ZSTD-1, no predictor", CompressionProfile("ZSTD", 1, 2), False),
    ("DEFLATE-6 + predictor", CompressionProfile("DEFLATE", 6, 2), True),
    ("DEFLATE-1 + predictor", CompressionProfile("DEFLATE", 1, 2), True),
    ("LZW, no predictor", CompressionProfile("LZW", None, 2), False),
    ("LZW + predictor", CompressionProfile("LZW", None, 2), True),
    ("NONE", CompressionProfile("NONE", None, 2), False),
]


def workloads(size: int = SIZE) -> dict[str, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    noise = np.random.default_rng(7)
    b04 = demo_band_values("B04", 1, rows, cols) + noise.normal(0, 12, (size, size))
    b08 = demo_band_values("B08", 1, rows, cols) + noise.normal(0, 25, (size, size))
    uint16 = np.clip(np.rint(b04), 1, 65535).astype(np.uint16)
    ndvi = ((b08 - b04) / (b08 + b04)).astype(np.float32)
    return {"UINT16": uint16[None], "FLOAT32": ndvi[None]}


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def profiles(data: dict[str, np.ndarray], repeat: int) -> None:
    side = next(iter(data.values())).shape[-1]
    print(f"\n(1) compression profiles, {side} x {side}, one band")
    header = f"{'type':8} {'profile':32} {'kind':6} {'MB/s':>7} {'s':>6} {'size/raw':>8}"
    print(header)
    print("-" * len(header))
    for name, array in data.items():
        raw = array.nbytes
        for label, profile, predictor in PROFILES:
            for kind, cog in (("tiff", None), ("cog", CogOptions(use_predictor=predictor))):
                if kind == "tiff" and not predictor and profile.compress != "NONE":
                    continue  # plain GeoTIFFs always use the predictor
                seconds = best_of(
                    repeat,
                    lambda p=profile, c=cog, a=array: encode_geotiff(
                        a, EPSG, TRANSFORM, None, p, c
                    ),
                )
                size = len(encode_geotiff(array, EPSG, TRANSFORM, None, profile, cog))
                print(
                    f"{name:8} {label:32} {kind:6} {raw / 1e6 / seconds:7.1f} "
                    f"{seconds:6.3f} {size / raw:8.3f}"
                )


def cog_against_gdal(data: dict[str, np.ndarray], repeat: int) -> None:
    gdal = shutil.which("gdal_translate")
    print(
        "\n(2) COG encode + upload vs gdal_translate -of COG (default profile, 256 blocks, "
        "average overviews)"
    )
    header = f"{'type':8} {'eobatch MB/s':>12} {'gdal MB/s':>10} {'ratio':>6} {'sizes (MB)':>16}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="eobatch-write-") as folder:
        bucket = Location.local(Path(folder) / "bucket")
        for name, array in data.items():
            raw = array.nbytes
            key = f"{name}.tiff"

            def upload(a: np.ndarray = array, key: str = key) -> None:
                bucket.put(key, encode_geotiff(a, EPSG, TRANSFORM, None, cog=CogOptions()))

            seconds = best_of(repeat, upload)
            ours = len(bucket.get(key))
            if gdal is None:
                print(f"{name:8} {raw / 1e6 / seconds:12.1f} {'n/a':>10}  (no gdal_translate)")
                continue
            source = Path(folder) / f"{name}-raw.tif"
            side = array.shape[-1]
            with rasterio.open(
                source,
                "w",
                driver="GTiff",
                count=1,
                width=side,
                height=side,
                dtype=array.dtype.name,
                crs=f"EPSG:{EPSG}",
                transform=TRANSFORM,
            ) as dst:
                dst.write(array)
            target = Path(folder) / f"{name}-gdal.tif"
            predictor = "FLOATING_POINT" if array.dtype.kind == "f" else "STANDARD"
            command = [
                gdal,
                "-q",
                "-of",
                "COG",
                "-co",
                "COMPRESS=ZSTD",
                "-co",
                "LEVEL=1",
                "-co",
                f"PREDICTOR={predictor}",
                "-co",
                "BLOCKSIZE=256",
                "-co",
                "OVERVIEW_RESAMPLING=AVERAGE",
                "-co",
                "NUM_THREADS=2",
                str(source),
                str(target),
            ]
            theirs_s = best_of(repeat, lambda c=command: subprocess.run(c, check=True))
            theirs = target.stat().st_size
            print(
                f"{name:8} {raw / 1e6 / seconds:12.1f} {raw / 1e6 / theirs_s:10.1f} "
                f"{seconds / theirs_s:6.2f} {ours / 1e6:7.2f} / {theirs / 1e6:6.2f}"
            )


def overviews(data: dict[str, np.ndarray], repeat: int) -> None:
    print("\n(3) plain GeoTIFF of a batch output: with internal overviews vs without")
    header = f"{'type':8} {'overviews':22} {'MB/s':>7} {'baseline':>8} {'ratio':>6} {'size/raw':>8}"
    print(header)
    print("-" * len(header))
    for name, array in data.items():
        raw = array.nbytes
        output = ScriptOutput("default", 1, name)
        nodata = float("nan") if name == "FLOAT32" else 0.0

        def plain(a: np.ndarray = array, nodata: float = nodata) -> bytes:
            return encode_geotiff(a, EPSG, TRANSFORM, nodata)

        base_s = best_of(repeat, plain)
        default = "average" if name == "FLOAT32" else "nearest"
        other = "nearest" if name == "FLOAT32" else "average"
        runs = [
            (
                f"{default} (default)",
                lambda a=array, o=output: encode_output(a, o, EPSG, TRANSFORM),
            ),
            (
                other,
                lambda a=array, n=nodata, r=other: encode_geotiff(
                    a, EPSG, TRANSFORM, n, descriptions=["default"], overviews=r
                ),
            ),
        ]
        for label, run in runs:
            seconds = best_of(repeat, run)
            size = len(run())
            print(
                f"{name:8} {label:22} {raw / 1e6 / seconds:7.1f} {raw / 1e6 / base_s:8.1f} "
                f"{seconds / base_s:6.2f} {size / raw:8.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="500 x 500 rasters, one repeat")
    parser.add_argument("--profiles-only", action="store_true")
    parser.add_argument("--cog-only", action="store_true")
    parser.add_argument("--overviews-only", action="store_true")
    args = parser.parse_args()
    data = workloads(500 if args.smoke else SIZE)
    repeat = 1 if args.smoke else args.repeat
    only = args.profiles_only or args.cog_only or args.overviews_only
    if args.profiles_only or not only:
        profiles(data, repeat)
    if args.cog_only or not only:
        cog_against_gdal(data, repeat)
    if args.overviews_only or not only:
        overviews(data, repeat)


if __name__ == "__main__":
    main()
