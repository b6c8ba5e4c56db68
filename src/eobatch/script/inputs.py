"""What the data side hands the evalscript runtime for one feature: the contract between them.

Every mosaicking mode uses the same shape. For SIMPLE the reader has already mosaicked the scenes
into one, so S = 1; for ORBIT there is one entry per orbit (scenes of one day merged), for TILE one
per scene, in the order the script will see them (`mosaickingOrder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_SOURCE = "default"


@dataclass
class SourceData:
    """The pixels and scene metadata of one data source (one `input.data` entry) for one feature.

    `bands`: band name -> (S, H, W) array, S = number of scenes; includes `dataMask` (uint8, 0/1)
    when the script asks for it. `scenes`: for ORBIT/TILE one dict per scene, same order, with
    the keys Sentinel Hub gives evalscripts (`dateFrom`/`dateTo`/`tiles` of an orbit; `date`,
    `shId`, `cloudCoverage`, ... of a tile; dates as ISO 8601 UTC); for SIMPLE the tiles that
    make up the mosaic, which only `updateOutput` sees. `normalization`: the factor from stored
    values to reflectance (`inputMetadata.normalizationFactor`).
    """

    bands: dict[str, np.ndarray]
    scenes: list[dict[str, Any]] = field(default_factory=list)
    normalization: float = 0.0001

    @property
    def scene_count(self) -> int:
        first = next(iter(self.bands.values()), None)
        return 0 if first is None else int(first.shape[0])
