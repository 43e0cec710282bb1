"""Training targets of one image: cleaned mask and (cached) weight map.

The authors computed weight maps per 512x512 crop, ignoring neighbours outside
the crop (docs/method.md#weight-maps). We compute them once per full image and crop them with the
image, so a cell cut by a crop border keeps its real neighbours; the map is then
independent of the crop grid and can be cached per image. The cache lives in
``<cache_dir>/weight_maps/<sha256>.npy`` where the hash covers the cleaned mask
and every weight-map parameter, so a second run does no recomputation and a
changed mask or parameter can never hit a stale entry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cellcount.data.io import Sample, load_pair, training_mask
from cellcount.data.normalize import DEFAULT_NORMALIZATION, Normalization
from cellcount.data.weight_maps import clean_mask, weight_map
from cellcount.runtime.files import array_sha256, atomic_save_npy, atomic_write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class TargetOptions:
    """How masks become training targets (defaults: the authors' values,
    docs/method.md#weight-maps)."""

    min_cell_area: int = 100
    max_hole_area: int = 200
    sigma: float = 25.0
    band: int = 100
    cell_factor: float = 1.5


@dataclass
class ImageRecord:
    """One image held in memory for cropping.

    Attributes:
        name: sample name.
        image: float16 (H, W, 3) in [0, 1].
        target: uint8 (H, W) in {0, 1}, the cleaned mask.
        weight: float16 (H, W) >= 1, the weight map (all ones when weight maps are off).
    """

    name: str
    image: np.ndarray
    target: np.ndarray
    weight: np.ndarray


def cached_weight_map(target: np.ndarray, options: TargetOptions, cache_dir: Path) -> np.ndarray:
    """Weight map of a cleaned mask, read from or written to the cache.

    Args:
        target: bool (H, W) cleaned mask.
        options: weight-map parameters (part of the cache key).
        cache_dir: cache root.

    Returns:
        float16 (H, W) weight map, values >= 1.
    """
    key = array_sha256(
        np.packbits(target), extra=json.dumps([CACHE_VERSION, target.shape, asdict(options)])
    )
    path = cache_dir / "weight_maps" / f"{key}.npy"
    cached = _load_valid(path, target.shape)
    if cached is not None:
        return cached
    wmap = weight_map(
        target, sigma=options.sigma, band=options.band, cell_factor=options.cell_factor
    ).astype(np.float16)
    # Content hash first, array second: a map is only trusted when both agree.
    atomic_write_text(path.with_suffix(".sha256"), array_sha256(wmap))
    atomic_save_npy(path, wmap)
    return wmap


def _load_valid(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Load a cached map whose content matches its stored hash, else None (rebuild)."""
    if not path.exists():
        return None
    try:
        array = np.load(path)
        expected = path.with_suffix(".sha256").read_text().strip()
    except (OSError, ValueError) as err:
        log.warning("weight-map cache %s is unreadable (%s); rebuilding it", path, err)
        return None
    if array.shape != shape or array.dtype != np.float16 or array_sha256(array) != expected:
        log.warning("weight-map cache %s is corrupt (hash mismatch); rebuilding it", path)
        return None
    return array


def load_record(
    sample: Sample, options: TargetOptions, cache_dir: Path, use_weight_map: bool = True,
    normalization: Normalization = DEFAULT_NORMALIZATION,
) -> ImageRecord:  # fmt: skip
    """Read a sample and build its training targets (see :func:`build_record`)."""
    image, truth = load_pair(sample, normalization)
    return build_record(sample, image, truth, options, cache_dir, use_weight_map)


def build_record(
    sample: Sample, image: np.ndarray, truth: np.ndarray, options: TargetOptions,
    cache_dir: Path, use_weight_map: bool = True,
) -> ImageRecord:  # fmt: skip
    """Training targets of an image: cleaned mask and (cached) weight map.

    Args:
        sample: where the pair came from (its name and whether truth is instance labels).
        image: float32 (H, W, 3) in [0, 1]; truth: bool mask or int labels (H, W).
    """
    mask = training_mask(truth)
    target = clean_mask(mask, options.min_cell_area, options.max_hole_area)
    if sample.labels:  # hole filling must not close the gaps between touching cells
        target[(truth > 0) & ~mask] = False
    if use_weight_map:
        weight = cached_weight_map(target, options, cache_dir)
    else:
        weight = np.ones(target.shape, np.float16)
    return ImageRecord(sample.name, image.astype(np.float16), target.astype(np.uint8), weight)
