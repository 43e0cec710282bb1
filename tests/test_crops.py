"""The authors' crop grid (docs/method.md#data-and-crops), generalised, and the padding helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellcount.data.crops import crop_boxes, crop_origins, pad_to_min_size


def _coverage(height: int, width: int, boxes: list[tuple[int, int]], crop: int) -> np.ndarray:
    """How many crops cover each pixel; fails if a crop leaves the image."""
    count = np.zeros((height, width), int)
    for y0, x0 in boxes:
        assert 0 <= y0 <= height - crop and 0 <= x0 <= width - crop
        count[y0 : y0 + crop, x0 : x0 + crop] += 1
    return count


def test_paper_grid_origins() -> None:
    assert crop_origins(1600) == [0, 288, 688, 1088]
    assert crop_origins(1200) == [0, 288, 688]


def test_paper_grid_has_twelve_crops_in_authors_order() -> None:
    boxes = crop_boxes(1200, 1600)
    assert len(boxes) == 12
    xs, ys = [0, 288, 688, 1088], [0, 288, 688]
    for i, x0 in enumerate(xs):  # k = 3*i + j: column index i outer, row index j inner
        for j, y0 in enumerate(ys):
            assert boxes[3 * i + j] == (y0, x0)


def test_paper_grid_covers_the_image_with_asymmetric_overlaps() -> None:
    coverage = _coverage(1200, 1600, crop_boxes(1200, 1600), 512)
    assert coverage.min() >= 1
    # 224 px between the first two columns, 112 px between the others
    # (docs/method.md#data-and-crops).
    row = coverage[0]
    assert (row[288:512] == 2).all() and (row[688:800] == 2).all() and (row[1088:1200] == 2).all()
    assert (row[512:688] == 1).all()


def test_other_size_and_crop() -> None:
    assert crop_origins(696, crop=256, step=200) == [0, 144, 344, 440]
    assert crop_origins(520, crop=256, step=200) == [0, 144, 264]
    boxes = crop_boxes(520, 696, crop=256, step=200)
    assert len(boxes) == 12 and boxes[:3] == [(0, 0), (144, 0), (264, 0)]
    assert _coverage(520, 696, boxes, 256).min() >= 1


def test_exact_fit_and_small_steps_merge_duplicates() -> None:
    assert crop_origins(512) == [0]
    assert crop_origins(512, crop=512, step=100) == [0]
    assert crop_origins(600, crop=512, step=100) == [0, 88]


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="pad"):
        crop_origins(500)
    with pytest.raises(ValueError, match="step"):
        crop_origins(1600, crop=512, step=600)
    with pytest.raises(ValueError, match="step"):
        crop_origins(1600, crop=512, step=0)
    with pytest.raises(ValueError, match="crop"):
        crop_origins(1600, crop=0, step=1)
    with pytest.raises(ValueError, match="pad"):
        crop_boxes(300, 1600)


@settings(max_examples=200, deadline=None)
@given(
    crop=st.integers(1, 64),
    extra=st.integers(0, 300),
    step_fraction=st.floats(0.01, 1.0),
)
def test_origins_always_cover_and_stay_inside(crop: int, extra: int, step_fraction: float) -> None:
    length = crop + extra
    step = max(1, round(crop * step_fraction))
    origins = crop_origins(length, crop, step)
    assert origins == sorted(set(origins))
    assert origins[0] == 0 and origins[-1] == length - crop
    covered = np.zeros(length, bool)
    for origin in origins:
        assert 0 <= origin <= length - crop
        covered[origin : origin + crop] = True
    assert covered.all()


def test_pad_to_min_size_pads_bottom_right_with_zeros() -> None:
    image = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    padded = pad_to_min_size(image, 32, 30)
    assert padded.shape == (32, 30, 3) and padded.dtype == np.float32
    assert np.array_equal(padded[:20, :24], image)
    assert not padded[20:].any() and not padded[:, 24:].any()
    mask = np.ones((10, 50), np.uint8)
    assert pad_to_min_size(mask, 16, 16).shape == (16, 50)
    assert pad_to_min_size(image, 8, 8) is image
