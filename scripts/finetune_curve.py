"""Fine-tuning from clicks: F1 and MAE against the number of annotated images and minutes.

    CELLCOUNT_DSB=... python -m scripts.finetune_curve --images 1 3 10 30 --budget 4 \
        --minutes 1 2 4 8 --at 10

Two axes: the number of annotated images (each fine-tuned for ``--budget``
minutes), and minutes of fine-tuning on ``--at`` images (or all of a set's pool
when it holds fewer).

Stains the shipped model never trained on, with their masks reduced to centroid clicks:

* ``dsb_360x360``, a held-out DSB 2018 source: the last 40 images (by name) are the
  test set; fine-tuning uses the first N of the others;
* ``fnc_red``: the two FNC red images the model trained on are the annotated ones, the
  two held-out ones (never seen) the test set.

Each fine-tuning run is ``cellcount finetune`` with its defaults (under 5 images it
cross-validates, else it holds out 0.3 of the N images for its thresholds); the test
images are counted by the shipped and the fine-tuned model (sizes estimated per image)
and matched to the clicks. Writes
``docs/results/finetune.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from cellcount.counter import Counter
from cellcount.data.io import read_labels, read_mask
from cellcount.evaluation.matching import centres, label_mask
from cellcount.evaluation.truth_points import score_labels, summary
from cellcount.runtime.files import atomic_write_text, write_csv
from cellcount.training.finetune import FinetuneOptions, finetune
from scripts.common import (
    DSB_FULL,
    FNC_SAMPLES,
    HELD_OUT_FNC,
    REPO,
    held_out_sources,
    require_folder,
)

OUT = REPO / "docs" / "results"
COLUMNS = ("set", "images", "minutes", "epochs", "trained_min", "model", "test_images",
           "precision", "recall", "f1", "mae", "mpe")  # fmt: skip


def write_clicks(pairs: list[tuple[Path, Path]], folder: Path) -> list[tuple[Path, str]]:
    """Copy images into ``folder/images`` and their truth as centroid CSVs into
    ``folder/points``; return the (image, name) list."""
    for sub in ("images", "points"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    items = []
    for image, truth in pairs:
        labels = (
            read_labels(truth) if truth.parent.name == "labels" else label_mask(read_mask(truth))
        )
        clicks = centres(labels, "centroid")
        rows = "".join(f"{col:.2f},{row:.2f}\n" for row, col in clicks)
        atomic_write_text(folder / "points" / f"{image.stem}.csv", "X,Y\n" + rows)
        shutil.copy(image, folder / "images" / image.name)
        items.append((folder / "images" / image.name, image.stem))
    return items


def score(counter: Counter, test: list[tuple[Path, str]], points: Path) -> dict[str, float]:
    """Micro scores of a counter on the test images against their clicks."""
    rows = []
    for path, name in test:
        result = counter.count(path)
        rows.append(score_labels(result.labels, points, name, result.cell_diameter))
    return summary(rows)


def sets(
    dsb: Path, fnc: Path
) -> dict[str, tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]]:
    """Per set: (annotation pool, test pairs)."""
    names = sorted(n for n, s in held_out_sources(dsb).items() if s == "dsb_360x360")
    pairs = [(dsb / "images" / f"{n}.png", dsb / "labels" / f"{n}.png") for n in names]
    red = sorted((fnc / "red" / "images").glob("*.png"))
    red_pairs = [(p, fnc / "red" / "masks" / p.name) for p in red]
    return {
        "dsb_360x360": (pairs[:-40], pairs[-40:]),
        "fnc_red": ([p for p in red_pairs if p[0].stem not in HELD_OUT_FNC],
                    [p for p in red_pairs if p[0].stem in HELD_OUT_FNC]),
    }  # fmt: skip


def run_set(name: str, pool: list, test: list, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of one set: the shipped model, then one per (images, minutes)."""
    work = args.work / name
    test_items = write_clicks(test, work / "test")
    row = {"set": name, "test_images": len(test)}
    shipped = score(Counter.from_checkpoint("pretrained"), test_items, work / "test" / "points")
    rows = [
        {
            **row,
            "images": 0,
            "minutes": 0,
            "epochs": 0,
            "trained_min": 0.0,
            "model": "pretrained",
            **shipped,
        }
    ]
    for count, minutes in runs(len(pool), args):
        train = write_clicks(pool[:count], work / f"train_{count}")
        out = work / f"tuned_{count}_{minutes:g}.ckpt"
        if not out.is_file():  # a finished run is reused: an interrupted curve resumes
            finetune(FinetuneOptions(train, work / f"train_{count}" / "points", out,
                                     minutes=minutes, progress=False))  # fmt: skip
        scores = score(Counter.from_checkpoint(out, "cpu"), test_items, work / "test" / "points")
        rows.append({**row, "images": count, "minutes": minutes, "model": "fine-tuned",
                     **used(out), **scores})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def used(checkpoint: Path) -> dict[str, float]:
    """Epochs of the final run and minutes of every run of a fine-tuning (its folds, when it
    cross-validated, and the final run; early stopping may end each before its budget),
    from each run's record, written at its start (run_info.json) and end (results.json)."""
    work = checkpoint.with_name(f"{checkpoint.stem}_finetune")
    seconds = sum((run / "results.json").stat().st_mtime - (run / "run_info.json").stat().st_mtime
                  for run in [*sorted(work.glob("fold*")), work / "run"])  # fmt: skip
    epochs = json.loads((work / "run" / "results.json").read_text())["epochs"]
    return {"epochs": epochs, "trained_min": seconds / 60}


