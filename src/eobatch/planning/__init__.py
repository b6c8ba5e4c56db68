"""Planning: tiling grids, the AOI, the features of a task and their manifest."""

from eobatch.planning.aoi import AOI, parse_aoi, parse_crs, reproject
from eobatch.planning.features import Feature, FeaturePlan, plan_tiling_grid, tiling_grid_plan
from eobatch.planning.grids import GRIDS, TilingGrid, validate_tiling_input
from eobatch.planning.manifest import ManifestRow, feature_manifest_bytes

__all__ = [
    "AOI",
    "GRIDS",
    "Feature",
    "FeaturePlan",
    "ManifestRow",
    "TilingGrid",
    "feature_manifest_bytes",
    "parse_aoi",
    "parse_crs",
    "plan_tiling_grid",
    "reproject",
    "tiling_grid_plan",
    "validate_tiling_input",
]
