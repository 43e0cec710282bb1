"""Accuracy on real images the shipped model never saw, per set, against the classical baseline.

    CELLCOUNT_DSB=... CELLCOUNT_FNC=... make real-data   # -> docs/results/real_data.md (minutes)

The sets are the shipped model's held-out test split (:func:`scripts.common.held_out_names`):
the DSB 2018 sources the model never saw (grouped by image size, see
:func:`scripts.common.dsb_sources`) and the FNC neurons of the paper's test set (yellow)
plus two red ones. Every image is counted three ways and matched to its truth with the
same code (bounding-box centres, greedy, within 1.25 true median cell diameters, as the
paper's 50 px for 40 px neurons):

* ``pretrained, auto``: ``Counter(pretrained)`` as ``cellcount count`` runs it, no diameter
  given (the size is estimated per image);
* ``pretrained, true d``: the same model told each image's true median cell diameter;
* ``classical``: smoothing, Otsu threshold, watershed, with every constant scaled by the
  true median diameter (``ClassicalSegmenter``), a fair opponent that is told the size.

Per set: precision, recall, F1, MAE, MPE, the size estimate's error (median |d_est/d - 1|
and the share of images within +-25 %) and seconds per image of auto vs given size.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cellcount.counter import Counter
from cellcount.data.io import read_image, read_labels, read_mask
from cellcount.data.sizes import median_diameter
from cellcount.evaluation.classical import ClassicalSegmenter
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.overlays import render_overlay, save_png
from cellcount.evaluation.scoring import ImageScore, score_image
from cellcount.runtime.files import atomic_write_text, write_csv
from scripts.common import (
    REPO,
    held_out_names,
    held_out_parser,
    held_out_sources,
    require_held_out_data,
)

OUT = REPO / "docs" / "results"
RADIUS_PER_DIAMETER = 1.25
METHODS = ("pretrained, auto", "pretrained, true d", "classical, true d")


def held_out_images(dsb: Path, fnc: Path) -> list[tuple[str, Path, Path]]:
    """``(set, image, truth)`` of every held-out image, DSB sources first."""
    names = set(held_out_names(dsb))
    sources = held_out_sources(dsb)
    items = [(sources[n], dsb / "images" / f"{n}.png", dsb / "labels" / f"{n}.png")
             for n in sorted(sources)]  # fmt: skip
    for colour in ("yellow", "red"):
        for path in sorted((fnc / colour / "images").glob("*.png")):
            if path.stem in names:
                set_name = "fnc_yellow_test" if colour == "yellow" else "fnc_red"
                items.append((set_name, path, fnc / colour / "masks" / path.name))
    return items


def read_truth(path: Path) -> np.ndarray:
    """A held-out image's truth: int (H, W) DSB instance labels (``labels/``), or a bool
    (H, W) FNC mask."""
    return read_labels(path) if path.parent.name == "labels" else read_mask(path)


def score_one(counters: dict[str, Counter], image_path: Path, truth_path: Path) -> dict[str, Any]:
    """Scores, size estimate and timings of one image under every method."""
    truth = read_truth(truth_path)
    true_d = median_diameter(truth) or 1.0
    radius = RADIUS_PER_DIAMETER * true_d
    start = time.perf_counter()
    auto = counters["auto"].count(image_path)
    auto_seconds = time.perf_counter() - start
    given = Counter(counters["auto"].module, cell_diameter=true_d)
    start = time.perf_counter()
    told = given.count(image_path)
    given_seconds = time.perf_counter() - start
    classical = ClassicalSegmenter(true_d)(read_image(image_path))
    scores = {METHODS[0]: score_image(auto.labels, truth, radius),
              METHODS[1]: score_image(told.labels, truth, radius),
              METHODS[2]: score_image(classical, truth, radius)}  # fmt: skip
    counter = counters["auto"]
    looks = counter.appearance_diameter(auto.image) if counter.size_model else None
    return {"scores": scores, "true_d": true_d, "auto_d": auto.cell_diameter, "looks_d": looks,
            "seconds": (auto_seconds, given_seconds), "image": auto.image}  # fmt: skip


def set_rows(name: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per method for a set."""
    auto_s, given_s = (float(np.median([r["seconds"][i] for r in results])) for i in (0, 1))
    rows = []
    for method in METHODS:
        metrics = summarize(r["scores"][method].match for r in results)
        row = {"set": name, "images": len(results), "method": method,
               "true cells": sum(r["scores"][method].match.n_true for r in results),
               "counted": sum(r["scores"][method].match.n_pred for r in results),
               **{k: metrics[k] for k in ("precision", "recall", "f1", "mae", "mpe")}}  # fmt: skip
        if method == METHODS[0]:
            row.update({"size error (median)": float(np.median(size_errors(results, "auto_d"))),
                        "size within 25 %": share_within_25(results, "auto_d"),
                        "appearance within 25 %": share_within_25(results, "looks_d"),
                        "s/image auto vs given": f"{auto_s:.2f} / {given_s:.2f}"})  # fmt: skip
        rows.append(row)
    return rows


