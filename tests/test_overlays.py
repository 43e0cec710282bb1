"""Overlay pictures mark outlines and boxes in the documented colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from cellcount.evaluation import overlays
from cellcount.evaluation.overlays import (
    FN_COLOUR,
    FP_COLOUR,
    PRED_COLOUR,
    TRUE_COLOUR,
    _boxes,
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


def test_png_is_lossless_with_the_channels_in_order(tmp_path: Path) -> None:
    picture = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    picture[0, 0] = (255, 0, 0)  # red stays red
    save_png(picture[::-1], tmp_path / "p.png")  # a strided view is fine
    with Image.open(tmp_path / "p.png") as saved:
        assert saved.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(saved), picture[::-1])


def _exact_stretch(image: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    top = float(np.percentile(image, percentile))
    return (np.clip(image / top, 0, 1) * 255).astype(np.uint8)


def test_stretch_uses_a_subsample_only_for_large_images(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.gamma(2.0, 0.05, (300, 400, 3)), (2, 2, 0)).astype(np.float32)
    monkeypatch.setattr(overlays, "_BAND_PIXELS", 5000)  # many bands
    np.testing.assert_array_equal(stretch(image), _exact_stretch(image))
    monkeypatch.setattr(overlays, "_SAMPLE_PIXELS", 10_000)  # every 4th row and column
    diff = np.abs(stretch(image).astype(int) - _exact_stretch(image))
    assert diff.max() <= 2 and diff.mean() < 0.5


def _scene(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dim image, predicted and true labels with discs also across the borders."""
    rng = np.random.default_rng(seed)
    pred, true = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    for label in range(1, 40):
        centre = (rng.integers(-5, shape[0] + 5), rng.integers(-5, shape[1] + 5))
        rows, cols = disk(centre, rng.integers(3, 25), shape=shape)
        pred[rows, cols] = label
        true[np.minimum(rows + 4, shape[0] - 1), cols] = label
    pred = np.unique(pred, return_inverse=True)[1].reshape(shape).astype(np.int32)
    return rng.random((*shape, 3), dtype=np.float32) * 0.2, pred, true


def _whole_image_overlay(
    image: np.ndarray, pred: np.ndarray, true: np.ndarray, fps: list[int], fns: list[int]
) -> np.ndarray:
    """The overlay drawn on the whole image at once with Pillow (the reference)."""
    canvas = stretch(image)
    mode = "thick" if max(pred.shape) >= 1000 else "inner"
    canvas[find_boundaries(true, mode=mode)] = TRUE_COLOUR
    canvas[find_boundaries(pred, mode=mode)] = PRED_COLOUR
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for box in _boxes(pred, fps):
        draw.rectangle(box, outline=FP_COLOUR, width=2)
    for box in _boxes(true, fns):
        draw.rectangle(box, outline=FN_COLOUR, width=2)
    font = ImageFont.load_default(size=max(10, max(pred.shape) // 80))
    centres = ndi.center_of_mass(pred > 0, pred, range(1, int(pred.max()) + 1))
    for label, (row, col) in enumerate(centres, start=1):
        draw.text((col + 8, row - 8), str(label), fill=PRED_COLOUR, font=font)
    return np.asarray(picture)


@pytest.mark.parametrize(("shape", "seed"), [((120, 150), 1), ((1100, 700), 2)])
def test_banded_and_patched_drawing_equals_whole_image_drawing(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], seed: int
) -> None:
    monkeypatch.setattr(overlays, "_BAND_PIXELS", 3000)  # bands of a few rows
    image, pred, true = _scene(shape, seed)
    fps, fns = list(range(1, int(pred.max()) + 1, 3)), list(range(2, int(true.max()) + 1, 4))
    got = render_overlay(image, pred, true, fps, fns, numbers=True)
    np.testing.assert_array_equal(got, _whole_image_overlay(image, pred, true, fps, fns))
