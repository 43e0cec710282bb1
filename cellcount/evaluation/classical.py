"""Classical baseline: count cells the way it is usually done in Fiji/ImageJ.

Grey image -> Gaussian smoothing -> automatic global threshold (Otsu or
triangle, per image) -> the same post-processing as the networks (hole filling,
size filter, distance-transform watershed; :func:`cellcount.evaluation.postprocess.postprocess`).
Nothing is trained: the smoothed grey image plays the role of the probability
map and the automatic threshold the role of the tuned one, so the baseline is
scored with exactly the counting and matching code of the networks
(``model=classical`` in ``python -m cellcount.train``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu, threshold_triangle

from cellcount.evaluation.postprocess import PostprocessParams, postprocess

ThresholdMethod = Literal["otsu", "triangle"]
_THRESHOLDS: dict[str, Callable[[np.ndarray], float]] = {
    "otsu": threshold_otsu,
    "triangle": threshold_triangle,
}


@dataclass(frozen=True)
class ClassicalSegmenter:
    """Smoothing + automatic threshold + watershed, for one expected cell size.

    Attributes:
        cell_diameter: expected cell diameter (px); scales the smoothing and the
            post-processing constants (as for the networks).
        method: automatic threshold, ``otsu`` (bimodal histograms) or
            ``triangle`` (few bright cells on a large dark background).
        smoothing: Gaussian sigma as a fraction of the cell diameter
            (0.1: 1.4 px for 14 px nuclei, 4 px for 40 px neurons).
    """

    cell_diameter: float = 40.0
    method: ThresholdMethod = "otsu"
    smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in _THRESHOLDS:
            raise ValueError(
                f"unknown threshold method {self.method!r}; use one of {sorted(_THRESHOLDS)}."
            )

    def smooth(self, image: np.ndarray) -> np.ndarray:
        """RGB float (H, W, 3) in [0, 1] -> smoothed grey float32 (H, W) in [0, 1]."""
        grey = image.mean(axis=-1, dtype=np.float32)
        return ndi.gaussian_filter(grey, sigma=self.smoothing * self.cell_diameter)

    def threshold(self, smoothed: np.ndarray) -> float:
        """The automatic threshold of a smoothed image (its maximum if it is flat)."""
        if smoothed.min() == smoothed.max():
            return float(smoothed.max())
        return float(_THRESHOLDS[self.method](smoothed))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Label the cells of an RGB float (H, W, 3) image: int32 (H, W), 0 background."""
        smoothed = self.smooth(image)
        params = PostprocessParams.from_cell_diameter(self.cell_diameter)
        return postprocess(smoothed, self.threshold(smoothed), params)
