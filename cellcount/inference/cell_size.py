"""Estimate the typical cell diameter of an image, for ``--cell-diameter auto``.

Two steps (docs/method.md#cell-size):

1. :func:`first_guess`: a classical segmentation (Gaussian smoothing, Otsu
   threshold, connected components) measured robustly: a single round cell gives
   its equivalent diameter, a clump of touching cells the diameter of its largest
   inscribed disc, so clumps do not pass for big cells. Cheap (tens of ms).
2. the model counts at that size, and the median equivalent diameter of the
   cells it found is the measurement; when it differs from the guess by more than
   :data:`REFINE_TOLERANCE`, the image is counted once more at the measured size
   (:meth:`cellcount.counter.Counter.count` does this), unless the second pass shows
   that the model's objects follow the size it is told (:func:`follows_told_size`).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from cellcount.data.sizes import MIN_CELL_PIXELS, median_diameter
from cellcount.evaluation.postprocess import PostprocessParams

# A second pass runs when the model's cells are this far (relative) from the guess.
REFINE_TOLERANCE = 0.25
# A second pass whose cells again miss its size, with more than this many times the
# first pass's cells, is the model drawing texture at whatever size it is told. On the
# shipped model's training and validation images, halving the size it is told finds
# 1.6-1.8x the nuclei (DSB, told twice their size) but 5-6.5x the objects (FNC tissue).
MAX_REFINED_GROWTH = 3.0
# A component whose area is more than CLUMP_FILL times its largest inscribed disc is a
# clump of touching cells (measured by that disc); more than STRUCTURE_FILL times, it
# is no cell at all (tissue, vessels, background) and is left out.
CLUMP_FILL = 1.6
STRUCTURE_FILL = 4.0
# A guess above this share of the image's short side (fewer than ~16 cells would fit),
# made of one component holding most of the foreground, is a structure, not a cell:
# no guess (counting then starts from the model's own cell size).
MAX_GUESS_FRACTION = 0.25
# The first guess looks at images of at most about this many pixels (block-averaged).
GUESS_PIXELS = 1 << 21


def first_guess(image: np.ndarray) -> float | None:
    """Typical cell diameter (px) of a float (H, W, 3) [0, 1] image, or None if no objects.

    Each foreground component counts once; a component whose area exceeds
    ``CLUMP_FILL`` times its largest inscribed disc is taken as a clump and
    measured by that disc, else by its equivalent diameter. When Otsu's threshold
    gives one structure (a guess over ``MAX_GUESS_FRACTION`` of the short side, from
    one component holding over half the foreground: crowded cells merged into a
    field, or cells inside bright tissue), the brighter part of that foreground is
    measured instead (Otsu's threshold of the foreground pixels: the cells' cores);
    when that is one structure too, there is no guess (None).
    """
    grey = (image[..., 0] + image[..., 1] + image[..., 2]) / np.float32(3)  # = mean, faster
    factor = max(1, int(np.sqrt(grey.size / GUESS_PIXELS)))
    if factor > 1:  # block average: fast, and keeps cells of >= 2 * factor px
        h, w = (side - side % factor for side in grey.shape)
        grey = grey[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    smoothed = ndi.gaussian_filter(grey, 1.0)
    if smoothed.max() - smoothed.min() < 1e-3:
        return None
    threshold = threshold_otsu(smoothed)
    guess = _cell_guess(smoothed, threshold)
    if guess is None:  # one structure: measure its brighter part, the cells' cores
        bright = smoothed[smoothed > threshold]
        if bright.size and bright.max() - bright.min() >= 1e-3:
            guess = _cell_guess(smoothed, threshold_otsu(bright))
    return None if guess is None else guess * factor


def _cell_guess(smoothed: np.ndarray, threshold: float) -> float | None:
    """:func:`_guess_at` of the float (H, W) image's pixels over ``threshold``; None when
    there are none, or when the guess is one structure (tissue, an embryo, a field of
    merged cells) rather than cells."""
    guess, share = _guess_at(smoothed > threshold)
    if guess is not None and guess > min(smoothed.shape) * MAX_GUESS_FRACTION and share > 0.5:
        return None
    return guess


def _guess_at(foreground: np.ndarray) -> tuple[float | None, float]:
    """Weighted-median cell diameter (px) of a bool foreground's components (None when
    there are none), and the share of the foreground in its largest component."""
    labels, count = ndi.label(foreground)
    if count == 0:
        return None, 0.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
    share = float(sizes.max() / sizes.sum())
    diameters, areas = _component_diameters(labels, foreground, sizes)
    return (_weighted_median(diameters, areas) if diameters.size else None), share


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at half the total weight: here, the size of the cell the median
    foreground pixel belongs to, so specks of noise weigh little."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _component_diameters(
    labels: np.ndarray, foreground: np.ndarray, areas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per component: equivalent diameter, or inscribed-disc diameter for clumps (px); areas.

    Args:
        labels: int (H, W) components 1..N of the bool (H, W) ``foreground``.
        areas: float (N,) their areas (px).
    """
    radii = np.full(areas.size + 1, 0.5)
    np.maximum.at(radii, labels[foreground], _distances(foreground)[foreground])
    radii = radii[1:]
    keep = (areas >= MIN_CELL_PIXELS) & (areas <= STRUCTURE_FILL * np.pi * radii**2)
    areas, radii = areas[keep], radii[keep]
    equivalent = 2.0 * np.sqrt(areas / np.pi)
    clump = areas > CLUMP_FILL * np.pi * radii**2
    return np.where(clump, 2.0 * radii, equivalent), areas


def _distances(mask: np.ndarray) -> np.ndarray:
    """float32 (H, W) Euclidean distance of each pixel of a bool mask to the nearest
    pixel outside it (0 outside): ``ndimage.distance_transform_edt`` within 1e-5 px,
    computed by OpenCV's exact algorithm 10-20x faster on a 1600 x 1200 image."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def measured_diameter(labels: np.ndarray, told: float) -> float | None:
    """Median equivalent diameter (px) of the cells a count at ``told`` px found, leaving
    out those smaller than the paper's smallest cell at that size (a counting split
    profile may keep smaller ones, which must not pull the size down); None if none.

    Args:
        labels: int (H, W) cells, 0 = background.
    """
    smallest = PostprocessParams.from_cell_diameter(told).min_object_area
    return median_diameter(labels, max(smallest, MIN_CELL_PIXELS))


def needs_refinement(guess: float, measured: float | None) -> bool:
    """Whether the model's measured size is far enough from the guess to count again."""
    return measured is not None and abs(measured / guess - 1.0) > REFINE_TOLERANCE


def follows_told_size(
    told: float, measured: float | None, first: np.ndarray, second: np.ndarray
) -> bool:
    """Whether a second pass at ``told`` px (the first pass's measured size) shows the
    model drawing objects at whatever size it is told rather than finding cells: its own
    cells (median ``measured`` px, None: none) miss ``told`` by more than the tolerance
    and it holds over :data:`MAX_REFINED_GROWTH` times the cells of the first pass.

    Args:
        first, second: int (H, W) labels of the two passes.
    """
    if measured is None or not needs_refinement(told, measured):
        return False
    return count_growth(first, second) > MAX_REFINED_GROWTH


def count_growth(first: np.ndarray, second: np.ndarray) -> float:
    """How many times as many cells the int (H, W) labels ``second`` hold as ``first``."""
    return second.max(initial=0) / max(1, first.max(initial=0))
