"""Which cells the shipped model misses on held-out real images, and why, per set.

    CELLCOUNT_DSB=... CELLCOUNT_FNC=... python -m scripts.missed_cells
    # -> docs/results/missed_cells.md (a few minutes)

The images and the matching are those of :mod:`scripts.real_data` (``pretrained``, size
estimated per image, greedy within 1.25 true median diameters). Every true cell left
without a partner falls in one class:

* ``merged``: a detection matched to another cell covers part of it (under-split);
* ``small, border`` / ``small, inside``: no detection covers it and its area is under
  :data:`SMALL_SHARE` of a disc of the image's median diameter (cut by the image border,
  or a small nucleus);
* ``full size``: no detection covers it, and it is not small.

and, by the highest probability the model gives its pixels: over the counting threshold
(found, then lost in post-processing), dim (from :data:`DIM_FROM` to the threshold) or
faint (under :data:`DIM_FROM`). It diagnoses; it chooses nothing.
"""

from __future__ import annotations

import sys
from collections import Counter as Tally
from collections import defaultdict
from pathlib import Path

import numpy as np

from cellcount.counter import Counter
from cellcount.data.sizes import median_diameter
from cellcount.evaluation.scoring import ImageScore, score_image
from cellcount.runtime.files import atomic_write_text
from scripts.common import REPO, held_out_parser, require_held_out_data
from scripts.real_data import RADIUS_PER_DIAMETER, held_out_images, read_truth

OUT = REPO / "docs" / "results"
SMALL_SHARE = 0.4  # of the area of a disc of the median diameter
DIM_FROM = 0.3  # peak probability from which a missed cell counts as dim
CLASSES = ("merged", "small, border", "small, inside", "full size")
PEAKS = ("over threshold", "dim", "faint")


def missed_classes(
    score: ImageScore, probabilities: np.ndarray, threshold: float, diameter: float
) -> Tally[str]:
    """How many of an image's missed true cells fall in each class and peak band.

    Args:
        score: the image's matching (its ``false_negatives`` are true label ids).
        probabilities: float (H, W) [0, 1] cell probabilities the labels were cut from.
        threshold: the counting threshold the labels were cut at.
        diameter: the image's true median cell diameter (px).
    """
    truth, pred = score.true_labels, score.pred_labels
    unmatched = set(score.false_positives)
    small_area = SMALL_SHARE * np.pi * (diameter / 2) ** 2
    tally: Tally[str] = Tally()
    for cell in score.false_negatives:
        inside = truth == cell
        covering = set(np.unique(pred[inside]).tolist()) - {0}
        tally[_class(inside, covering, unmatched, small_area)] += 1
        peak = float(probabilities[inside].max())
        tally["over threshold" if peak > threshold else "dim" if peak >= DIM_FROM else "faint"] += 1
    return tally


def _class(inside: np.ndarray, covering: set[int], unmatched: set[int], small_area: float) -> str:
    """The class of one missed cell (bool (H, W) ``inside``; ``covering``: detections on it)."""
    if covering - unmatched:
        return "merged"
    if covering or inside.sum() >= small_area:
        return "full size"  # covered only by detections matched to nothing: too far off
    ys, xs = np.nonzero(inside)
    border = ys.min() == 0 or xs.min() == 0
    border |= ys.max() == inside.shape[0] - 1 or xs.max() == inside.shape[1] - 1
    return "small, border" if border else "small, inside"


def tally_sets(dsb: Path, fnc: Path, model: str) -> dict[str, Tally[str]]:
    """Per held-out set: true cells, missed cells and each class and peak band."""
    counter = Counter.from_checkpoint(model, "cpu")
    sets: dict[str, Tally[str]] = defaultdict(Tally)
    for index, (name, image, truth_path) in enumerate(held_out_images(dsb, fnc)):
        print(f"[{index + 1}] {name} {image.name}", file=sys.stderr, flush=True)
        truth = read_truth(truth_path)
        diameter = median_diameter(truth) or 1.0
        result = counter.count(image)
        score = score_image(result.labels, truth, RADIUS_PER_DIAMETER * diameter)
        probabilities = counter.probabilities(result.image, result.cell_diameter)
        sets[name] += missed_classes(score, probabilities, counter.threshold, diameter)
        sets[name]["true cells"] += int(score.true_labels.max())
        sets[name]["missed"] += len(score.false_negatives)
    return sets


def markdown(sets: dict[str, Tally[str]], command: str) -> str:
    """The per-set table: missed cells, then each class and band as a share of them."""
    head = ["set", "true cells", "missed", *CLASSES, *PEAKS]
    lines = [f"`{command}`", "", "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]  # fmt: skip
    for name, tally in sets.items():
        shares = [f"{tally[key] / max(1, tally['missed']):.0%}" for key in (*CLASSES, *PEAKS)]
        cells = [name, str(tally["true cells"]), str(tally["missed"]), *shares]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = held_out_parser(__doc__.splitlines()[0], OUT)
    args = parser.parse_args(argv)
    require_held_out_data(args)
    sets = tally_sets(args.data_root, args.fnc_root, args.model)
    text = markdown(sets, f"python -m scripts.missed_cells --model {args.model}")
    atomic_write_text(args.out / "missed_cells.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
