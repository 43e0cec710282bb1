"""Training-target cleaning and the authors' "overcrowding" weight map (docs/method.md#weight-maps).

:func:`clean_mask` is step 1 of the authors' ``make_weights``: drop small objects
and fill small holes. The cleaned mask is both the training target and the input
of :func:`weight_map`, which implements steps 2-6:

* band ``R = dilate(M, band x band square) & ~M``;
* objects ``O_k`` = 4-connected components of ``M`` (components < 25 px are
  ignored as seeds, a no-op after cleaning);
* ``B_k`` = every foreground pixel inside the bounding box of ``O_k``. This is a
  faithful quirk: a piece of another object that falls in the box counts too;
* ``S = sum_k exp(-d_k**2 / (2 sigma**2))``, ``d_k`` the Euclidean distance to
  ``B_k``, accumulated on ``R`` only;
* ``W = cell_factor`` on ``M``, ``max(1, S)`` on ``R``, ``1`` elsewhere.

Deliberate differences from the original storage format: the authors divided
``W`` by the constant 3.8177538 and stored it as 8-bit (docs/method.md#weight-maps (step 7)).
Dividing
by a constant only rescales the loss (an effective learning-rate change), and the
8-bit truncation is a file-format artefact, so neither is reproduced: the map is
returned raw, float32, ``>= 1``.

Dilation alignment: the original used skimage's grey dilation with a 100x100
square of ones, which is :func:`scipy.ndimage.grey_dilation` with that footprint.
For an even side ``b`` it grows a pixel ``b/2`` px up/left and ``b/2 - 1`` px
down/right (50 and 49 for b=100; OpenCV's ``cv2.dilate`` centres the other way
round). We call ``grey_dilation`` with ``size=(b, b)``, which has the same
alignment and runs as two separable 1-D max filters.

Performance: the original computed a full-image distance transform per cell, so
its cost grew as cells x pixels. Here each cell is processed in a window: its
bounding box expanded by ``ceil(truncate * sigma)`` px and clipped to the image.
Every pixel outside the window is more than ``truncate * sigma`` px from ``B_k``,
so each dropped term is below ``exp(-truncate**2 / 2)`` (3.4e-4 for the default
truncate 4); the total error at a pixel is at most that times the number of cells
whose windows miss it. ``truncate=inf`` disables the truncation (exact result).
Two cheaper steps then skip work whose result is 1 anyway: a separable upper
bound of the sum (distance to each bounding box instead of to ``B_k``) marks the
band pixels where ``S`` may exceed 1, and each distance transform only covers the
rectangle spanning the object's box and those pixels. The cost grows as
cells x window area, not cells x image area (unless bounding boxes are as large
as the image, e.g. a mesh-like object).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

# 4-connectivity, as the authors' skimage calls (connectivity=1) and ndimage.label.
FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)

# The original dropped labelled components below this area before taking them as
# seeds (``remove_small_objects(min_size=25)``); kept for masks that skipped cleaning.
MIN_SEED_AREA = 25


def clean_mask(
    mask: np.ndarray, min_object_area: int = 100, max_hole_area: int = 200
) -> np.ndarray:
    """Remove small objects, then fill small holes (docs/method.md#weight-maps (step 1)).

    Both use 4-connectivity and strict thresholds, matching the original
    ``remove_small_objects(min_size=100)`` and ``remove_small_holes(200)``:
    objects with area ``< min_object_area`` are removed, and background components
    with area ``< max_hole_area`` become foreground, including border-touching
    ones (the original treated any small background component as a hole). It is
    written with :func:`scipy.ndimage.label` because skimage 0.26 deprecated
    ``min_size``/``area_threshold`` for ``max_size`` with ``<=`` semantics.

    Args:
        mask: (H, W), any dtype; nonzero means cell.
        min_object_area: smallest object kept, in pixels (>= 0).
        max_hole_area: holes of this area or more are kept as background (>= 0).

    Returns:
        bool (H, W) cleaned mask.
    """
    foreground = _as_bool_2d(mask)
    if min_object_area < 0 or max_hole_area < 0:
        raise ValueError("min_object_area and max_hole_area must be >= 0")
    kept = _components_at_least(foreground, min_object_area)
    return ~_components_at_least(~kept, max_hole_area)


def weight_map(
    mask: np.ndarray,
    sigma: float = 25.0,
    band: int = 100,
    cell_factor: float = 1.5,
    truncate: float = 4.0,
) -> np.ndarray:
    """The authors' overcrowding weight map of a cleaned mask (docs/method.md#weight-maps (steps
    2-6)).

    Args:
        mask: (H, W), any dtype, nonzero = cell; normally the output of
            :func:`clean_mask`.
        sigma: Gaussian width in pixels (> 0).
        band: side of the square dilation that defines the band (>= 1).
        cell_factor: weight on cell pixels.
        truncate: each cell's Gaussian is evaluated up to ``truncate * sigma`` px
            from its bounding box (> 0; ``math.inf`` for no truncation). See the
            module docstring for the error bound.

    Returns:
        float32 (H, W): ``cell_factor`` on cells, ``>= 1`` in the band, 1 elsewhere.
        An empty mask gives all ones; an all-cell mask gives all ``cell_factor``.
    """
    foreground = _as_bool_2d(mask)
    if not (sigma > 0 and band >= 1 and truncate > 0):
        raise ValueError(
            f"need sigma > 0, band >= 1, truncate > 0; got {sigma}, {band}, {truncate}"
        )
    weights = np.ones(foreground.shape, np.float32)
    if not foreground.any():
        return weights
    ring = _band(foreground, band)
    if ring.any():
        labels, boxes = _seed_objects(foreground)
        reach = math.ceil(truncate * sigma) if math.isfinite(truncate) else max(foreground.shape)
        windows = [_expand(box, reach, foreground.shape) for box in boxes]
        # S <= bound, so W = max(1, S) = 1 wherever bound <= 1: the exact sum
        # (one distance transform per object) is needed nowhere else.
        needed = ring & (_upper_bound(boxes, windows, sigma, foreground.shape) > 1)
        total = _gaussian_sum(labels, boxes, windows, needed, sigma)
        weights[needed] = np.maximum(total[needed], 1.0)
    weights[foreground] = cell_factor
    return weights


def band_mask(foreground: np.ndarray, band: int = 100) -> np.ndarray:
    """Background pixels within the ``band x band`` square dilation of the cells.

    Args:
        foreground: (H, W), any dtype; nonzero = cell.
        band: square side (>= 1); see the module docstring for the even-size alignment.

    Returns:
        bool (H, W), False on cells.
    """
    return _band(_as_bool_2d(foreground), band)


def _band(cells: np.ndarray, band: int) -> np.ndarray:
    """:func:`band_mask` of a C-contiguous bool (H, W) mask."""
    # size= (no footprint) makes scipy run two separable 1-D max filters.
    dilated = ndi.grey_dilation(cells.view(np.uint8), size=(band, band))
    return dilated.astype(bool) & ~cells


Box = tuple[slice, slice]


def _seed_objects(foreground: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """4-connected objects of at least ``MIN_SEED_AREA`` px and their bounding boxes.

    Returns:
        ``(labels, boxes)``: int (H, W) labels with smaller components set to 0,
        and the bounding box of every kept object.
    """
    labels, _ = ndi.label(foreground, structure=FOUR_CONNECTED)
    boxes, small = [], []
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        if np.count_nonzero(labels[box] == index) < MIN_SEED_AREA:
            small.append(index)
        else:
            boxes.append((box[0], box[1]))
    if small:  # rare after clean_mask; they must not count as foreground in any B_k
        labels[np.isin(labels, small)] = 0
    return labels, boxes


def _expand(box: Box, reach: int, shape: tuple[int, ...]) -> Box:
    """A bounding box grown by ``reach`` px on every side, clipped to the image."""
    (ys, xs), (height, width) = box, shape
    return (
        slice(max(0, ys.start - reach), min(height, ys.stop + reach)),
        slice(max(0, xs.start - reach), min(width, xs.stop + reach)),
    )


def _upper_bound(
    boxes: list[Box], windows: list[Box], sigma: float, shape: tuple[int, ...]
) -> np.ndarray:
    """Sum over objects of exp(-r^2 / 2 sigma^2), r = distance to the bounding box.

    Since ``B_k`` lies inside its box, ``r <= d_k`` and each term bounds ``g_k``
    from above. The term factorises into a row and a column Gaussian, so it costs
    one outer product per window instead of a distance transform.

    Returns:
        float64 (H, W), 0 outside every window.
    """
    bound = np.zeros(shape, np.float64)
    for (ys, xs), (wy, wx) in zip(boxes, windows, strict=True):
        rows = _gap_gaussian(np.arange(wy.start, wy.stop), ys, sigma)
        cols = _gap_gaussian(np.arange(wx.start, wx.stop), xs, sigma)
        bound[wy, wx] += np.outer(rows, cols)
    return bound


def _gap_gaussian(coords: np.ndarray, span: slice, sigma: float) -> np.ndarray:
    """exp(-gap^2 / 2 sigma^2), gap = 1-D distance from each coordinate to ``span``."""
    gap = np.maximum(np.maximum(span.start - coords, coords - (span.stop - 1)), 0)
    return np.exp(np.square(gap) * (-0.5 / sigma**2))


def _gaussian_sum(
    labels: np.ndarray, boxes: list[Box], windows: list[Box], needed: np.ndarray, sigma: float
) -> np.ndarray:
    """Sum over objects of exp(-d_k^2 / 2 sigma^2), valid on ``needed`` pixels only.

    For each object the distance transform runs on the smallest rectangle of its
    window that holds its box and the needed pixels, never on the whole image.

    Returns:
        float64 (H, W); pixels outside ``needed`` hold partial sums or 0.
    """
    total = np.zeros(labels.shape, np.float64)
    scale = -0.5 / sigma**2
    for box, window in zip(boxes, windows, strict=True):
        domain = _domain(needed[window], window, box)
        if domain is None:
            continue
        (dy, dx), (by, bx) = domain, box
        # B_k: all foreground inside the bounding box (the authors' quirk).
        outside = np.ones((dy.stop - dy.start, dx.stop - dx.start), bool)
        inner = np.s_[
            by.start - dy.start : by.stop - dy.start, bx.start - dx.start : bx.stop - dx.start
        ]
        outside[inner] = labels[box] == 0
        targets = needed[domain]
        dist = ndi.distance_transform_edt(outside)
        total[domain][targets] += np.exp(np.square(dist[targets]) * scale)
    return total


def _domain(targets: np.ndarray, window: Box, box: Box) -> Box | None:
    """Bounding rectangle (image coordinates) of the true pixels of ``targets`` and ``box``.

    Args:
        targets: bool array of the window's shape.
        window: the window's position in the image.
        box: an object's bounding box, inside the window.

    Returns:
        The rectangle, or None when ``targets`` is all False.
    """
    rows = np.flatnonzero(targets.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(targets.any(axis=0))
    (wy, wx), (by, bx) = window, box
    return (
        slice(min(by.start, wy.start + rows[0]), max(by.stop, wy.start + rows[-1] + 1)),
        slice(min(bx.start, wx.start + cols[0]), max(bx.stop, wx.start + cols[-1] + 1)),
    )


def _components_at_least(binary: np.ndarray, min_area: int) -> np.ndarray:
    """Pixels of the 4-connected components of ``binary`` with area >= ``min_area``."""
    if min_area <= 1:
        return binary.copy()
    labels, count = ndi.label(binary, structure=FOUR_CONNECTED)
    if count == 0:
        return binary.copy()
    keep = np.bincount(labels.ravel()) >= min_area
    keep[0] = False  # label 0 is the complement, never a component
    return keep[labels]


def _as_bool_2d(mask: np.ndarray) -> np.ndarray:
    """Nonzero pixels of a 2-D array as a C-contiguous bool array."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    return np.ascontiguousarray(array != 0)
