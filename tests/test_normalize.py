"""Intensity normalisation of real microscope files: any bit depth, range, palette, alpha."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcount.data.io import DataError, read_image, read_mask, read_normalized, to_rgb_float
from cellcount.data.normalize import (
    PAPER_NORMALIZATION,
    Normalization,
    normalize_intensity,
)


def _cells(shape: tuple[int, int] = (96, 128), seed: int = 0) -> np.ndarray:
    """Float (H, W) in [0, 1]: dim noisy background with a few bright discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = 0.05 + 0.01 * rng.standard_normal(shape)
    for cy, cx in ((20, 30), (60, 90), (70, 30)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 0.8
    return np.clip(image, 0, 1)


def test_12_bit_data_in_16_bit_tiff_is_stretched(tmp_path: Path) -> None:
    path = tmp_path / "camera.tif"
    tifffile.imwrite(path, np.round(_cells() * 4095).astype(np.uint16))
    image = read_image(path)
    assert image.shape == (96, 128, 3) and image.dtype == np.float32
    assert image.max() == pytest.approx(1.0) and image.min() == 0.0
    paper = read_normalized(path, normalization=PAPER_NORMALIZATION)
    assert paper.image.max() < 0.07 and paper.warning.startswith("dark")


@pytest.mark.parametrize(
    ("dtype", "scale", "offset"),
    [(np.uint8, 255, 0), (np.uint16, 4095, 100), (np.uint16, 65535, 0), (np.uint32, 1e6, 5e5),
     (np.int32, 3000, -1000), (np.float32, 300.0, -5.0), (np.float64, 1.0, 0.0)],
)  # fmt: skip
def test_every_bit_depth_and_range_gives_the_same_image(
    dtype: type, scale: float, offset: float
) -> None:
    reference = to_rgb_float((_cells() * 255).round().astype(np.uint8))
    raw = (np.round(_cells() * 255) / 255 * scale + offset).astype(dtype)
    np.testing.assert_allclose(to_rgb_float(raw), reference, atol=2e-3)


def test_nan_and_inf_are_refused_naming_the_file(tmp_path: Path) -> None:
    data = _cells().astype(np.float32)
    data[3, 4] = np.nan
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(DataError, match=r"bad\.tif contains NaN or infinite"):
        read_image(path)


def test_paper_normalisation_refuses_floats_outside_0_1() -> None:
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        to_rgb_float(_cells().astype(np.float32) * 300, normalization=PAPER_NORMALIZATION)


def test_palette_images_are_expanded_but_palette_masks_keep_indices(tmp_path: Path) -> None:
    indices = np.zeros((32, 32), np.uint8)
    indices[8:20, 8:20] = 1
    picture = Image.fromarray(indices, mode="P")
    picture.putpalette([0, 0, 0, 40, 220, 10] + [0] * 762)
    picture.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image[10, 10, 1] == pytest.approx(1.0) and image[10, 10, 2] < 0.1  # green, not grey 1
    assert read_mask(tmp_path / "p.png").sum() == 144


def test_alpha_is_dropped_only_when_real(tmp_path: Path) -> None:
    grey = (_cells() * 255).astype(np.uint8)
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA").save(tmp_path / "la.png")
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 128)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    for name in ("la.png", "rgba.png"):
        np.testing.assert_allclose(read_image(tmp_path / name), to_rgb_float(grey), atol=1e-6)
    four = np.dstack([grey, grey // 2, grey // 3, 255 - grey])  # four fluorescence channels
    tifffile.imwrite(tmp_path / "four.tif", four, photometric="minisblack", planarconfig="contig")
    with pytest.raises(DataError, match=r"4 channels that are not an RGB .*--channel 0\.\.3"):
        read_image(tmp_path / "four.tif")
    fourth = read_image(tmp_path / "four.tif", channel=3)
    np.testing.assert_allclose(fourth, to_rgb_float(255 - grey), atol=1e-6)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=[2])
    np.testing.assert_allclose(read_image(tmp_path / "rgba.tif"), to_rgb_float(grey), atol=1e-6)


def test_images_without_contrast_are_flagged_not_stretched() -> None:
    constant = normalize_intensity(np.full((16, 16, 1), 812, np.uint16))
    assert not constant.countable and constant.warning.startswith("no contrast")
    assert constant.image.max() == 0
    saturated = _cells().copy()
    saturated[:60] = 1.0
    flagged = normalize_intensity((saturated * 255).astype(np.uint8)[..., None])
    assert not flagged.countable and flagged.warning.startswith("saturated")
    assert normalize_intensity((_cells() * 255).astype(np.uint8)[..., None]).countable


def test_normalization_options_are_checked_and_recorded() -> None:
    assert Normalization.from_dict(None) == PAPER_NORMALIZATION
    stored = Normalization(low=2.0, high=99.5).as_dict()
    assert Normalization.from_dict(stored) == Normalization(low=2.0, high=99.5)
    with pytest.raises(ValueError, match="0 <= low < high <= 100"):
        Normalization(low=50, high=10)
    with pytest.raises(ValueError, match="unknown normalisation"):
        Normalization("zscore")


def test_shipped_model_counts_12_bit_and_8_bit_versions_alike(tmp_path: Path) -> None:
    """The regression of the 0-cell 12-bit bug: the same nuclei, three bit depths."""
    from cellcount import samples
    from cellcount.counter import Counter

    source = samples.images("dsb2018")[1]
    grey = np.asarray(Image.open(source).convert("L"))
    tifffile.imwrite(tmp_path / "camera12.tif", (grey.astype(np.uint16) * 16 + 100))
    tifffile.imwrite(tmp_path / "full16.tif", grey.astype(np.uint16) * 257)
    counter = Counter.from_checkpoint("pretrained", "cpu")
    counts = [counter.count(path).count for path in
              (source, tmp_path / "camera12.tif", tmp_path / "full16.tif")]  # fmt: skip
    assert counts[0] > 0 and max(counts) - min(counts) <= 1, counts
