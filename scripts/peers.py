"""Cellpose 3 beside cellcount, trained on the same DSB 2018 images: ``make peers``.

    make peers-env      # .venv-peers: Cellpose 3 (its own numpy pin), sharing .venv's torch
    CELLCOUNT_DSB=... make peers   # train Cellpose once (55 min), then score both tools

Cellpose has no pretrained weights here (they would be downloaded), so it is
trained from scratch with its own training API (``benchmarks/peers/cellpose_peer.py``)
on the DSB images of the sources the shipped cellcount model trained on
(:data:`scripts.common.TRAIN_DSB_SOURCES`, less the shipped samples: 377 images; the
cellcount model saw the same images, less its validation share, plus synthetic and
FNC images), for the time ``make pretrained`` takes on 2 CPU cores (55 minutes).
Both tools then count the held-out DSB sources (the test sets of ``make real-data``)
with no size given: cellcount estimates each image's cell size, Cellpose uses its
size model. Both are matched to the truth by the same code and radius (1.25 true
median diameters; :func:`cellcount.evaluation.scoring.score_image`). Writes
``docs/results/peers.md`` and ``.csv``; ``make bench`` section 10 measures the same
and the speed side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellcount.counter import Counter
from cellcount.data.io import read_labels
from cellcount.data.sizes import median_diameter
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.scoring import score_image
from cellcount.runtime.files import atomic_write_text, write_csv
from scripts.common import (
    DSB_FULL,
    REPO,
    TRAIN_DSB_SOURCES,
    dsb_sources,
    held_out_names,
    held_out_sources,
    require_folder,
)

PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
RUNNER = REPO / "benchmarks" / "peers" / "cellpose_peer.py"
MODEL_DIR = REPO / "outputs" / "peers" / "cellpose_dsb"
BUDGET_MINUTES = 55.0  # `make pretrained` on 2 CPU cores
RADIUS_PER_DIAMETER = 1.25
OUT = REPO / "docs" / "results"
TOOLS = ("cellcount (pretrained, auto size)", "Cellpose 3 (from scratch, size model)")
COLUMNS = ("set", "tool", "images", "precision", "recall", "f1", "mae", "mpe")


def training_pairs(dsb: Path) -> list[tuple[str, str]]:
    """(image, labels) paths of the DSB images of the training sources, samples left out."""
    held = set(held_out_names(dsb))
    names = sorted(name for name, source in dsb_sources(dsb).items()
                   if source in TRAIN_DSB_SOURCES and name not in held)  # fmt: skip
    return [(str(dsb / "images" / f"{n}.png"), str(dsb / "labels" / f"{n}.png")) for n in names]


def peer(*args: str) -> str:
    """Run the Cellpose runner in the peers environment; its stdout.

    Raises:
        SystemExit: the peers environment is missing (says how to make it).
    """
    if not PEERS_PYTHON.is_file():
        raise SystemExit(f"{PEERS_PYTHON} not found: run `make peers-env` first")
    done = subprocess.run([str(PEERS_PYTHON), str(RUNNER), *args], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


def train_cellpose(dsb: Path, minutes: float = BUDGET_MINUTES) -> dict[str, Any]:
    """Train Cellpose unless a trained model is there; its training facts."""
    facts = MODEL_DIR / "training.json"
    if not facts.is_file():
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        pairs = MODEL_DIR / "train_pairs.json"
        pairs.write_text(json.dumps(training_pairs(dsb), indent=0))
        peer("train", "--pairs", str(pairs), "--minutes", str(minutes), "--out", str(MODEL_DIR))
    return dict(json.loads(facts.read_text()))


def test_images(dsb: Path) -> dict[str, list[Path]]:
    """Held-out DSB images by source."""
    sets: dict[str, list[Path]] = {}
    for name, source in sorted(held_out_sources(dsb).items()):
        sets.setdefault(source, []).append(dsb / "images" / f"{name}.png")
    return sets


def cellpose_labels(images: list[Path], scratch: Path) -> dict[str, np.ndarray]:
    """Cellpose's labels of every image (one runner call)."""
    listing = scratch / "images.json"
    listing.write_text(json.dumps([str(path) for path in images]))
    peer("predict", "--model", str(MODEL_DIR), "--images", str(listing), "--out", str(scratch))
    return {path.stem: tifffile.imread(scratch / f"{path.stem}.tif") for path in images}


def score_sets(dsb: Path) -> list[dict[str, Any]]:
    """Per held-out source and tool: precision, recall, F1, MAE, MPE (same matching)."""
    sets = test_images(dsb)
    counter = Counter.from_checkpoint("pretrained", "cpu")
    with tempfile.TemporaryDirectory(prefix="cellcount-peers-") as scratch:
        theirs = cellpose_labels([p for paths in sets.values() for p in paths], Path(scratch))
    rows = []
    for source, paths in sets.items():
        matches: dict[str, list[Any]] = {tool: [] for tool in TOOLS}
        for path in paths:
            truth = read_labels(dsb / "labels" / path.name)
            radius = RADIUS_PER_DIAMETER * (median_diameter(truth) or 1.0)
            for tool, labels in zip(TOOLS, (counter.count(path).labels, theirs[path.stem]),
                                    strict=True):  # fmt: skip
                matches[tool].append(score_image(labels, truth, radius).match)
        for tool in TOOLS:
            metrics = summarize(matches[tool])
            rows.append({"set": source, "tool": tool, "images": len(paths),
                         **{key: metrics[key] for key in COLUMNS[3:]}})  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], facts: dict[str, Any], command: str) -> str:
    """The per-set table with how Cellpose was trained."""
    lines = [
        f"`{command}`\n",
        f"Cellpose {facts['cellpose']} trained from scratch on {facts['images']} DSB images "
        f"for {facts['train_s'] / 60:.1f} min ({facts['epochs']} epochs of "
        f"{facts['epoch_s']:.0f} s, then its size model) on {facts['torch_threads']} CPU "
        "threads.\n",
        "| set | tool | images | precision | recall | F1 | MAE | MPE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        scores = f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['mae']:.2f}"
        lines.append(f"| {r['set']} | {r['tool']} | {r['images']} | {scores} | {r['mpe']:+.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DSB_FULL)
    parser.add_argument("--minutes", type=float, default=BUDGET_MINUTES)
    args = parser.parse_args(argv)
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    start = time.perf_counter()
    facts = train_cellpose(args.data_root, args.minutes)
    rows = score_sets(args.data_root)
    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(OUT / "peers.csv", rows, COLUMNS)
    command = "make peers"
    atomic_write_text(OUT / "peers.md", markdown(rows, facts, command))
    print(markdown(rows, facts, command))
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
