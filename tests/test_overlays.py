"""Overlay pictures mark outlines and boxes in the documented colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cellcount.overlays import (
    FN_COLOUR,
    FP_COLOUR,
    PRED_COLOUR,
    TRUE_COLOUR,
    render_overlay,
    save_png,
    stretch,
)


def _labels(shape: tuple[int, int], squares: list[tuple[int, int]]) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for index, (y, x) in enumerate(squares, start=1):
        labels[y : y + 10, x : x + 10] = index
    return labels


def _has(picture: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (picture == colour).all(axis=-1)


def test_outlines_and_boxes_are_drawn_where_the_cells_are() -> None:
    image = np.full((80, 80, 3), 0.05, np.float32)
    true = _labels((80, 80), [(10, 10), (50, 50)])
    pred = _labels((80, 80), [(10, 10), (10, 50)])
    picture = render_overlay(image, pred, true, false_positives=[2], false_negatives=[2])
    assert picture.shape == (80, 80, 3) and picture.dtype == np.uint8
    assert _has(picture, PRED_COLOUR)[10, 10:20].all()  # predicted outline drawn last
    assert _has(picture, TRUE_COLOUR)[50, 50:60].all()  # missed cell keeps its true outline
    fp_rows, fp_cols = np.nonzero(_has(picture, FP_COLOUR))
    assert fp_rows.min() >= 4 and fp_cols.min() >= 44 and fp_rows.max() <= 26
    fn_rows, fn_cols = np.nonzero(_has(picture, FN_COLOUR))
    assert fn_rows.min() >= 44 and fn_cols.min() >= 44
    assert not _has(picture, FP_COLOUR)[40:, :].any()


def test_stretch_makes_dim_images_visible() -> None:
    image = np.zeros((10, 10, 3), np.float32)
    image[5, 5] = 0.1
    assert stretch(image, percentile=100).max() == 255
    assert stretch(np.zeros((4, 4, 3), np.float32)).max() == 0


def test_numbers_and_saving(tmp_path: Path) -> None:
    image = np.full((60, 60, 3), 0.05, np.float32)
    pred = _labels((60, 60), [(20, 10)])
    plain = render_overlay(image, pred)
    numbered = render_overlay(image, pred, numbers=True)
    assert (plain != numbered).any()
    save_png(numbered, tmp_path / "o.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), numbered)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]
