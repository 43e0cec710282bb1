"""Cell sizes: the median cell diameter of a label image, and rescaling to a cell size.

The diameter of a cell is its equivalent diameter ``2 * sqrt(area / pi)``; the
typical diameter of an image is the median over its cells. Training can rescale
every image so that its cells have one reference diameter (``data.rescale_to``),
and counting rescales each image the same way from an estimated diameter
(docs/method.md#cell-size).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

# Rescaling factors are kept within these bounds (an image shrunk 8x or grown 4x).
MIN_SCALE, MAX_SCALE = 1 / 8, 4.0
# Cells smaller than this many pixels are noise, not cells, for size statistics.
MIN_CELL_PIXELS = 4


def cell_diameters(labels: np.ndarray, min_area: int = MIN_CELL_PIXELS) -> np.ndarray:
    """Equivalent diameters (px) of the cells of an int (H, W) label image, float (K,).

    A bool mask is labelled first (4-connected components). Objects under
    ``min_area`` pixels are left out.
    """
    if labels.dtype == bool:
        labels = ndi.label(labels)[0]
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas >= min_area]
    return 2.0 * np.sqrt(areas / np.pi)


def median_diameter(labels: np.ndarray, min_area: int = MIN_CELL_PIXELS) -> float | None:
    """Median equivalent diameter (px) of the cells (of at least ``min_area`` px) of a
    label image or mask; None if none."""
    diameters = cell_diameters(labels, min_area)
    return float(np.median(diameters)) if diameters.size else None


def scale_for(diameter: float, reference: float) -> float:
    """Factor that brings cells of ``diameter`` px to ``reference`` px, within the bounds."""
    return float(np.clip(reference / diameter, MIN_SCALE, MAX_SCALE))


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """float32 (H, W, C) image resized by ``scale`` (bilinear, anti-aliased when shrinking)."""
    return resize_smooth(image, rescaled_shape(image.shape[:2], scale))


def resize_smooth(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float (H, W) or (H, W, C) array resized to ``shape`` (rows, cols), float32.

    Bilinear at pixel centres; an axis that shrinks is first smoothed with a
    Gaussian of sigma ``(factor - 1) / 2`` (mirrored borders), as scikit-image's
    anti-aliased ``resize`` does, computed by OpenCV (20-60x faster). Equal to
    ``skimage.transform.resize(array, shape, order=1)`` away from the outer pixel.
    """
    array = np.ascontiguousarray(array, dtype=np.float32)
    sigmas = [
        max(0.0, (old / new - 1) / 2) for old, new in zip(array.shape[:2], shape, strict=True)
    ]
    if max(sigmas) > 0:
        sigma_y, sigma_x = (max(sigma, 1e-3) for sigma in sigmas)  # 1e-3: a 1-px kernel
        array = cv2.GaussianBlur(array, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y,
                                 borderType=cv2.BORDER_REFLECT_101)  # fmt: skip
    out = cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return out.reshape(*shape, *array.shape[2:])


def rescale_truth(truth: np.ndarray, scale: float) -> np.ndarray:
    """A bool mask or int label image resized by ``scale`` (nearest: ids and values kept)."""
    shape = rescaled_shape(truth.shape, scale)
    out = resize(truth, shape, order=0, anti_aliasing=False, preserve_range=True)
    return out.astype(truth.dtype, copy=False)


def rescaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """The (rows, cols) of an image of ``shape`` (H, W, ...) resized by ``scale`` (>= 1 px)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
