"""Cellpose 3 and StarDist beside cellcount, trained on the same DSB 2018 images: ``make peers``.

    make peers-env stardist-env   # .venv-peers (Cellpose 3), .venv-stardist (StarDist, TF CPU)
    CELLCOUNT_DSB=... make peers  # train each peer once (~1 h each), then score all tools
    make peers PEERS=stardist     # only the peers named (comma-separated)

Neither peer has pretrained weights here (they would be downloaded), so each is
trained from scratch with its own training API (``benchmarks/peers/*_peer.py``, run
in its own environment) on the DSB images of the sources the shipped cellcount model
trained on (:data:`scripts.common.TRAIN_DSB_SOURCES`, less the shipped samples: 377
images; the cellcount model saw the same images, less its validation share, plus
synthetic and FNC images), for the time ``make pretrained`` takes on 2 CPU cores
(55 minutes). All tools then count the held-out DSB sources (the test sets of
``make real-data``) with no size given: cellcount estimates each image's cell size,
Cellpose uses its size model, StarDist needs none (it works at native scale). All
are matched to the truth by the same code and radius (1.25 true median diameters;
:func:`cellcount.evaluation.scoring.score_image`), then each tool's speed per 256x256 and
1600x1200 image is timed, network alone and end to end, in the same run
(:func:`compare`). Writes ``docs/results/peers.md`` (rendered as ``make bench`` section
10 is), ``peers.csv`` (accuracy) and ``peers.json`` (every figure); ``make bench``
section 10 measures the same for every peer trained so far.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from benchmarks import render
from benchmarks.bench_common import REAL_IMAGES, progress
from benchmarks.peers.peer_common import ForwardClock, time_repeats
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

BUDGET_MINUTES = 55.0  # `make pretrained` on 2 CPU cores
RADIUS_PER_DIAMETER = 1.25
OUT = REPO / "docs" / "results"
CELLCOUNT = "cellcount (pretrained, auto size)"
COLUMNS = ("set", "tool", "images", "precision", "recall", "f1", "mae", "mpe")
Timing = dict[str, list[float]]  # "network" and "total": seconds per repeat


def _cellpose_training(facts: dict[str, Any]) -> str:
    return (f"Cellpose {facts['cellpose']}: {facts['epochs']} epochs of {facts['epoch_s']:.0f} s, "
            f"then its size model; {facts['train_s'] / 60:.1f} min on "
            f"{facts['torch_threads']} CPU threads")  # fmt: skip


def _stardist_training(facts: dict[str, Any]) -> str:
    minutes = facts["cpu_s"] / facts["threads"] / 60
    return (
        f"StarDist {facts['stardist']} (TensorFlow {facts['tensorflow']}): "
        f"{facts['epochs']} epochs of {facts['steps_per_epoch']} steps "
        f"({facts['epoch_s']:.0f} s each), then threshold optimisation; {minutes:.1f} min "
        f"of {facts['threads']} cores' CPU time ({facts['train_s'] / 60:.1f} min wall)"
    )


@dataclass(frozen=True)
class Peer:
    """A peer tool: its runner script, the environment it runs in, its trained model."""

    key: str  # command-line name and timing key
    tool: str  # its name in the tables
    python: Path  # the interpreter of its environment
    env_target: str  # the make target that builds that environment
    runner: Path
    model_dir: Path
    describe: Callable[[dict[str, Any]], str]  # how it was trained, from its training.json
    timed: str  # what its end-to-end time per image includes

    def trained(self) -> bool:
        """Whether ``make peers`` has trained it."""
        return (self.model_dir / "training.json").is_file()

    def training(self) -> dict[str, Any]:
        """Its training facts (the runner's training.json)."""
        return dict(json.loads((self.model_dir / "training.json").read_text()))

    def run(self, *args: str) -> str:
        """Run its runner in its environment; the runner's stdout.

        Raises:
            SystemExit: the environment is missing (says how to make it).
        """
        if not self.python.is_file():
            raise SystemExit(f"{self.python} not found: run `make {self.env_target}` first")
        done = subprocess.run([str(self.python), str(self.runner), *args], check=True,
                              capture_output=True, text=True)  # fmt: skip
        return done.stdout


PEERS = {
    peer.key: peer
    for peer in (
        Peer("cellpose", "Cellpose 3 (from scratch, size model)",
             REPO / ".venv-peers" / "bin" / "python", "peers-env",
             REPO / "benchmarks" / "peers" / "cellpose_peer.py",
             REPO / "outputs" / "peers" / "cellpose_dsb", _cellpose_training,
             "its size model, then `eval` with the flow dynamics"),
        Peer("stardist", "StarDist 2D (from scratch, native scale)",
             REPO / ".venv-stardist" / "bin" / "python", "stardist-env",
             REPO / "benchmarks" / "peers" / "stardist_peer.py",
             REPO / "outputs" / "peers" / "stardist_dsb", _stardist_training,
             "`predict_instances`: normalisation, the network, non-maximum suppression"),
    )
}  # fmt: skip


def training_pairs(dsb: Path) -> list[tuple[str, str]]:
    """(image, labels) paths of the DSB images of the training sources, samples left out."""
    held = set(held_out_names(dsb))
    names = sorted(name for name, source in dsb_sources(dsb).items()
                   if source in TRAIN_DSB_SOURCES and name not in held)  # fmt: skip
    return [(str(dsb / "images" / f"{n}.png"), str(dsb / "labels" / f"{n}.png")) for n in names]


def train(peer: Peer, dsb: Path, minutes: float = BUDGET_MINUTES) -> dict[str, Any]:
    """Train ``peer`` unless a trained model is there (a run cut off goes on); its facts."""
    if not peer.trained():
        peer.model_dir.mkdir(parents=True, exist_ok=True)
        pairs = peer.model_dir / "train_pairs.json"
        pairs.write_text(json.dumps(training_pairs(dsb), indent=0))
        peer.run("train", "--pairs", str(pairs), "--minutes", str(minutes),
                 "--out", str(peer.model_dir))  # fmt: skip
    return peer.training()


def test_images(dsb: Path) -> dict[str, list[Path]]:
    """Held-out DSB images by source."""
    sets: dict[str, list[Path]] = {}
    for name, source in sorted(held_out_sources(dsb).items()):
        sets.setdefault(source, []).append(dsb / "images" / f"{name}.png")
    return sets


def peer_labels(peer: Peer, images: list[Path], scratch: Path) -> dict[str, np.ndarray]:
    """The peer's labels of every image (one runner call)."""
    listing = scratch / "images.json"
    listing.write_text(json.dumps([str(path) for path in images]))
    peer.run("predict", "--model", str(peer.model_dir), "--images", str(listing),
             "--out", str(scratch))  # fmt: skip
    return {path.stem: tifffile.imread(scratch / f"{path.stem}.tif") for path in images}


def score_sets(dsb: Path, chosen: list[Peer]) -> list[dict[str, Any]]:
    """Per held-out source and tool (cellcount, then each peer): precision, recall, F1,
    MAE, MPE, all matched by the same code and radius."""
    sets = test_images(dsb)
    everything = [p for paths in sets.values() for p in paths]
    counter = Counter.from_checkpoint("pretrained", "cpu")
    labels = {CELLCOUNT: {p.stem: counter.count(p).labels for p in everything}}
    for peer in chosen:
        with tempfile.TemporaryDirectory(prefix=f"cellcount-{peer.key}-") as scratch:
            labels[peer.tool] = peer_labels(peer, everything, Path(scratch))
    rows = []
    for source, paths in sets.items():
        truths = [read_labels(dsb / "labels" / path.name) for path in paths]
        radii = [RADIUS_PER_DIAMETER * (median_diameter(t) or 1.0) for t in truths]
        for tool, found in labels.items():
            pairs = zip(paths, truths, radii, strict=True)
            matches = [score_image(found[p.stem], truth, r).match for p, truth, r in pairs]
            metrics = summarize(matches)
            rows.append({"set": source, "tool": tool, "images": len(paths),
                         **{key: metrics[key] for key in COLUMNS[3:]}})  # fmt: skip
    return rows


def timing_images(dsb: Path) -> dict[str, Path]:
    """The 256x256 DSB image and the 1600x1200 FNC image the speed rows use."""
    small = next(p for p in sorted((dsb / "images").glob("*.png"))
                 if Image.open(p).size == (256, 256))  # fmt: skip
    return {"256x256": small, "1600x1200": sorted(REAL_IMAGES.glob("*.png"))[0]}


def cellcount_times(path: Path, repeats: int) -> Timing:
    """Network seconds and end-to-end seconds (from the decoded image) of counting one
    image with the shipped model, per repeat after a warm-up."""
    counter = Counter.from_checkpoint("pretrained", "cpu")
    clock = ForwardClock()
    counter.module.forward = clock.wrap(counter.module.forward)  # type: ignore[method-assign]
    normalized = counter.normalize(path)
    network, total = time_repeats(lambda: counter.count_normalized(normalized), clock, repeats)
    return {"network": network, "total": total}


def peer_times(peer: Peer, paths: list[Path], repeats: int) -> dict[str, Timing]:
    """The same two figures for a peer, by its runner in its environment; by image path."""
    out = json.loads(peer.run("time", "--model", str(peer.model_dir), "--repeats",
                              str(repeats), "--images", *map(str, paths)))  # fmt: skip
    return {name: {"network": t["network"], "total": t["total"]} for name, t in out.items()}


def time_tools(dsb: Path, chosen: list[Peer], repeats: int) -> dict[str, dict[str, Timing]]:
    """Per timing image, then per tool (``cellcount`` or a peer's key): its seconds."""
    images = timing_images(dsb)
    theirs = {peer.key: peer_times(peer, list(images.values()), repeats) for peer in chosen}
    return {label: {"cellcount": cellcount_times(path, repeats),
                    **{key: times[str(path)] for key, times in theirs.items()}}
            for label, path in images.items()}  # fmt: skip


def compare(dsb: Path, chosen: list[Peer], repeats: int) -> dict[str, Any]:
    """Everything ``make bench`` section 10 and ``docs/results/peers.md`` show, measured
    in this one run: each peer's training, accuracy per held-out source, speed per image.
    """
    accuracy = score_sets(dsb, chosen)
    progress("peers: accuracy on the held-out DSB sources done")
    timing = time_tools(dsb, chosen, repeats)
    return {
        "cellcount": CELLCOUNT,
        "peers": {peer.key: {"tool": peer.tool, "training": peer.training(), "timed": peer.timed,
                             "trained": peer.describe(peer.training())} for peer in chosen},
        "accuracy": accuracy, "timing": timing,
        "images": {label: path.name for label, path in timing_images(dsb).items()},
    }  # fmt: skip


def chosen_peers(names: str) -> list[Peer]:
    """The peers of a comma-separated list of keys.

    Raises:
        SystemExit: an unknown name (lists the known ones).
    """
    keys = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [key for key in keys if key not in PEERS]
    if unknown or not keys:
        raise SystemExit(f"unknown peers {unknown}: choose from {', '.join(PEERS)}")
    return [PEERS[key] for key in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DSB_FULL)
    parser.add_argument("--minutes", type=float, default=BUDGET_MINUTES)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per image")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated: "
                        + ", ".join(PEERS))  # fmt: skip
    args = parser.parse_args(argv)
    chosen = chosen_peers(args.peers)
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    start = time.perf_counter()
    for peer in chosen:
        train(peer, args.data_root, args.minutes)
    data = compare(args.data_root, chosen, args.repeats)
    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(OUT / "peers.csv", data["accuracy"], COLUMNS)
    atomic_write_text(OUT / "peers.json", json.dumps(data, indent=1))
    command = "make peers" + ("" if len(chosen) == len(PEERS) else f" PEERS={args.peers}")
    page = render.peers_page(data, command, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    atomic_write_text(OUT / "peers.md", page)
    print(page)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
