"""What every peer runner shares: image reading, the command line, the timing loop.

The runners (``cellpose_peer.py``, ``stardist_peer.py``) run in their own
environments, which hold numpy, Pillow and tifffile but never cellcount; they
import this file as a sibling (``python benchmarks/peers/X_peer.py`` puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image


def grey(path: Path) -> np.ndarray:
    """An image file as float32 (H, W): the mean of its colour channels."""
    with Image.open(path) as picture:
        array = np.asarray(picture.convert("RGB"), dtype=np.float32)
    return array.mean(axis=-1)


def read_labels(path: Path) -> np.ndarray:
    """A label image as int32 (H, W)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return tifffile.imread(path).astype(np.int32)
    with Image.open(path) as picture:
        return np.asarray(picture).astype(np.int32)


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The runners' command line: ``train``, ``predict`` and ``time`` (see their docstrings)."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("train")
    fit.add_argument("--pairs", type=Path, required=True)
    fit.add_argument("--minutes", type=float, required=True)
    fit.add_argument("--out", type=Path, required=True)
    run = sub.add_parser("predict")
    run.add_argument("--model", type=Path, required=True)
    run.add_argument("--images", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    clock = sub.add_parser("time")
    clock.add_argument("--model", type=Path, required=True)
    clock.add_argument("--images", nargs="+", required=True)
    clock.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


class ForwardClock:
    """Seconds spent inside a wrapped callable (the network) since the last reset."""

    def __init__(self) -> None:
        self.spent = 0.0

    def wrap(self, forward: Callable[..., Any]) -> Callable[..., Any]:
        """``forward``, adding the time of every call to :attr:`spent`."""

        def timed(*args: object, **kwargs: object) -> object:
            begin = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - begin

        return timed


def time_repeats(
    call: Callable[[], object], clock: ForwardClock, repeats: int
) -> tuple[list[float], list[float]]:
    """Network seconds (``clock``) and whole-call seconds of each of ``repeats`` calls of
    ``call``, after a warm-up call (which also traces graphs for the input's shape)."""
    call()
    network, total = [], []
    for _ in range(repeats):
        clock.spent = 0.0
        begin = time.perf_counter()
        call()
        total.append(time.perf_counter() - begin)
        network.append(clock.spent)
    return network, total


def time_counts(
    count: Callable[[np.ndarray], object], clock: ForwardClock, images: list[str], repeats: int
) -> dict[str, dict[str, Any]]:
    """Per image file: :func:`time_repeats` of ``count`` on its grey image."""
    results = {}
    for name in images:
        image = grey(Path(name))
        network, total = time_repeats(partial(count, image), clock, repeats)
        results[name] = {"network": network, "total": total,
                         "median_total": statistics.median(total)}  # fmt: skip
    return results
