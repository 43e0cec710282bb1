"""Section 1: the fast weight map against the per-cell reference on one mask."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_common import Result, measure, progress
from benchmarks.weight_map_baseline import per_cell_weight_map, random_discs
from cellcount.data.weight_maps import weight_map

RADII = (12, 20)  # px: the random discs' radius range


def run(height: int, width: int, cells: int, repeats: int) -> Result:
    """Time ``weight_map`` and ``per_cell_weight_map`` on one random-disc mask.

    Returns:
        The mask's size, both :class:`Stats` (``fast``, ``per_cell``) and the
        largest absolute difference of the two maps (``max_abs``).
    """
    mask = random_discs(height, width, cells, RADII, seed=0)
    fast = measure(lambda: weight_map(mask), repeats=repeats, warmup=1)
    slow = measure(lambda: per_cell_weight_map(mask), repeats=repeats, warmup=1)
    error = float(np.abs(weight_map(mask) - per_cell_weight_map(mask)).max())
    progress(
        f"weight maps: fast {fast.median * 1e3:.0f} ms, per-cell {slow.median:.2f} s, "
        f"{slow.median / fast.median:.1f}x"
    )
    return {
        "height": height,
        "width": width,
        "cells": cells,
        "radii": RADII,
        "repeats": repeats,
        "fast": fast,
        "per_cell": slow,
        "max_abs": error,
    }