def runs(pool: int, args: argparse.Namespace) -> list[tuple[int, float]]:
    """(images, minutes) of each fine-tuning run of a set with ``pool`` annotated
    images: the images axis at the budget, then the minutes axis at ``--at`` images."""
    at = min(args.at, pool)
    wanted = [(n, args.budget) for n in args.images if n <= pool]
    wanted += [(at, minutes) for minutes in args.minutes]
    return sorted(set(wanted))


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The curve as a table (budget and what the run used, then the scores)."""
    lines = [
        f"`{command}`\n",
        "| set | annotated images | budget (min) | epochs | trained (min) | model | test images "
        "| precision | recall | F1 | MAE | MPE |",
        "|---|" + "---:|" * 4 + "---|" + "---:|" * 6,
    ]
    for r in rows:
        lines.append(f"| {r['set']} | {r['images']} | {r['minutes']:g} | {r['epochs']} | "
                     f"{r['trained_min']:.1f} | {r['model']} | {r['test_images']} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                     f"{r['mae']:.2f} | {r['mpe']:+.1%} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, budget: float, at: int) -> None:
    """F1 and MAE against annotated images (at the budget) and against minutes trained
    (at ``at`` images, or a set's whole pool when smaller), one line per set; the shipped
    model at 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6.5), layout="constrained")
    axes = figure.subplots(2, 2)
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == name]
        by_images = sorted(
            (r for r in mine if r["minutes"] in (0, budget)), key=lambda r: r["images"]
        )
        images = int(min(at, max(r["images"] for r in mine)))
        by_time = sorted(
            (r for r in mine if r["images"] in (0, images)), key=lambda r: r["trained_min"]
        )
        for column, metric in enumerate(("f1", "mae")):
            axes[column, 0].plot([r["images"] for r in by_images], [r[metric] for r in by_images],
                                 "o-", label=name)  # fmt: skip
            axes[column, 1].plot([r["trained_min"] for r in by_time], [r[metric] for r in by_time],
                                 "o-", label=f"{name} ({images} images)")  # fmt: skip
    for column, metric in enumerate(("F1", "MAE (cells per image)")):
        axes[column, 0].set(xlabel=f"annotated images ({budget:g} min budget)", ylabel=metric)
        axes[column, 1].set(xlabel="minutes of fine-tuning used", ylabel=metric)
        for axis in axes[column]:
            axis.grid(alpha=0.3)
            if column == 1:
                axis.set_yscale("log")
    axes[0, 0].legend(), axes[0, 1].legend()
    figure.suptitle("Fine-tuning from clicks, scored on held-out images (0 = shipped model)")
    FigureCanvasAgg(figure).print_png(str(path))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The curve's CSV back as numbers."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    text, whole = {"set", "model"}, {"images", "epochs", "test_images"}

    def value(key: str, cell: str) -> Any:
        return cell if key in text else int(float(cell)) if key in whole else float(cell)

    return [{key: value(key, cell) for key, cell in row.items()} for row in rows]


def merged(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` rows that no ``new`` row measures again (same set, images and minutes), and
    the ``new`` rows; by set (in first-seen order), then images, then minutes."""

    def key(row: dict[str, Any]) -> tuple[str, float, float]:
        return row["set"], float(row["images"]), float(row["minutes"])

    again = {key(row) for row in new}
    rows = [row for row in old if key(row) not in again] + new
    order = list(dict.fromkeys(row["set"] for row in rows))
    return sorted(rows, key=lambda row: (order.index(row["set"]), *key(row)[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DSB_FULL)
    parser.add_argument("--fnc-root", type=Path, default=FNC_SAMPLES)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 3, 10, 30])
    parser.add_argument("--budget", type=float, default=4.0, help="minutes per run of the "
                        "images axis")  # fmt: skip
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--at", type=int, default=10, help="images of the minutes axis")
    parser.add_argument("--sets", nargs="+", default=["dsb_360x360", "fnc_red"])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "finetune_curve")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of finetune.csv this run does not measure (same "
                             "set, images and minutes are replaced)")  # fmt: skip
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw finetune_curve.png from finetune.csv")  # fmt: skip
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(read_rows(OUT / "finetune.csv"), OUT / "finetune_curve.png", args.budget, args.at)
        return 0
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    rows = []
    for name, (pool, test) in sets(args.data_root, args.fnc_root).items():
        if name in args.sets:
            rows += run_set(name, pool, test, args)
    OUT.mkdir(parents=True, exist_ok=True)
    command = "python -m scripts.finetune_curve " + " ".join(argv or sys.argv[1:])
    if args.merge:
        previous = (OUT / "finetune.md").read_text().splitlines()[0].strip("`")
        rows = merged(read_rows(OUT / "finetune.csv"), rows)
        command = f"{previous}` then `{command}"
    write_csv(OUT / "finetune.csv", [{k: r[k] for k in COLUMNS} for r in rows], COLUMNS)
    atomic_write_text(OUT / "finetune.md", markdown(rows, command))
    plot(rows, OUT / "finetune_curve.png", args.budget, args.at)
    print(markdown(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
