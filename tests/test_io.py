"""Reading images/masks and pairing them: formats, normalisation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcount.data.io import DataError, find_samples, load_pair, read_image, read_mask

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


@pytest.mark.parametrize(
    ("array", "expected_max"),
    [
        (np.full((4, 5), 255, np.uint8), 1.0),
        (np.full((4, 5), 32768, np.uint16), 32768 / 65535),
        (np.full((4, 5, 4), 51, np.uint8), 0.2),
        (np.full((4, 5, 3), 0.25, np.float32), 0.25),
    ],
)
def test_read_image_normalises_to_rgb_unit_range(
    tmp_path: Path, array: np.ndarray, expected_max: float
) -> None:
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else None)
    image = read_image(path)
    assert image.shape == (4, 5, 3)
    assert image.dtype == np.float32
    assert image.max() == pytest.approx(expected_max, rel=1e-6)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        read_image(path)


def test_float_image_out_of_range_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.array([[0.5, np.nan]], np.float32))
    with pytest.raises(DataError, match="NaN"):
        read_image(path)


@pytest.mark.parametrize("top", [1, 255])
def test_binary_masks_in_both_encodings(tmp_path: Path, top: int) -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4, 2:4] = top
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == 4


def test_non_binary_mask_is_an_error(tmp_path: Path) -> None:
    Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6)).save(tmp_path / "labels.png")
    with pytest.raises(DataError, match=r"labels\.png is not binary"):
        read_mask(tmp_path / "labels.png")


def test_missing_mask_is_named_unless_skipped(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    _write_pair(tmp_path, "a", image, mask)
    _write_pair(tmp_path, "b", image, mask)
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png has no mask"):
        find_samples(tmp_path)
    assert [s.name for s in find_samples(tmp_path, skip_unpaired=True)] == ["a"]


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8))
    (sample,) = find_samples(tmp_path)
    with pytest.raises(DataError, match=r"a\.png is 9x8 but image .*a\.png is 8x8"):
        load_pair(sample)


def test_unknown_layout_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="valid layouts: folder, fnc_v1, fnc_v2"):
        find_samples(tmp_path, layout="fnc_v3")


def test_fnc_v2_layout_marks_test_group(tmp_path: Path) -> None:
    for group in ("trainval", "test"):
        part = tmp_path / "yellow" / group
        (part / "images").mkdir(parents=True)
        (part / "ground_truths" / "masks").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(part / "images" / f"{group}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(
            part / "ground_truths" / "masks" / f"{group}.png"
        )
    samples = find_samples(tmp_path, layout="fnc_v2")
    assert {(s.name, s.group) for s in samples} == {("trainval", "trainval"), ("test", "test")}


@pytest.mark.skipif(not SHARED.exists(), reason="shared data not present")
def test_real_fnc_samples_load() -> None:
    samples = find_samples(SHARED / "fnc_samples" / "yellow")
    assert len(samples) == 4
    image, mask = load_pair(samples[0])
    assert image.shape == (1200, 1600, 3) and mask.shape == (1200, 1600)
    assert 0 < mask.mean() < 0.1
