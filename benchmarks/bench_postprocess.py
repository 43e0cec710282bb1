"""Section 2: post-processing + matching per image at 10, 100 and 1000 cells."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from benchmarks.bench_common import Section, fmt_stats, fmt_time, measure, progress, table
from cellcount.evaluation.postprocess import PostprocessParams, postprocess
from cellcount.evaluation.scoring import score_image

TARGET_100_CELLS = 0.3  # s per 1600x1200 image
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
    score_image(postprocess(prob, 0.5, params), mask)


def run(height: int, width: int, counts: tuple[int, ...], repeats: int) -> Section:
    params = PostprocessParams()
    rows = []
    data: dict[str, Any] = {}
    noisy = False
    totals: dict[int, float] = {}
    for count in counts:
        mask = spaced_discs(height, width, count, seed=count)
        prob = probability_map(mask)
        labels = postprocess(prob, 0.5, params)
        score = score_image(labels, mask)

        post = measure(partial(postprocess, prob, 0.5, params), repeats)
        match = measure(partial(score_image, labels, mask), repeats)
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        total = measure(partial(_post_and_match, prob, mask, params), repeats)
        cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
        totals[count] = total.median
        noisy |= total.noisy
        target = ""
        if count == 100 and (height, width) == (1200, 1600):
            target = f" — target < {TARGET_100_CELLS} s: " + (
                "met" if total.median < TARGET_100_CELLS else "NOT met"
            )
        rows.append(
            [
                count,
                f"{score.match.n_pred} / {score.match.tp}",
                fmt_stats(post),
                fmt_stats(match),
                f"**{fmt_stats(total)}**{target}",
                fmt_time(total.median / count),
                f"{cpu_share:.2f}",
            ]
        )
        data[str(count)] = {
            "postprocess_s": post.samples,
            "matching_s": match.samples,
            "total_s": total.samples,
            "found": score.match.n_pred,
            "tp": score.match.tp,
            "cpu_share": cpu_share,
        }
        progress(f"post-processing + matching, {count} cells: {total.median * 1e3:.0f} ms")
    low, high = min(counts), max(counts)
    marginal = (totals[high] - totals[low]) / (high - low)
    fixed = totals[low] - marginal * low
    body = (
        f"Synthetic {width}x{height} images with N separate discs (radius {RADII[0]}–"
        f"{RADII[1]} px on a {SPACING}-px grid), probability map = the disc mask blurred "
        "with a 2-px Gaussian, threshold 0.5, the paper's post-processing constants; "
        "matching = `score_image` (label the true mask, bounding-box centres, greedy, "
        f"< 50 px). One warm-up call, then {repeats} timed calls, for each column of each row. "
        "Threads are left as they are, but this is single-core work (scipy.ndimage, "
        "scikit-image and numpy here do not use threads): the *CPU/wall* column is "
        "process CPU time over wall time during the combined runs (~1.0 = one core busy).\n\n"
        + table(
            [
                "cells",
                "found / matched",
                "post-process",
                "matching",
                "post-process + matching",
                "per cell",
                "CPU/wall",
            ],
            rows,
        )
        + f"\n\nLinear fit through the {low}- and {high}-cell rows: about "
        f"{fmt_time(max(fixed, 0.0))} per image (labelling and filters over every pixel) + "
        f"{fmt_time(marginal)} per cell."
    )
    data["fixed_s"], data["per_cell_s"] = fixed, marginal
    return Section("2. Post-processing + matching", body, data, noisy)
