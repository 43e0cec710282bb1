"""Counts of a model on the four real FNC yellow samples, against their masks.

    make fnc-samples     # the shipped pretrained model -> benchmarks/results/fnc_yellow_d*.md

Each image is counted as a user would (``Counter``, cells of about 40 px, the
model's threshold) and matched to its mask (connected components; centroids
within 50 px, the paper's rule). Writes a Markdown table and, for the README,
a half-size overlay picture of one image: predicted outlines magenta, true
outlines cyan, missed cells boxed blue, spurious ones boxed red.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.transform import rescale

from benchmarks.bench_common import FNC_CELL_DIAMETER, FNC_RADIUS, FNC_YELLOW, REPO
from cellcount.counter import Counter
from cellcount.data.io import image_files, read_mask
from cellcount.evaluation.overlays import render_overlay, save_png
from cellcount.evaluation.scoring import score_image
from cellcount.runtime.files import atomic_write_text

RESULTS = REPO / "benchmarks" / "results"


def count_samples(counter: Counter, folder: Path, picture_of: str, picture: Path) -> list[str]:
    """Markdown rows (image, mask count, predicted count, TP, FP, FN) of every sample."""
    rows = []
    for path in image_files(folder / "images"):
        result = counter.count(path)
        score = score_image(result.labels, read_mask(folder / "masks" / path.name), FNC_RADIUS)
        match = score.match
        cells = [match.n_true, match.n_pred, f"{match.n_pred - match.n_true:+d}"]
        cells += [match.tp, match.fp, match.fn]
        rows.append("| " + " | ".join(map(str, [path.stem, *cells])) + " |")
        if path.stem.startswith(picture_of):
            drawn = render_overlay(result.image, result.labels, score.true_labels,
                                   score.false_positives, score.false_negatives)  # fmt: skip
            half = rescale(drawn, 0.5, channel_axis=-1, anti_aliasing=True, preserve_range=True)
            save_png(half.astype(np.uint8), picture)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained", help="checkpoint or shipped model name")
    parser.add_argument("--data", type=Path, default=FNC_YELLOW)
    parser.add_argument("--cell-diameter", type=float, default=FNC_CELL_DIAMETER)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--picture-of", default="Mar32bS2C2R2_DMl", help="image for the overlay")
    args = parser.parse_args(argv)
    counter = Counter.from_checkpoint(args.model, "cpu", cell_diameter=args.cell_diameter)
    stem = f"fnc_yellow_d{args.cell_diameter:g}"
    picture = args.out / f"{stem}_overlay.png"
    rows = count_samples(counter, args.data, args.picture_of, picture)
    table = "\n".join([
        "| image | cells in mask | counted | difference | TP | FP | FN |",
        "|---|---|---|---|---|---|---|", *rows,
    ])  # fmt: skip
    command = (
        f"python -m benchmarks.fnc_samples --model {args.model} "
        f"--cell-diameter {args.cell_diameter:g}"
    )
    atomic_write_text(args.out / f"{stem}.md", f"`{command}`\n\n{table}\n")
    print(table)
    print(f"overlay: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
