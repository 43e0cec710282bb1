"""Section 10: Cellpose 3 beside cellcount, accuracy and speed in the same run.

Needs the peers environment and the Cellpose model that ``make peers-env`` and
``make peers`` make (:mod:`scripts.peers`: Cellpose trained from scratch on the
same DSB images, for the same time as the shipped model). Accuracy: both tools on
the held-out DSB sources, no size given, matched by the same code
(:func:`scripts.peers.score_sets`). Speed: one 256x256 DSB image and one
1600x1200 FNC image, each tool's network alone (every forward pass, timed inside
its counting call) and end to end from the decoded image (cellcount: normalise,
estimate the size, predict, post-process, cell table; Cellpose: its size model,
``eval`` with the flow dynamics), ``repeats`` times after a warm-up, in this process
(cellcount) and in the peers environment (Cellpose) one after the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from benchmarks.bench_common import REAL_IMAGES, Result, Stats, progress
from benchmarks.peers.peer_common import ForwardClock, time_repeats
from cellcount.counter import Counter
from scripts import peers
from scripts.common import DSB_FULL, require_folder


def timing_images(dsb: Path) -> dict[str, Path]:
    """The 256x256 and the 1600x1200 image the speed rows use."""
    small = next(
        p for p in sorted((dsb / "images").glob("*.png")) if Image.open(p).size == (256, 256)
    )
    large = sorted(REAL_IMAGES.glob("*.png"))[0]
    return {"256x256": small, "1600x1200": large}


def cellcount_times(path: Path, repeats: int) -> dict[str, Stats]:
    """Network alone and end to end (from the decoded image) of counting one image."""
    counter = Counter.from_checkpoint("pretrained", "cpu")
    clock = ForwardClock()
    counter.module.forward = clock.wrap(counter.module.forward)  # type: ignore[method-assign]
    normalized = counter.normalize(path)
    network, total = time_repeats(lambda: counter.count_normalized(normalized), clock, repeats)
    return {"network": Stats(network), "total": Stats(total)}


def cellpose_times(paths: list[Path], repeats: int) -> dict[str, dict[str, Stats]]:
    """The same two figures for Cellpose, measured by the runner in the peers environment."""
    cellpose = peers.PEERS["cellpose"]
    out = json.loads(cellpose.run("time", "--model", str(cellpose.model_dir), "--repeats",
                                  str(repeats), "--images", *map(str, paths)))  # fmt: skip
    return {name: {"network": Stats(t["network"]), "total": Stats(t["total"])}
            for name, t in out.items()}  # fmt: skip


def run(repeats: int, dsb: Path = DSB_FULL) -> Result:
    """Training facts, accuracy per held-out source, speed per image for both tools."""
    require_folder(dsb, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    cellpose = peers.PEERS["cellpose"]
    if not cellpose.trained():
        raise RuntimeError(f"no trained Cellpose model in {cellpose.model_dir}: run `make peers`")
    accuracy = peers.score_sets(dsb, [cellpose])
    progress("peers: accuracy on the held-out DSB sources done")
    images = timing_images(dsb)
    theirs = cellpose_times(list(images.values()), repeats)
    timing = {}
    for label, path in images.items():
        timing[label] = {"cellcount": cellcount_times(path, repeats), "cellpose": theirs[str(path)]}
        progress(f"peers: {label} timed")
    return {"training": cellpose.training(), "accuracy": accuracy,
            "timing": timing, "images": {k: p.name for k, p in images.items()},
            "tools": [peers.CELLCOUNT, cellpose.tool]}  # fmt: skip
