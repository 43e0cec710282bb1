"""Section 1: the fast weight map against the per-cell reference on one mask."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_common import Section, fmt_ratio, fmt_stats, measure, progress, table
from benchmarks.weight_map_baseline import per_cell_weight_map, random_discs
from cellcount.data.weight_maps import weight_map

TARGET_SPEEDUP = 20.0


def run(height: int, width: int, cells: int, repeats: int) -> Section:
    mask = random_discs(height, width, cells, (12, 20), seed=0)
    fast = measure(lambda: weight_map(mask), repeats=repeats, warmup=1)
    slow = measure(lambda: per_cell_weight_map(mask), repeats=repeats, warmup=1)
    error = float(np.abs(weight_map(mask) - per_cell_weight_map(mask)).max())
    speedup = slow.median / fast.median
    # Ratio spread: slowest reference over fastest fast run, and the other way round.
    worst, best = slow.low / fast.high, slow.high / fast.low
    ok = speedup >= TARGET_SPEEDUP
    reference = (height, width, cells) == (1200, 1600, 50)
    verdict = ("met" if ok else "NOT met") if reference else "applies to 1600x1200, 50 cells"
    rows: list[list[object]] = [
        ["`weight_map` (windowed, package)", fmt_stats(fast), fast.n],
        ["`per_cell_weight_map` (reference)", fmt_stats(slow), slow.n],
        [
            f"**speed-up** (target >= {TARGET_SPEEDUP:.0f}x: {verdict})",
            f"**{fmt_ratio(speedup)}** ({fmt_ratio(worst)}–{fmt_ratio(best)})",
            "",
        ],
    ]
    body = (
        f"Mask {width}x{height} with {cells} random discs (radius 12–20 px, seed 0), the "
        "paper's constants (sigma 25, band 100). One warm-up call each, then "
        f"{repeats} timed calls each; the speed-up is the ratio of the medians (in brackets: "
        "slowest reference / fastest fast call and the reverse). Max |difference| between "
        f"the two maps: {error:.1e} (the truncation bound is 3.4e-4 per cell).\n\n"
        + table(["weight map", "time per mask, median (min–max)", "runs"], rows)
    )
    progress(
        f"weight maps: fast {fast.median * 1e3:.0f} ms, per-cell {slow.median:.2f} s, "
        f"{speedup:.1f}x"
    )
    return Section(
        "1. Weight map (training targets)",
        body,
        {"fast_s": fast.samples, "per_cell_s": slow.samples, "speedup": speedup, "max_abs": error},
        noisy=fast.noisy or slow.noisy,
    )