def size_errors(results: list[dict[str, Any]], key: str) -> np.ndarray:
    """|estimate / true diameter - 1| of each result whose size estimate ``key`` is set."""
    return np.abs([r[key] / r["true_d"] - 1 for r in results if r[key] is not None])


def share_within_25(results: list[dict[str, Any]], key: str) -> float:
    """Share of images whose size estimate ``key`` is within 25 % of the truth (NaN: none)."""
    errors = size_errors(results, key)
    return float(np.mean(errors <= 0.25)) if errors.size else float("nan")


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The per-set table, numbers rounded for reading."""
    columns = ["set", "images", "method", "true cells", "counted", "precision", "recall", "F1",
               "MAE", "MPE", "size error", "size within 25 %", "appearance within 25 %",
               "s/image auto / given"]  # fmt: skip
    lines = [f"`{command}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row["set"], str(row["images"]), row["method"], str(row["true cells"]),
                 str(row["counted"]), *(f"{row[k]:.3f}" for k in ("precision", "recall", "f1")),
                 f"{row['mae']:.2f}", f"{100 * row['mpe']:+.1f} %"]  # fmt: skip
        cells += _size_cells(row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _size_cells(row: dict[str, Any]) -> list[str]:
    """The size-estimate and timing cells (only the auto row has them)."""
    if "size error (median)" not in row:
        return ["", "", "", ""]
    shares = [row[key] for key in ("size within 25 %", "appearance within 25 %")]
    return [f"{100 * row['size error (median)']:.0f} %",
            *("" if np.isnan(share) else f"{100 * share:.0f} %" for share in shares),
            row["s/image auto vs given"]]  # fmt: skip


def first_per_set(
    items: list[tuple[str, Path, Path]], per_set: int | None
) -> list[tuple[str, Path, Path]]:
    """At most ``per_set`` items of each set (all when None), in order."""
    if per_set is None:
        return items
    taken: dict[str, int] = defaultdict(int)
    kept = []
    for item in items:
        if taken[item[0]] < per_set:
            taken[item[0]] += 1
            kept.append(item)
    return kept


def _overlay(result: dict[str, Any], path: Path) -> None:
    score: ImageScore = result["scores"][METHODS[0]]
    picture = render_overlay(result["image"], score.pred_labels, score.true_labels,
                             score.false_positives, score.false_negatives)  # fmt: skip
    save_png(picture if max(picture.shape[:2]) <= 1000 else picture[::2, ::2], path)


def run(
    dsb: Path, fnc: Path, model: str, out: Path, per_set: int | None = None
) -> list[dict[str, Any]]:
    """Score every held-out set (or its first ``per_set`` images); write a CSV and overlays."""
    counters = {"auto": Counter.from_checkpoint(model, "cpu")}
    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    items = first_per_set(held_out_images(dsb, fnc), per_set)
    for index, (name, image, truth) in enumerate(items):
        print(f"[{index + 1}] {name} {image.name}", file=sys.stderr, flush=True)
        result = score_one(counters, image, truth)
        if not by_set[name]:
            _overlay(result, out / f"real_{name}.png")
        by_set[name].append(result)
    rows = [row for name, results in by_set.items() for row in set_rows(name, results)]
    write_csv(out / "real_data.csv", rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = held_out_parser(__doc__.splitlines()[0], OUT)
    parser.add_argument("--per-set", type=int, default=None, help="at most N images per set")
    args = parser.parse_args(argv)
    require_held_out_data(args)
    rows = run(args.data_root, args.fnc_root, args.model, args.out, args.per_set)
    text = markdown(rows, f"python -m scripts.real_data --model {args.model}")
    atomic_write_text(args.out / "real_data.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
