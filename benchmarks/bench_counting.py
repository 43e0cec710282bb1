"""Section 5: end-to-end counting of real images (Counter API stages and the CLI).

The stage table and the first CLI row use the shipped pretrained c_resunet, so the
post-processing and outputs see the real cells of the FNC samples. The CLI is
also run with the other paper nets, untrained (time does not depend on the
weights, and the untrained maps give few cells, so their downstream stages are
cheap), to give every architecture's end-to-end time.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

import cellcount.cli.count as count_cli
from benchmarks.bench_common import FNC_CELL_DIAMETER, Result, Stats, progress
from cellcount.counter import DEFAULT_TILE_SIZE, Counter, cell_table
from cellcount.data.io import read_image, read_labels
from cellcount.evaluation.overlays import render_overlay, save_png
from cellcount.evaluation.postprocess import PostprocessParams, postprocess
from cellcount.inference.checkpoints import save_checkpoint
from cellcount.training.module import CellSegModule

# The untrained c_resunet map is noise around 0.58 (1st-99th percentile 0.12-0.90).
# Above ~0.75 nothing survives the 200-px object filter; below ~0.65 the noise
# percolates into one image-sized object whose watershed is unrealistically slow.
UNTRAINED_THRESHOLD = 0.7
STAGES = (
    "read",
    "predict",
    "post-process",
    "cell table",
    "label TIFF",
    "overlay render",
    "overlay PNG",
)


def make_checkpoint(folder: Path, arch: str = "c_resunet") -> Path:
    """Save an untrained ``arch`` ``CellSegModule`` (seed 0) as a minimal checkpoint."""
    torch.manual_seed(0)
    module = CellSegModule(arch=arch, threshold=UNTRAINED_THRESHOLD)
    return save_checkpoint(module, folder / f"untrained_{arch}.ckpt")


@dataclass(frozen=True)
class CliCase:
    """One `cellcount count` row: model, extra options, images counted."""

    label: str
    model: str  # a shipped model's name or an architecture (untrained checkpoint)
    options: tuple[str, ...] = ()
    images: int | None = None  # the first N images; None = all

    def argv(self, folder: Path, checkpoints: dict[str, Path], out: Path) -> list[str]:
        """The CLI arguments of this case for ``folder``, writing to ``out``."""
        model = str(checkpoints.get(self.model, self.model))
        return [str(folder), "--model", model, "--out", str(out), "--quiet", *self.options]


def _stage_times(counter: Counter, path: Path, out: Path, repeats: int) -> dict[str, Stats]:
    """Per-stage wall times of counting one image file: ``Counter.count`` + the CLI's writes."""
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    diameter = float(counter.cell_diameter)  # a given size: the stages of one pass
    params = PostprocessParams.from_cell_diameter(diameter)
    for index in range(1 + repeats):  # one warm-up pass
        marks = [time.perf_counter()]
        image = read_image(path)
        marks.append(time.perf_counter())
        prob = counter.probabilities(image, diameter)
        marks.append(time.perf_counter())
        labels = postprocess(prob, counter.threshold, params)
        marks.append(time.perf_counter())
        cell_table(labels, image)
        marks.append(time.perf_counter())
        count_cli.write_labels(labels, out / "labels" / f"{path.stem}.tif")
        marks.append(time.perf_counter())
        picture = render_overlay(image, labels, numbers=True)
        marks.append(time.perf_counter())
        save_png(picture, out / "overlays" / f"{path.stem}.png")
        marks.append(time.perf_counter())
        if index >= 1:
            for name, (start, stop) in zip(STAGES, pairwise(marks), strict=True):
                stages[name].append(stop - start)
    stats = {name: Stats(samples, 1) for name, samples in stages.items()}
    stats["total"] = Stats([sum(parts) for parts in zip(*stages.values(), strict=True)], 1)
    return stats


