"""Score a model on every shipped sample set against its ground truth, per set.

    make samples-scores     # the shipped pretrained model -> docs/results/samples.md

Each image is counted as a user would (``Counter``, no cell diameter given, so it
is estimated per image; the model's counting threshold) and matched to its truth
(bounding-box centres, greedy, within the set's radius: the paper's 50 px for the
FNC neurons, 1.25 true median cell diameters for the DSB nuclei). Writes a
Markdown table (one row per set: images, true and counted cells, precision,
recall, F1, MAE, MPE), a per-image table, and one half-size overlay per set:
predicted outlines magenta, true outlines cyan, missed cells boxed blue, spurious
ones boxed red.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.transform import rescale

from cellcount import samples
from cellcount.counter import Counter
from cellcount.data.io import read_labels, read_mask
from cellcount.data.sizes import median_diameter
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.overlays import render_overlay, save_png
from cellcount.evaluation.scoring import ImageScore, score_image
from cellcount.runtime.files import atomic_write_text
from scripts.common import REPO

OUT = REPO / "docs" / "results"
SET_COLUMNS = ("set", "images", "true cells", "counted", "precision", "recall", "F1", "MAE",
               "MPE")  # fmt: skip


def score_set(model: str, name: str, out: Path) -> tuple[list[str], list[str]]:
    """The set's summary cells and per-image rows; saves the overlay of its first image."""
    info = samples.get(name)
    counter = Counter.from_checkpoint(model, "cpu")
    read_truth = read_mask if info.truth == "masks" else read_labels
    scores: list[ImageScore] = []
    rows = []
    for index, path in enumerate(samples.images(name)):
        result = counter.count(path)
        truth = read_truth(samples.truth_path(name, path))
        radius = info.match_radius or 1.25 * (median_diameter(truth) or 1.0)
        score = score_image(result.labels, truth, radius)
        scores.append(score)
        match = score.match
        rows.append(f"| {name} | {path.stem} | {match.n_true} | {match.n_pred} | "
                    f"{match.tp} | {match.fp} | {match.fn} |")  # fmt: skip
        if index == 0:
            _save_overlay(result.image, score, out / f"{name}_overlay.png")
    metrics = summarize(s.match for s in scores)
    true = sum(s.match.n_true for s in scores)
    counted = sum(s.match.n_pred for s in scores)
    cells = [name, str(len(scores)), str(true), str(counted)]
    cells += [f"{metrics[k]:.3f}" for k in ("precision", "recall", "f1")]
    cells += [f"{metrics['mae']:.2f}", f"{100 * metrics['mpe']:+.1f} %"]
    return cells, rows


def _save_overlay(image: np.ndarray, score: ImageScore, path: Path) -> None:
    drawn = render_overlay(image, score.pred_labels, score.true_labels,
                           score.false_positives, score.false_negatives)  # fmt: skip
    scale = 0.5 if max(drawn.shape[:2]) > 800 else 1.0
    half = rescale(drawn, scale, channel_axis=-1, anti_aliasing=True, preserve_range=True)
    save_png(half.astype(np.uint8), path)


def markdown(model: str, summary: list[list[str]], rows: list[str]) -> str:
    """The summary table (one row per set) and the per-image table."""
    head = "| " + " | ".join(SET_COLUMNS) + " |\n|" + "---|" * len(SET_COLUMNS)
    body = "\n".join("| " + " | ".join(cells) + " |" for cells in summary)
    per_image = "| set | image | true | counted | TP | FP | FN |\n|---|---|---|---|---|---|---|"
    return (f"`python -m scripts.score_samples --model {model}`\n\n{head}\n{body}\n\n"
            f"Per image:\n\n{per_image}\n" + "\n".join(rows) + "\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained", help="checkpoint or shipped model name")
    parser.add_argument("--sets", nargs="+", default=samples.names(), choices=samples.names())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    summary, rows = [], []
    for name in args.sets:
        cells, image_rows = score_set(args.model, name, args.out)
        summary.append(cells)
        rows += image_rows
    text = markdown(args.model, summary, rows)
    atomic_write_text(args.out / "samples.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
