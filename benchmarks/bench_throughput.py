"""Section 9: counting a folder, reading and writing overlapped with prediction or not.

Two folders: the real 1600x1200 FNC images (each linked ``copies`` times; cells
given as 40 px) and real 256x256 DSB 2018 nuclei images (cells given as 16 px, the
model's own size). For each: the model-only prediction time per image (the floor
of counting), then ``cellcount count`` one image at a time as the CLI counted before
this work (``--prefetch 0 --batch-images 1`` with the nets' ELU on PyTorch's kernel,
:func:`~benchmarks.bench_common.torch_elu`), one image at a time now, with reading
and writing overlapped,
and also with equal images batched (the defaults), alternated over ``repeats`` runs;
then once with the cell size estimated (``--cell-diameter auto``, the default), and,
through the API, each image counted with ``auto`` and again given the size ``auto``
chose: the estimate's own cost, apart from that of counting at another size.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.bench_common import FNC_CELL_DIAMETER, Result, Stats, progress, torch_elu
from benchmarks.bench_counting import run_cli
from cellcount.counter import Counter

ONE_AT_A_TIME = ["--prefetch", "0", "--batch-images", "1"]
BEFORE = "one at a time, torch's ELU kernel (before: `--prefetch 0 --batch-images 1`, F.elu)"
MODES = {
    BEFORE: ONE_AT_A_TIME,
    "one at a time (`--prefetch 0 --batch-images 1`)": ONE_AT_A_TIME,
    "overlapped (`--prefetch 2 --batch-images 1`)": ["--prefetch", "2", "--batch-images", "1"],
    "overlapped and batched (defaults: `--prefetch 2 --batch-images 8`)": [],
}
SMALL_DIAMETER = 16.0  # DSB 2018 nuclei, about the model's own cell size


def _copies(images: list[Path], copies: int, folder: Path) -> Path:
    """A folder linking each image ``copies`` times under different names."""
    folder.mkdir(parents=True)
    for copy in range(copies):
        for image in images:
            (folder / f"c{copy}_{image.name}").symlink_to(image.resolve())
    return folder


def _model_only(folder: Path, diameter: float) -> Stats:
    """Prediction alone (``Counter.probabilities`` at the given size) per image."""
    counter = Counter.from_checkpoint("pretrained", "cpu", cell_diameter=diameter)
    images = [counter.normalize(path).image for path in sorted(folder.iterdir())]
    counter.probabilities(images[0], diameter)  # warm-up
    times = []
    for image in images:
        start = time.perf_counter()
        counter.probabilities(image, diameter)
        times.append(time.perf_counter() - start)
    return Stats(times)


def _estimate_cost(folder: Path) -> dict[str, float]:
    """Seconds per image of ``Counter.count_normalized`` with ``auto`` and given the
    diameter ``auto`` chose for that image (each after one untimed call)."""
    auto = Counter.from_checkpoint("pretrained", "cpu")
    seconds = {"auto": 0.0, "given its size": 0.0}
    for path in sorted(folder.iterdir()):
        normalized = auto.normalize(path)
        chosen = auto.count_normalized(normalized).cell_diameter or auto.model_diameter
        given = Counter.from_checkpoint("pretrained", "cpu", cell_diameter=chosen)
        given.count_normalized(normalized)
        for label, counter in (("auto", auto), ("given its size", given)):
            start = time.perf_counter()
            counter.count_normalized(normalized)
            seconds[label] += time.perf_counter() - start
    images = len(list(folder.iterdir()))
    return {label: total / images for label, total in seconds.items()}


def _per_image(folder: Path, out: Path, options: list[str]) -> float:
    """Mean seconds per image of one CLI run over the folder (steady state)."""
    argv = [str(folder), "--model", "pretrained", "--out", str(out), "--quiet", *options]
    per_image, _, status, rows = run_cli(argv, out)
    if status != 0 or len(rows) != len(list(folder.iterdir())):
        raise RuntimeError(f"cellcount count {' '.join(options)} failed on {folder}")
    return statistics.fmean(per_image.samples)


def _folder(folder: Path, scratch: Path, repeats: int, diameter: float) -> Result:
    """Model-only, each mode over the repeats, then auto size, on one folder."""
    size = ["--cell-diameter", str(diameter)]
    model_only = _model_only(folder, diameter)
    modes: dict[str, list[float]] = {label: [] for label in MODES}
    for repeat in range(repeats):
        for index, (label, options) in enumerate(MODES.items()):
            out = scratch / f"{folder.name}_{index}_{repeat}"
            with torch_elu() if label == BEFORE else contextlib.nullcontext():
                modes[label].append(_per_image(folder, out, [*size, *options]))
    auto = _per_image(folder, scratch / f"{folder.name}_auto", [])
    estimate = _estimate_cost(folder)
    with Image.open(next(folder.iterdir())) as picture:
        width, height = picture.size
    progress(f"folder of {width}x{height}: " + ", ".join(
        f"{label} {statistics.median(times):.3f} s" for label, times in modes.items()))  # fmt: skip
    return {
        "shape": f"{width}x{height}",
        "diameter": diameter,
        "images": len(list(folder.iterdir())),
        "model_only": model_only,
        "modes": {label: Stats(times) for label, times in modes.items()},
        "auto": auto,
        "estimate": estimate,
    }


def run(large: list[Path], copies: int, small: list[Path], repeats: int) -> Result:
    """Both folders: the ``large`` images ``copies`` times each, and the ``small`` ones."""
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as scratch:
        root = Path(scratch)
        folders = [(_copies(large, copies, root / "large"), FNC_CELL_DIAMETER),
                   (_copies(small, 1, root / "small"), SMALL_DIAMETER)]  # fmt: skip
        return {"folders": [_folder(folder, root, repeats, d) for folder, d in folders]}