def run_cli(argv: Sequence[str], out: Path) -> tuple[Stats, float, int, list[dict[str, str]]]:
    """``cellcount count`` in-process: per-image times, wall time, exit status, rows.

    The per-image times are the intervals between finished rows (the first from
    the start of the first image's read), so with reading and writing overlapping
    prediction they are the folder's steady cost per image; checkpoint load and
    hash are not in them.
    """
    marks: list[float] = []
    real_read, real_add = count_cli.ImageCounting.read, count_cli.CountsTable.add

    def read(self: count_cli.ImageCounting, pair: tuple[Path, str]) -> count_cli.Job:
        if not marks:
            marks.append(time.perf_counter())
        return real_read(self, pair)

    def add(self: count_cli.CountsTable, row: dict[str, Any]) -> None:
        real_add(self, row)
        marks.append(time.perf_counter())

    count_cli.ImageCounting.read, count_cli.CountsTable.add = read, add  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        status = count_cli.main(list(argv))
        wall = time.perf_counter() - start
    finally:
        count_cli.ImageCounting.read, count_cli.CountsTable.add = real_read, real_add  # type: ignore[method-assign]
    with (out / "counts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return Stats([b - a for a, b in pairwise(marks)]), wall, status, rows


def linked(images: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to ``images`` (the CLI counts whole folders)."""
    folder.mkdir(parents=True)
    for image in images:
        (folder / image.name).symlink_to(image.resolve())
    return folder


def _cli_results(cases: Sequence[CliCase], images: list[Path], scratch: Path) -> list[Result]:
    """Run every CLI case on (the first N of) ``images``; per-image times, wall, counts."""
    checkpoints = {arch: make_checkpoint(scratch, arch) for arch in
                   {c.model for c in cases if c.model != "pretrained"}}  # fmt: skip
    out = []
    for index, case in enumerate(cases):
        subset = images[: case.images] if case.images else images
        folder = linked(subset, scratch / f"in{index}")
        dest = scratch / f"out{index}"
        per_image, wall, status, counted = run_cli(case.argv(folder, checkpoints, dest), dest)
        out.append(
            {
                "label": case.label,
                "per_image": per_image,
                "wall_s": wall,
                "rows": len(counted),
                "counts": [int(row["count"]) for row in counted if row["count"] != ""],
                "status": status,
            }
        )
        progress(f"counting CLI, {case.label}: {per_image.median:.2f} s per image")
    return out


def default_cases(archs: Sequence[str], unet_images: int) -> list[CliCase]:
    """The default-options row, its variations, then each architecture untrained."""
    cases = [
        CliCase("`--model pretrained` (defaults: bf16 auto, labels + overlays)", "pretrained"),
        CliCase("`--model pretrained --no-overlays`", "pretrained", ("--no-overlays",)),
        CliCase("`--model pretrained --precision fp32`", "pretrained", ("--precision", "fp32")),
        CliCase(
            "`--model pretrained --cell-diameter 40` (size given, not estimated)",
            "pretrained",
            ("--cell-diameter", "40"),
        ),
    ]
    for arch in archs:
        limit = unet_images if arch == "unet" else None
        cases.append(CliCase(f"`--model` untrained `{arch}`", arch, (), limit))
    return cases


def run(images: list[Path], repeats: int, cases: Sequence[CliCase]) -> Result:
    """Counter stage breakdown on ``images[0]``, then each CLI case on the real images.

    Returns:
        The first image's name and size, the Counter's settings, ``stages`` (stage
        name -> :class:`Stats`, with ``total``), ``truth`` (cells in each image's
        mask) and ``cli`` (one :func:`_cli_results` entry per case; the first is
        the default-options row).
    """
    first = images[0]
    counter = Counter.from_checkpoint("pretrained", device="cpu", cell_diameter=FNC_CELL_DIAMETER)
    height, width = read_image(first).shape[:2]
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as scratch:
        scratch_dir = Path(scratch)
        stages = _stage_times(counter, first, scratch_dir / "api", repeats)
        progress(f"counting via Counter: {stages['total'].median:.2f} s per image")
        cli = _cli_results(cases, images, scratch_dir)
    return {
        "image": first.name,
        "height": height,
        "width": width,
        "threshold": counter.threshold,
        "precision": counter.precision,
        "tile_size": DEFAULT_TILE_SIZE,
        "stages": stages,
        "truth": [int(read_labels(_mask(path)).max(initial=0)) for path in images],
        "cli": cli,
    }


def _mask(image: Path) -> Path:
    """The ground-truth mask next to a real image (``../masks/<same name>``)."""
    return image.parent.parent / "masks" / image.name
