"""Intensity normalisation: raw microscope values -> float32 in [0, 1].

One function, :func:`normalize_intensity`, serves training, evaluation, threshold
sweeps and counting; which normalisation a model was trained with is recorded in
its checkpoint (``hyper_parameters["normalization"]``) and applied at count time.

* ``percentile`` (the default; as CSBDeep, StarDist and Cellpose do): the
  ``low``..``high`` percentiles of the image (all channels together, so colours
  keep their balance) map to 0..1, values outside are clipped. Any dtype and range
  works: 12-bit data in 16-bit files, 32-bit integers, floats of any range.
* ``dtype_max`` (the paper's): integers are divided by their dtype's maximum,
  floats must already be in [0, 1]. Checkpoints without a recorded normalisation
  (older or converted ones) use it.

An image without contrast (constant, or saturated over most of its area) cannot be
counted; :class:`Normalized` carries a warning for it instead of an image whose
noise was stretched into invented cells. See docs/method.md#intensity-normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cellcount.data.errors import DataError

METHODS = ("percentile", "dtype_max")
# Percentiles are taken on at most about this many pixels (a regular subsample):
# the same values to well under a grey level, at a fraction of the time.
PERCENTILE_PIXELS = 1 << 20
# An image whose maximum covers at least this share of its pixels is saturated.
SATURATED_SHARE = 0.5
# In dtype_max mode an integer image using less than this share of its dtype's range
# arrives nearly black (12-bit data in 16-bit files): warn.
DARK_RANGE_SHARE = 1 / 8


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become [0, 1].

    Attributes:
        method: ``percentile`` or ``dtype_max``.
        low, high: percentiles (0..100, low < high) mapped to 0 and 1 (``percentile``).
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown normalisation {self.method!r}; use one of {', '.join(METHODS)}"
            )
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(
                f"normalisation percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low}, high={self.high}"
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, as stored in checkpoints and configs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> Normalization:
        """From a stored dict; None (nothing recorded) means the paper's ``dtype_max``."""
        return PAPER_NORMALIZATION if value is None else cls(**dict(value))

    def describe(self) -> str:
        """Short text for tables and model cards, e.g. ``percentile 1-99.8``."""
        if self.method == "percentile":
            return f"percentile {self.low:g}-{self.high:g}"
        return "dtype_max"


DEFAULT_NORMALIZATION = Normalization()
PAPER_NORMALIZATION = Normalization("dtype_max")


@dataclass(frozen=True)
class Normalized:
    """A normalised image and what is wrong with it, if anything.

    Attributes:
        image: float32 (H, W, C) in [0, 1], C as given.
        warning: empty, or why the image cannot be trusted. With ``countable``
            False the image has no usable contrast and must not be counted.
        countable: False for constant or mostly saturated images.
        pixel_size_um: the file's physical pixel size in µm, when its metadata say.
    """

    image: np.ndarray
    warning: str = ""
    countable: bool = True
    pixel_size_um: float | None = None


def normalize_intensity(
    array: np.ndarray, normalization: Normalization = DEFAULT_NORMALIZATION,
    source: object = "<array>",
) -> Normalized:  # fmt: skip
    """Map raw values (any integer or float dtype, (H, W, C)) to float32 [0, 1].

    Raises:
        DataError: NaN or infinite values; in ``dtype_max`` mode a float image
            outside [0, 1]. The message names ``source``.
    """
    if array.dtype.kind not in "uif":  # unsigned, signed, float
        raise DataError(f"image {source} has dtype {array.dtype}; expected integer or float pixels")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(
            f"image {source} contains NaN or infinite values; replace them (e.g. by 0) "
            f"before counting."
        )
    low_value, high_value = float(array.min()), float(array.max())
    if low_value == high_value:
        warning = f"no contrast: every pixel is {low_value:g}"
        return Normalized(np.zeros(array.shape, np.float32), warning, countable=False)
    saturated = float(np.mean(array == high_value))
    if saturated >= SATURATED_SHARE:
        warning = (f"saturated: {100 * saturated:.0f} % of the pixels are at the maximum "
                   f"{high_value:g}; re-acquire with a shorter exposure")  # fmt: skip
        return Normalized(np.zeros(array.shape, np.float32), warning, countable=False)
    if normalization.method == "dtype_max":
        return _divide_by_dtype_max(array, source)
    lo, hi = _percentiles(array, normalization.low, normalization.high)
    if hi <= lo:  # most pixels share one value: fall back to the full range
        lo, hi = low_value, high_value
    image = (array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return Normalized(np.clip(image, 0.0, 1.0, out=image))


def _percentiles(array: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles of a regular subsample of ``array``."""
    flat = array.reshape(-1)
    step = max(1, flat.size // PERCENTILE_PIXELS)
    lo, hi = np.percentile(flat[::step], [low, high])
    return float(lo), float(hi)


def _divide_by_dtype_max(array: np.ndarray, source: object) -> Normalized:
    if np.issubdtype(array.dtype, np.integer):
        top = float(np.iinfo(array.dtype).max)
        image = array.astype(np.float32) / np.float32(top)
        used = float(array.max()) / top
        warning = ""
        if used < DARK_RANGE_SHARE:
            warning = (f"dark: the image uses 0..{int(array.max())} of 0..{int(top)}, so this "
                       f"model's normalisation (divide by the dtype maximum) sees it nearly "
                       f"black; use a model trained with percentile normalisation")  # fmt: skip
        return Normalized(image, warning)
    image = array.astype(np.float32)
    if image.min() < 0 or image.max() > 1:
        raise DataError(
            f"float image {source} has values outside [0, 1] ({image.min():g}..{image.max():g}) "
            f"and this model divides by the dtype maximum; rescale it to [0, 1] or use a model "
            f"trained with percentile normalisation."
        )
    return Normalized(image)
