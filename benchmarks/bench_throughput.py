"""Section 9: counting a folder, reading and writing overlapped with prediction or not.

Two folders: the real 1600x1200 images (each linked ``copies`` times) and 256x256
crops of them. For each: the model-only prediction time per image (the floor of
counting), then ``cellcount count`` with ``--prefetch 0`` (one image at a time,
how the CLI counted before reading and writing overlapped) and with the default
``--prefetch 2``, alternated over ``repeats`` runs; then once with the cell size
estimated (``--cell-diameter auto``, the default) to give the cost of the estimate.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.bench_common import FNC_CELL_DIAMETER, Result, Stats, progress
from benchmarks.bench_counting import run_cli
from cellcount.counter import Counter

MODES = {"one at a time (`--prefetch 0`)": "0", "overlapped (`--prefetch 2`, default)": "2"}
SMALL = 256


def _copies(images: list[Path], copies: int, folder: Path) -> Path:
    """A folder linking each image ``copies`` times under different names."""
    folder.mkdir(parents=True)
    for copy in range(copies):
        for image in images:
            (folder / f"c{copy}_{image.name}").symlink_to(image.resolve())
    return folder


def _crops(images: list[Path], count: int, folder: Path) -> Path:
    """``count`` SMALL x SMALL crops of the images, on a grid, as PNGs."""
    folder.mkdir(parents=True)
    made = 0
    for image in images:
        with Image.open(image) as picture:
            width, height = picture.size
            for top in range(0, height - SMALL + 1, SMALL):
                for left in range(0, width - SMALL + 1, SMALL):
                    if made == count:
                        return folder
                    box = (left, top, left + SMALL, top + SMALL)
                    picture.crop(box).save(folder / f"{image.stem}_{top}_{left}.png")
                    made += 1
    return folder


def _model_only(folder: Path) -> Stats:
    """Prediction alone (``Counter.probabilities`` at the given size) per image."""
    counter = Counter.from_checkpoint("pretrained", "cpu", cell_diameter=FNC_CELL_DIAMETER)
    images = [counter.normalize(path).image for path in sorted(folder.iterdir())]
    counter.probabilities(images[0], FNC_CELL_DIAMETER)  # warm-up
    times = []
    for image in images:
        start = time.perf_counter()
        counter.probabilities(image, FNC_CELL_DIAMETER)
        times.append(time.perf_counter() - start)
    return Stats(times)


def _per_image(folder: Path, out: Path, options: list[str]) -> float:
    """Mean seconds per image of one CLI run over the folder (steady state)."""
    argv = [str(folder), "--model", "pretrained", "--out", str(out), "--quiet", *options]
    per_image, _, status, rows = run_cli(argv, out)
    if status != 0 or len(rows) != len(list(folder.iterdir())):
        raise RuntimeError(f"cellcount count {' '.join(options)} failed on {folder}")
    return statistics.fmean(per_image.samples)


def _folder(folder: Path, scratch: Path, repeats: int) -> Result:
    """Model-only, each mode over the repeats, then auto size, on one folder."""
    size = ["--cell-diameter", str(FNC_CELL_DIAMETER)]
    model_only = _model_only(folder)
    modes: dict[str, list[float]] = {label: [] for label in MODES}
    for repeat in range(repeats):
        for label, prefetch in MODES.items():
            out = scratch / f"{folder.name}_{prefetch}_{repeat}"
            modes[label].append(_per_image(folder, out, [*size, "--prefetch", prefetch]))
    auto = _per_image(folder, scratch / f"{folder.name}_auto", [])
    with Image.open(next(folder.iterdir())) as picture:
        width, height = picture.size
    progress(f"folder of {width}x{height}: " + ", ".join(
        f"{label} {statistics.median(times):.3f} s" for label, times in modes.items()))  # fmt: skip
    return {
        "shape": f"{width}x{height}",
        "images": len(list(folder.iterdir())),
        "model_only": model_only,
        "modes": {label: Stats(times) for label, times in modes.items()},
        "auto": auto,
    }


def run(images: list[Path], copies: int, crops: int, repeats: int) -> Result:
    """Both folders: ``images`` ``copies`` times each, and ``crops`` 256x256 crops."""
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as scratch:
        root = Path(scratch)
        large = _copies(images, copies, root / "large")
        small = _crops(images, crops, root / "small")
        return {
            "diameter": FNC_CELL_DIAMETER,
            "folders": [_folder(large, root, repeats), _folder(small, root, repeats)],
        }
