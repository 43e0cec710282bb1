"""Straightforward reference for the weight map: one full-image distance transform per cell.

This is the way the authors computed it (docs/method.md#weight-maps): for every object, the
Euclidean distance transform of the whole image to the foreground inside the
object's bounding box, its Gaussian summed over the whole image, then kept on the
dilation band. Its cost grows as cells x pixels. It is kept out of the package on
purpose: it is the correctness and speed reference for
:func:`cellcount.data.weight_maps.weight_map` (tests import it).

Run ``python benchmarks/weight_map_baseline.py`` to time both on a 1600x1200 mask
with 50 random discs (median of 5 runs each).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi


def per_cell_weight_map(
    mask: np.ndarray, sigma: float = 25.0, band: int = 100, cell_factor: float = 1.5
) -> np.ndarray:
    """Reference weight map, no truncation: full-image EDT per cell.

    Args:
        mask: (H, W), nonzero = cell (already cleaned).
        sigma, band, cell_factor: as in ``cellcount.data.weight_maps.weight_map``.

    Returns:
        float32 (H, W) weight map, >= 1.
    """
    cells = np.asarray(mask) != 0
    four = ndi.generate_binary_structure(2, 1)
    # Same alignment as a 100x100 footprint of ones (grows b/2 up-left, b/2-1 down-right).
    ring = ndi.grey_dilation(cells.astype(np.uint8), size=(band, band)).astype(bool) & ~cells
    labels, count = ndi.label(cells, structure=four)
    if count:
        sizes = np.bincount(labels.ravel())
        seeds = (sizes >= 25)[labels] & cells  # the original drops components < 25 px as seeds
        labels, _ = ndi.label(seeds, structure=four)
    total = np.zeros(cells.shape, np.float64)
    for box in ndi.find_objects(labels):
        if box is None:
            continue
        in_box = np.zeros(cells.shape, bool)
        in_box[box] = labels[box] > 0
        dist = ndi.distance_transform_edt(~in_box)
        total += np.exp(-np.square(dist) / (2 * sigma**2))
    weights = np.where(ring, np.maximum(total, 1.0), 1.0)
    weights[cells] = cell_factor
    return weights.astype(np.float32)


def random_discs(
    height: int, width: int, count: int, radii: tuple[int, int], seed: int = 0
) -> np.ndarray:
    """Bool (height, width) mask with ``count`` discs of random centre and radius."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), bool)
    for _ in range(count):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        radius = rng.integers(radii[0], radii[1] + 1)
        y0, y1 = max(0, cy - radius), min(height, cy + radius + 1)
        x0, x1 = max(0, cx - radius), min(width, cx + radius + 1)
        window = np.s_[y0:y1, x0:x1]
        mask[window] |= (yy[window] - cy) ** 2 + (xx[window] - cx) ** 2 <= radius**2
    return mask


def median_seconds(function: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Time the fast and the per-cell weight maps on a 1600x1200 mask with 50 discs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cellcount.data.weight_maps import weight_map

    mask = random_discs(1200, 1600, 50, (12, 20), seed=0)
    fast = median_seconds(lambda: weight_map(mask))
    slow = median_seconds(lambda: per_cell_weight_map(mask))
    error = np.abs(weight_map(mask) - per_cell_weight_map(mask)).max()
    print("mask 1200x1600, 50 discs r=12..20, median of 5 runs")
    print(f"fast weight_map:     {fast * 1e3:8.1f} ms")
    print(f"per-cell baseline:   {slow * 1e3:8.1f} ms")
    print(f"speed-up:            {slow / fast:8.1f}x   max |difference| {error:.2e}")


if __name__ == "__main__":
    main()
