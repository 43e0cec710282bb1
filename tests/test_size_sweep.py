"""scripts.size_sweep: images are resized to the asked cell size, and the table says how
far the size estimate was."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from cellcount.data.sizes import median_diameter
from cellcount.evaluation.matching import ImageMatch
from scripts.size_sweep import MAX_PIXELS, markdown, rescaled, summary_rows


def _cells(diameter: float, side: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint16 image and its labels: nine discs of ``diameter`` px on a grid."""
    labels = np.zeros((side, side), np.int32)
    step = side // 4
    for index, (row, col) in enumerate(
        [(r, c) for r in range(step, side, step) for c in range(step, side, step)], start=1
    ):
        labels[disk((row, col), diameter / 2, shape=labels.shape)] = index
    return (labels > 0).astype(np.uint16) * 4000, labels


@pytest.mark.parametrize("target", [8.0, 40.0])
def test_rescaled_truth_has_the_asked_cell_size(target: float) -> None:
    image, labels = _cells(20.0)
    pair = rescaled(image, labels, target)
    assert pair is not None
    resized, truth = pair
    assert resized.shape[:2] == truth.shape and resized.dtype == image.dtype
    assert set(np.unique(truth)) == set(range(10))  # every cell kept, ids unchanged
    assert median_diameter(truth) == pytest.approx(target, rel=0.1)


def test_rescaled_refuses_sizes_it_cannot_count() -> None:
    image, labels = _cells(20.0)
    assert rescaled(image, labels, 2.0) is None  # a side under MIN_SIDE
    too_big = 20.0 * (MAX_PIXELS / labels.size) ** 0.5 * 1.1
    assert rescaled(image, labels, too_big) is None


def test_summary_rows_give_the_size_error_and_share_within_25_percent() -> None:
    match = ImageMatch(tp=9, fp=1, fn=0, n_true=9, n_pred=10)
    results = [{"true_d": 10.0, "auto_d": auto, "match": match, "seconds": s}
               for auto, s in ((11.0, 1.0), (15.0, 3.0), (7.0, 2.0))]  # fmt: skip
    row = summary_rows({("set_a", 10.0): results})[0]
    assert row["images"] == 3
    assert row["size error"] == pytest.approx(0.3)  # median of 0.1, 0.5, 0.3
    assert row["within 25 %"] == pytest.approx(1 / 3)
    assert row["seconds"] == 2.0
    assert row["mpe"] == pytest.approx(1 / 9, abs=1e-3)
    line = markdown([row], "cmd").splitlines()[-1]
    assert line.startswith("| set_a | 10 | 3 | 30 % | 33 % |")
