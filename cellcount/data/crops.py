"""The authors' crop grid, generalised to any image size, and padding helpers.

The paper cuts every 1600x1200 image into twelve 512x512 crops on a 400 px grid
(docs/method.md#data-and-crops): along each axis the crops *end* at the multiples of the step, the
last
one ends at the image border, and a crop starts ``crop`` pixels before its end
(never before 0). For 1600 px this gives origins 0, 288, 688, 1088; for 1200 px
0, 288, 688. The first two crops therefore overlap by 224 px and the others by
112 px, exactly as in the original.

The same rule is applied to any length. When the length is not a multiple of the
step the last crop ends at the border and may overlap its neighbour by more than
``crop - step`` (it is never dropped, so the border is always covered).

Arrays are channels-last NumPy arrays, (H, W) or (H, W, C).
"""

from __future__ import annotations

import numpy as np


def crop_origins(length: int, crop: int = 512, step: int = 400) -> list[int]:
    """Start offsets of the crops along one axis.

    Crops end at ``step, 2*step, ...`` (every multiple of ``step`` below ``length``)
    and at ``length``; each starts at ``max(0, end - crop)``. Duplicate origins
    (several ends below ``crop`` all start at 0) are merged.

    Args:
        length: image size along the axis, in pixels, ``>= crop``.
        crop: crop size, ``> 0``.
        step: grid step, ``0 < step <= crop``. A step larger than the crop would
            leave uncovered gaps between crops, so it is rejected.

    Returns:
        Sorted, distinct origins; every ``[o, o + crop)`` lies inside ``[0, length)``
        and together they cover it. Example: ``crop_origins(1600) == [0, 288, 688, 1088]``.

    Raises:
        ValueError: on a non-positive crop, a step outside ``(0, crop]``, or
            ``length < crop`` (pad the image first, see :func:`pad_to_min_size`).
    """
    if crop <= 0:
        raise ValueError(f"crop must be positive, got {crop}")
    if not 0 < step <= crop:
        raise ValueError(f"step must be in (0, crop={crop}] so crops cover the image, got {step}")
    if length < crop:
        raise ValueError(
            f"image side {length} is smaller than the crop {crop}; "
            "pad it first with pad_to_min_size()"
        )
    ends = [*range(step, length, step), length]
    return sorted({max(0, end - crop) for end in ends})


def crop_boxes(height: int, width: int, crop: int = 512, step: int = 400) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of the crops of an image, in the authors' order.

    The authors number the crops of an image ``k = 3*i + j`` with ``i`` the column
    (x) index and ``j`` the row (y) index (docs/method.md#data-and-crops); generalised,
    ``k = n_rows*i + j``: the x index is the outer loop. A 1600x1200 image gives 12 boxes.

    Args:
        height, width: image size in pixels, both ``>= crop``.
        crop, step: as in :func:`crop_origins`.

    Returns:
        ``(y0, x0)`` pairs; the crop is ``array[y0:y0 + crop, x0:x0 + crop]``.
    """
    rows = crop_origins(height, crop, step)
    cols = crop_origins(width, crop, step)
    return [(y0, x0) for x0 in cols for y0 in rows]


def pad_to_min_size(array: np.ndarray, min_h: int, min_w: int) -> np.ndarray:
    """Zero-pad an array at the bottom/right so it is at least ``min_h x min_w``.

    Zeros are used for every array (image, mask, weight map) so that image, mask
    and weights stay consistent: the padding is black background without cells.
    A padded weight map is 0 there; callers that need weights >= 1 take
    ``np.maximum(w, 1)``.

    Args:
        array: (H, W) or (H, W, C), any dtype.
        min_h, min_w: minimum output height and width.

    Returns:
        The input itself when it is already large enough, else a padded copy of
        shape (max(H, min_h), max(W, min_w)[, C]) with the same dtype.
    """
    pad_h = max(0, min_h - array.shape[0])
    pad_w = max(0, min_w - array.shape[1])
    if pad_h == 0 and pad_w == 0:
        return array
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="constant")
