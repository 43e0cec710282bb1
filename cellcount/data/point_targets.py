"""Training targets from clicked points: one labelled cell per point.

Points say where cells are, not their outlines. :func:`points_to_labels` grows each
point into a cell with a seeded watershed of the smoothed image, kept within
``SEARCH_RADIUS`` diameters of its point and above an Otsu threshold of the pixels
near the points; a point whose cell comes out smaller than ``MIN_FILL`` of a disc of
the expected size (a dim cell) gets a disc of ``FALLBACK_RADIUS`` diameters instead.
The labels then go through the same weight maps, crops and loss as drawn masks
(docs/method.md#training-from-points).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from cellcount.inference.cell_size import first_guess

SEARCH_RADIUS = 0.6
MIN_FILL = 0.25
FALLBACK_RADIUS = 0.3


def point_diameter(image: np.ndarray, points: np.ndarray) -> float:
    """Expected cell diameter (px) for the points of an image: the image's size guess,
    capped by the median distance between neighbouring points (cells do not overlap)."""
    guess = first_guess(image)
    if len(points) >= 2:
        from scipy.spatial import cKDTree

        spacing = float(np.median(cKDTree(points).query(points, k=2)[0][:, 1]))
        guess = min(guess, spacing) if guess else spacing
    return float(guess or 16.0)


def points_to_labels(
    image: np.ndarray, points: np.ndarray, diameter: float | None = None
) -> np.ndarray:
    """int32 (H, W) cell labels 1..N, one per point (label i for ``points[i - 1]``).

    Args:
        image: float (H, W, 3) in [0, 1].
        points: float (N, 2) (row, col) inside the image.
        diameter: expected cell diameter in px; None: :func:`point_diameter`.
    """
    height, width = image.shape[:2]
    labels = np.zeros((height, width), np.int32)
    if len(points) == 0:
        return labels
    diameter = diameter or point_diameter(image, points)
    seeds = np.zeros((height, width), np.int32)
    rows = np.clip(np.round(points[:, 0]).astype(int), 0, height - 1)
    cols = np.clip(np.round(points[:, 1]).astype(int), 0, width - 1)
    seeds[rows, cols] = np.arange(1, len(points) + 1)
    near = ndi.distance_transform_edt(seeds == 0) <= SEARCH_RADIUS * diameter
    smoothed = ndi.gaussian_filter(image.mean(axis=-1), max(1.0, diameter / 10))
    values = smoothed[near]
    bright = smoothed > threshold_otsu(values) if np.ptp(values) > 1e-6 else near
    labels = watershed(-smoothed, seeds, mask=(near & bright) | (seeds > 0)).astype(np.int32)
    return _fill_dim_cells(labels, rows, cols, diameter)


def _fill_dim_cells(
    labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, diameter: float
) -> np.ndarray:
    """Give each point whose cell is too small a disc of ``FALLBACK_RADIUS`` diameters
    (on pixels no other cell holds)."""
    areas = np.bincount(labels.ravel(), minlength=len(rows) + 1)[1:]
    small = np.flatnonzero(areas < MIN_FILL * np.pi * (diameter / 2) ** 2)
    radius = max(1.0, FALLBACK_RADIUS * diameter)
    reach = int(np.ceil(radius))
    for index in small:
        r0, c0 = max(rows[index] - reach, 0), max(cols[index] - reach, 0)
        box = labels[r0 : rows[index] + reach + 1, c0 : cols[index] + reach + 1]
        yy, xx = np.ogrid[r0 : r0 + box.shape[0], c0 : c0 + box.shape[1]]
        disc = (yy - rows[index]) ** 2 + (xx - cols[index]) ** 2 <= radius**2
        box[disc & ((box == 0) | (box == index + 1))] = index + 1
    return labels
