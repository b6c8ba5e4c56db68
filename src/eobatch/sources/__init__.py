"""Data sources: scenes of a collection and the reader that mosaics them onto a feature grid."""

from eobatch.sources.mosaic import PixelGrid, read_mosaic
from eobatch.sources.scenes import (
    BandSource,
    Scene,
    filter_cloud_cover,
    filter_time,
    order_scenes,
)
from eobatch.sources.stack import Slice, read_slices, slices

__all__ = [
    "BandSource",
    "PixelGrid",
    "Scene",
    "Slice",
    "filter_cloud_cover",
    "filter_time",
    "order_scenes",
    "read_mosaic",
    "read_slices",
    "slices",
]
