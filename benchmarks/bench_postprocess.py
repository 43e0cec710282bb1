"""Section 2: post-processing + matching per image at 10, 100 and 1000 cells."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from benchmarks.bench_common import Result, measure, progress
from cellcount.evaluation.postprocess import PostprocessParams, postprocess
from cellcount.evaluation.scoring import score_image

RADII = (12, 18)
SPACING = 40  # px between grid slots: > max_filter_size (30), so each disc stays one cell


def spaced_discs(height: int, width: int, count: int, seed: int = 0) -> np.ndarray:
    """Bool mask with ``count`` separate discs on random slots of a 40-px grid.

    Radii are 12–18 px (areas 450–1020 px, around the paper's 40 px cells), and
    discs never touch (gap >= 3 px), so the true count is exactly ``count``.
    """
    rng = np.random.default_rng(seed)
    rows, cols = height // SPACING, width // SPACING
    if count > rows * cols:
        raise ValueError(f"{count} discs do not fit on a {rows}x{cols} grid")
    slots = rng.choice(rows * cols, size=count, replace=False)
    yy, xx = np.mgrid[:SPACING, :SPACING] - SPACING // 2
    mask = np.zeros((height, width), bool)
    for slot, radius in zip(slots, rng.integers(RADII[0], RADII[1] + 1, size=count), strict=True):
        y, x = divmod(int(slot), cols)
        window = np.s_[y * SPACING : (y + 1) * SPACING, x * SPACING : (x + 1) * SPACING]
        mask[window] |= yy**2 + xx**2 <= radius**2
    return mask


def probability_map(mask: np.ndarray) -> np.ndarray:
    """A soft float32 map of a mask (Gaussian blur, sigma 2 px): what a good net outputs."""
    return ndi.gaussian_filter(mask.astype(np.float32), sigma=2.0)


def _post_and_match(prob: np.ndarray, mask: np.ndarray, params: PostprocessParams) -> None:
    """Post-process ``prob`` and match the cells to ``mask`` (the combined column)."""
    score_image(postprocess(prob, 0.5, params), mask)


def _one_count(
    height: int, width: int, count: int, repeats: int, params: PostprocessParams
) -> Result:
    """Post-processing, matching and both together on an image of ``count`` discs."""
    mask = spaced_discs(height, width, count, seed=count)
    prob = probability_map(mask)
    labels = postprocess(prob, 0.5, params)
    score = score_image(labels, mask)
    post = measure(partial(postprocess, prob, 0.5, params), repeats)
    match = measure(partial(score_image, labels, mask), repeats)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    total = measure(partial(_post_and_match, prob, mask, params), repeats)
    cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    progress(f"post-processing + matching, {count} cells: {total.median * 1e3:.0f} ms")
    return {
        "found": score.match.n_pred,
        "tp": score.match.tp,
        "postprocess": post,
        "matching": match,
        "total": total,
        "cpu_share": cpu_share,
    }


def run(height: int, width: int, counts: tuple[int, ...], repeats: int) -> Result:
    """Time post-processing and matching per image at each number of cells.

    Returns:
        The image size, the disc layout (``radii``, ``spacing``), ``repeats`` and
        ``counts``: per number of cells (a string key), what :func:`_one_count` measured.
    """
    params = PostprocessParams()
    return {
        "height": height,
        "width": width,
        "radii": RADII,
        "spacing": SPACING,
        "repeats": repeats,
        "counts": {str(n): _one_count(height, width, n, repeats, params) for n in counts},
    }
