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

from benchmarks.bench_common import Result, peak_rss, progress, run_child


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
    """Count ``job["image"]`` with the CLI in this process; peak RSS before and after."""
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
    """(row name, child job, is the large default-tile row) for each case."""
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
) -> Result:
    """Peak RSS of counting ``image`` and a ``large_side`` square tiling of it with ``model``.

    Returns:
        The settings (``model``, ``default_tile``, ``malloc_env``, ``large_side``,
        ``include_large``) and ``cases``: per row its ``name``, whether it is the
        large default-tile row (``large_default``) and the child's figures
        (``peak_rss``, ``baseline_rss``, ``seconds``, ``count``, ``status``).
    """
    from cellcount.counter import DEFAULT_TILE_SIZE
    from cellcount.runtime.allocator import MALLOC_TUNING_ENV

    results = []
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-mem-") as scratch:
        folder = Path(scratch)
        cases = _cases(image, folder, large_side, large_tiles, include_large)
        for index, (name, job, large_default) in enumerate(cases):
            job.update(model=model, out=str(folder / f"out{index}"))
            result = run_child("benchmarks.bench_memory", job, timeout=3600)
            results.append({"name": name, "large_default": large_default, **result})
            progress(
                f"memory, {name}: peak {result['peak_rss'] / 2**30:.2f} GiB "
                f"in {result['seconds']:.0f} s"
            )
    return {
        "model": model,
        "default_tile": DEFAULT_TILE_SIZE,
        "malloc_env": MALLOC_TUNING_ENV,
        "large_side": large_side,
        "include_large": include_large,
        "cases": results,
    }


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
