"""Section 6: peak resident memory of counting one image, each in a fresh process.

The parent starts ``python -m benchmarks.bench_memory JSON`` per case; the child
does the work and prints one JSON line with its own peak resident set size
(``VmHWM`` of ``/proc/self/status``), the peak right after the imports (the
fixed cost of Python + torch + Lightning) and its wall time. ``ru_maxrss`` is
not used: Linux carries the parent's peak into a child's ``ru_maxrss`` at exec,
so every child of the (multi-GB) harness process would report the harness's peak.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_common import (
    Section,
    fmt_bytes,
    fmt_time,
    peak_rss,
    progress,
    run_child,
    table,
)

TARGET_LARGE_BYTES = 4 * 10**9  # "8000x8000 peak < 4 GB"


def tiled_image(source: Path, height: int, width: int, out: Path) -> Path:
    """Write an uncompressed RGB TIFF of ``source`` repeated to ``height`` x ``width``."""
    import tifffile

    from cellcount.data.io import read_array

    array = read_array(source)
    reps = (-(-height // array.shape[0]), -(-width // array.shape[1])) + (1,) * (array.ndim - 2)
    tifffile.imwrite(out, np.tile(array, reps)[:height, :width])
    return out


# -- child side -------------------------------------------------------------------------
def _child(job: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    import cellcount.cli.count as count_cli
    from cellcount.runtime.allocator import MALLOC_TUNING_ENV

    baseline = peak_rss()
    if job.get("malloc_defaults"):
        os.environ[MALLOC_TUNING_ENV] = "0"  # the Counter then leaves glibc's malloc as is
    argv = [job["image"], "--model", job["model"], "--out", job["out"], "--device", "cpu",
            "--quiet", "--tile-size", str(job["tile_size"])]  # fmt: skip
    status = count_cli.main(argv)
    with (Path(job["out"]) / "counts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "baseline_rss": baseline,
        "peak_rss": peak_rss(),
        "seconds": time.perf_counter() - start,
        "status": status,
        "count": rows[0]["count"] if rows else "?",
    }


# -- parent side ------------------------------------------------------------------------
def _cases(
    image: Path, folder: Path, large_side: int, large_tiles: tuple[int, ...], include_large: bool
) -> list[tuple[str, dict[str, Any], bool]]:
    """(row name, child job, is the target row) for each case."""
    from cellcount.counter import DEFAULT_TILE_SIZE
    from cellcount.data.io import read_array

    height, width = read_array(image).shape[:2]
    real = {"image": str(image), "tile_size": DEFAULT_TILE_SIZE}
    cases = [
        (f"count {width}x{height} (real image)", real, False),
        (f"count {width}x{height}, glibc malloc defaults", {**real, "malloc_defaults": True},
         False),
    ]  # fmt: skip
    if not include_large:
        return cases
    big = str(tiled_image(image, large_side, large_side, folder / "large.tif"))
    side = f"{large_side}x{large_side}"
    for tile in large_tiles:
        large = {"image": big, "tile_size": tile}
        default = tile == DEFAULT_TILE_SIZE
        name = f"count {side} (real image tiled), --tile-size {tile}{' (default)' * default}"
        cases.append((name, large, default))
        if default:
            cases.append((f"{name}, glibc malloc defaults", {**large, "malloc_defaults": True},
                          False))  # fmt: skip
    return cases


def run(
    image: Path, model: str, large_side: int, large_tiles: tuple[int, ...], include_large: bool
) -> Section:
    """Peak RSS of counting ``image`` and a ``large_side`` square tiling of it with ``model``."""
    from cellcount.counter import DEFAULT_TILE_SIZE
    from cellcount.runtime.allocator import MALLOC_TUNING_ENV

    rows = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-mem-") as scratch:
        folder = Path(scratch)
        cases = _cases(image, folder, large_side, large_tiles, include_large)
        for index, (name, job, is_target) in enumerate(cases):
            job.update(model=model, out=str(folder / f"out{index}"))
            result = run_child("benchmarks.bench_memory", job, timeout=3600)
            data[name] = result
            target = ""
            if is_target:
                data["large_peak_rss"] = result["peak_rss"]
                ok = result["peak_rss"] < TARGET_LARGE_BYTES
                target = f" — target < 4 GB: {'met' if ok else 'NOT met'}" * (large_side == 8000)
            rows.append(
                [
                    name,
                    f"**{fmt_bytes(result['peak_rss'])}**{target}",
                    fmt_bytes(result["baseline_rss"]),
                    fmt_bytes(result["peak_rss"] - result["baseline_rss"]),
                    fmt_time(result["seconds"]),
                    result["count"],
                ]
            )
            progress(
                f"memory, {name}: peak {fmt_bytes(result['peak_rss'])} in {result['seconds']:.0f} s"
            )
    body = (
        "Each row is one fresh `python -m benchmarks.bench_memory` process; the peak is "
        "its own resident-set high-water mark at exit (`VmHWM` in `/proc/self/status`; "
        "psutil is not installed, and `ru_maxrss` is unusable here because Linux folds the "
        "parent's peak into a child's at exec). Each runs the counting CLI in that process "
        f"(`cellcount.count.main([image, --model {model}, --tile-size S, ...])`: read, "
        "predict (bf16 auto), post-process, cell table, label TIFF + overlay PNG) on CPU, "
        f"with `--tile-size` {DEFAULT_TILE_SIZE} (the default) unless the row says "
        "otherwise, and glibc's malloc tuned as the `Counter` does "
        "(`cellcount.runtime.allocator.tune_allocator`: no mmap, no trim below 2 GiB; faster "
        "inference, larger peak); *glibc malloc defaults* rows run with "
        f"`{MALLOC_TUNING_ENV}=0`. The large image is the real one repeated to "
        f"{large_side}x{large_side} (an uncompressed TIFF), so it holds real cells. "
        "*after imports* is the peak before any work (interpreter, torch, cellcount). One "
        "run each (a peak, not a timing); the time column includes process start, imports "
        "and, for large images, the whole tiled inference.\n\n"
        + table(
            ["case", "peak RSS", "after imports", "peak - imports", "process wall time", "cells"],
            rows,
        )
        + (
            f"\n\nFor scale, at {large_side}x{large_side} the float32 RGB image alone is "
            f"{fmt_bytes(large_side**2 * 12)}, and the float32 probability map and the int32 "
            f"label image {fmt_bytes(large_side**2 * 4)} each."
            if include_large
            else "\n\nThe large-image rows were skipped (--skip-large)."
        )
    )
    return Section("6. Peak memory", body, data)


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
