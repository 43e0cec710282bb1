"""The automatic cell size across cell sizes: held-out real images rescaled to 8-120 px cells.

    CELLCOUNT_DSB=... CELLCOUNT_FNC=... make size-sweep   # -> docs/results/size_sweep.md

Every held-out image of :mod:`scripts.real_data` (or the first ``--per-set`` of each set)
is resized, with its truth, so that its true median cell diameter becomes each of
``--diameters`` px (area averaging down, bilinear up; the truth by nearest neighbour), and
counted as ``cellcount count`` runs it with no size given. Per set and size: the size
estimate's median error |d_est / d - 1| and the share of images within 25 %, F1 and MPE
(matched within 1.25 true median diameters, as ``real_data``), and the median seconds per
image. Resized images of more than :data:`MAX_PIXELS` pixels or a side under
:data:`MIN_SIDE` px are left out (the table says how many were counted).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cellcount.counter import Counter
from cellcount.data.io import read_image
from cellcount.data.sizes import median_diameter, rescale_truth, rescaled_shape
from cellcount.evaluation.matching import label_mask
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.scoring import score_image
from cellcount.runtime.files import atomic_write_text, write_csv
from scripts.common import REPO, held_out_parser, require_held_out_data
from scripts.real_data import (
    RADIUS_PER_DIAMETER,
    first_per_set,
    held_out_images,
    read_truth,
    share_within_25,
    size_errors,
)

OUT = REPO / "docs" / "results"
DIAMETERS = (8.0, 12.0, 20.0, 40.0, 80.0, 120.0)
MAX_PIXELS = 30_000_000
MIN_SIDE = 64


def rescaled(
    image: np.ndarray, truth: np.ndarray, diameter: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """An image and its int (H, W) truth labels resized so the cells' median diameter is
    ``diameter`` px; None when the result would be too large or too small to count.

    Args:
        image: (H, W) or (H, W, C) image of any dtype.
        truth: int (H, W) instance labels, 0 = background.
    """
    factor = diameter / median_diameter(truth)
    height, width = rescaled_shape(truth.shape, factor)
    if height * width > MAX_PIXELS or min(height, width) < MIN_SIDE:
        return None
    smooth = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=smooth)
    return resized, rescale_truth(truth, factor)


def sweep_image(counter: Counter, image: np.ndarray, truth: np.ndarray,
                diameters: tuple[float, ...]) -> list[dict[str, Any]]:  # fmt: skip
    """One result per size the image could be resized to: the size asked, the true and
    estimated diameters (px), the matching and the seconds of the count."""
    results = []
    for diameter in diameters:
        pair = rescaled(image, truth, diameter)
        if pair is None:
            continue
        resized, labels = pair
        true_d = median_diameter(labels) or diameter
        start = time.perf_counter()
        counted = counter.count(resized)
        seconds = time.perf_counter() - start
        match = score_image(counted.labels, labels, RADIUS_PER_DIAMETER * true_d).match
        results.append({"diameter": diameter, "true_d": true_d, "auto_d": counted.cell_diameter,
                        "match": match, "seconds": seconds})  # fmt: skip
    return results


def summary_rows(by_key: dict[tuple[str, float], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (set, size): images, size error, share within 25 %, F1, MPE, seconds."""
    rows = []
    for (name, diameter), results in by_key.items():
        metrics = summarize(r["match"] for r in results)
        rows.append({"set": name, "cell diameter": diameter, "images": len(results),
                     "size error": float(np.median(size_errors(results, "auto_d"))),
                     "within 25 %": share_within_25(results, "auto_d"),
                     "f1": metrics["f1"], "mpe": metrics["mpe"],
                     "seconds": float(np.median([r["seconds"] for r in results]))})  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The per-set, per-size table."""
    columns = ["set", "cell diameter (px)", "images", "size error", "within 25 %", "F1",
               "MPE", "s/image"]  # fmt: skip
    lines = [f"`{command}`", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]  # fmt: skip
    for row in rows:
        shares = (f"{100 * row[key]:.0f} %" for key in ("size error", "within 25 %"))
        scores = (f"{row['f1']:.3f}", f"{100 * row['mpe']:+.1f} %", f"{row['seconds']:.2f}")
        cells = [row["set"], f"{row['cell diameter']:g}", str(row["images"]), *shares, *scores]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(dsb: Path, fnc: Path, model: str, per_set: int | None,
        diameters: tuple[float, ...]) -> list[dict[str, Any]]:  # fmt: skip
    """Sweep every held-out set (or its first ``per_set`` images); the summary rows."""
    counter = Counter.from_checkpoint(model, "cpu")
    by_key: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    items = first_per_set(held_out_images(dsb, fnc), per_set)
    for index, (name, image_path, truth_path) in enumerate(items):
        print(f"[{index + 1}/{len(items)}] {name} {image_path.name}", file=sys.stderr, flush=True)
        truth = read_truth(truth_path)
        labels = label_mask(truth) if truth.dtype == bool else truth
        for result in sweep_image(counter, read_image(image_path), labels, diameters):
            by_key[(name, result["diameter"])].append(result)
    return summary_rows(dict(sorted(by_key.items())))


def main(argv: list[str] | None = None) -> int:
    parser = held_out_parser(__doc__.splitlines()[0], OUT)
    parser.add_argument("--per-set", type=int, default=10, help="at most N images per set")
    parser.add_argument("--diameters", type=float, nargs="+", default=list(DIAMETERS))
    args = parser.parse_args(argv)
    require_held_out_data(args)
    rows = run(args.data_root, args.fnc_root, args.model, args.per_set, tuple(args.diameters))
    write_csv(args.out / "size_sweep.csv", rows)
    sizes = " ".join(f"{d:g}" for d in args.diameters)
    command = (f"python -m scripts.size_sweep --model {args.model} --per-set {args.per_set} "
               f"--diameters {sizes}")  # fmt: skip
    text = markdown(rows, command)
    atomic_write_text(args.out / "size_sweep.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
