"""Cell sizes: measuring label images, rescaling, and the automatic size estimate."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cellcount import samples
from cellcount.cli.count import main as count_main
from cellcount.counter import Counter
from cellcount.data.io import read_labels
from cellcount.data.sizes import (
    MAX_SCALE,
    median_diameter,
    rescale_image,
    rescale_truth,
    scale_for,
)
from cellcount.inference.cell_size import _distances, first_guess, needs_refinement


def _discs(diameter: float, touching: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB [0, 1] image of bright discs of ``diameter`` px on noise, and their labels;
    with ``touching``, the discs come in touching pairs."""
    rng = np.random.default_rng(seed)
    side = int(max(256, diameter * 9))
    yy, xx = np.mgrid[:side, :side]
    labels = np.zeros((side, side), np.int32)
    grid = [(y, x) for y in np.arange(diameter, side - diameter, diameter * 2.5)
            for x in np.arange(diameter, side - 2 * diameter, diameter * 3.2)]  # fmt: skip
    partner = [(y, x + 0.95 * diameter) for y, x in grid] if touching else []
    centres = grid + partner
    for index, (cy, cx) in enumerate(centres, start=1):
        radius = diameter / 2 * rng.uniform(0.9, 1.1)
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) & (labels == 0)] = index
    image = 0.1 + 0.02 * rng.standard_normal((side, side)) + 0.6 * (labels > 0)
    return np.repeat(np.clip(image, 0, 1)[..., None], 3, -1).astype(np.float32), labels


@pytest.mark.parametrize("diameter", [8, 14, 30, 60, 120])
@pytest.mark.parametrize("touching", [False, True])
def test_first_guess_is_within_25_percent(diameter: float, touching: bool) -> None:
    image, labels = _discs(diameter, touching)
    true = median_diameter(labels)
    guess = first_guess(image)
    assert true is not None and guess is not None
    assert abs(guess / true - 1) <= 0.25, (guess, true)


@pytest.mark.parametrize("diameter", [12, 20])
def test_cells_in_a_bright_structure_are_measured_not_the_structure(diameter: float) -> None:
    """Nuclei inside an embryo: Otsu separates the embryo (one component far larger than
    any cell) from the dark background. The guess is then the nuclei's size, measured on
    the brighter part of the embryo, never the embryo's width."""
    image, labels = _discs(diameter)
    side = image.shape[0]
    yy, xx = np.mgrid[:side, :side]
    body = ((yy - side / 2) / (0.45 * side)) ** 2 + ((xx - side / 2) / (0.48 * side)) ** 2 < 1
    grey = np.where(body, image[..., 0] * 0.6 + 0.25, 0.02)
    guess = first_guess(np.repeat(grey[..., None], 3, -1).astype(np.float32))
    true = median_diameter(labels[body])
    assert guess is not None and true is not None
    assert abs(guess / true - 1) <= 0.25, (guess, true)


def test_a_structure_without_cells_is_no_size_guess() -> None:
    """An even bright body on a dark background: one structure at both thresholds, so no
    guess (counting then starts at the model's own size), never the body's width."""
    side = 256
    yy, xx = np.mgrid[:side, :side]
    body = ((yy - side / 2) / (0.45 * side)) ** 2 + ((xx - side / 2) / (0.48 * side)) ** 2 < 1
    rng = np.random.default_rng(0)
    grey = np.where(body, 0.6, 0.02) + 0.01 * rng.standard_normal((side, side))
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, -1).astype(np.float32)
    assert first_guess(rgb) is None


def test_no_objects_no_guess() -> None:
    assert first_guess(np.zeros((64, 64, 3), np.float32)) is None
    assert median_diameter(np.zeros((8, 8), np.int32)) is None


@pytest.mark.parametrize("seed", range(4))
def test_fast_distances_equal_scipy_including_at_the_border(seed: int) -> None:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    mask = ndi.binary_opening(rng.random((97, 131)) < 0.7)  # blobs, many touching the border
    mask[:, 0] = mask[0, :] = True  # whole edges inside: distance counts from outside only
    assert mask.any() and not mask.all()
    fast = _distances(mask)
    assert fast.shape == mask.shape and not fast[~mask].any()
    np.testing.assert_allclose(fast, ndi.distance_transform_edt(mask), atol=1e-5)


def test_median_diameter_and_rescaling_round_trip() -> None:
    image, labels = _discs(20)
    assert median_diameter(labels) == pytest.approx(20, rel=0.1)
    assert median_diameter(labels > 0) == pytest.approx(median_diameter(labels))
    scale = scale_for(20, 10)
    small, small_labels = rescale_image(image, scale), rescale_truth(labels, scale)
    assert small.shape[:2] == small_labels.shape == (image.shape[0] // 2, image.shape[1] // 2)
    assert set(np.unique(small_labels)) <= set(np.unique(labels))
    assert median_diameter(small_labels) == pytest.approx(10, rel=0.15)
    assert scale_for(1.0, 16.0) == MAX_SCALE  # bounded


def test_refinement_rule() -> None:
    assert not needs_refinement(20, 24) and needs_refinement(20, 26) and needs_refinement(20, 14)
    assert not needs_refinement(20, None)


def _sized_counter(found: Callable[[float], float]) -> Counter:
    """A Counter whose model finds discs of ``found(told)`` px when told a size."""
    from cellcount.training.module import CellSegModule

    counter = Counter(CellSegModule(arch_kwargs={"n_features_start": 4}, cell_diameter=16.0))
    counter.probabilities = lambda image, told=None: np.zeros(image.shape[:2], np.float32)  # type: ignore[method-assign]
    counter.labels = lambda image, told, known=None: _discs(found(told))[1][:256, :256]  # type: ignore[method-assign]
    return counter


def test_auto_size_settles_on_the_cells_the_model_finds() -> None:
    image = _discs(30.0)[0][:256, :256]  # the first guess is ~30 px
    diameter, labels, warning = _sized_counter(lambda told: 18.0).segment(image)
    assert diameter == pytest.approx(median_diameter(labels)) and diameter < 21 and warning == ""


def test_auto_size_drawn_at_any_told_size_keeps_the_first_pass_and_warns() -> None:
    image = _discs(30.0)[0][:256, :256]
    guess = first_guess(image)
    assert guess is not None
    # objects that follow the size the model is told (texture): half whatever it is told,
    # so the second pass finds ~4x as many
    diameter, labels, warning = _sized_counter(lambda told: 0.5 * told).segment(image)
    assert diameter == pytest.approx(guess) and labels.max() > 0
    assert "cell size uncertain" in warning and "--cell-diameter" in warning


def test_auto_size_keeps_a_second_pass_that_finds_moderately_more_cells() -> None:
    image = _discs(30.0)[0][:256, :256]
    guess = first_guess(image)
    assert guess is not None
    # 0.7x the told size: unsettled, but only ~2x the cells, as nuclei told twice their size
    diameter, _, warning = _sized_counter(lambda told: 0.7 * told).segment(image)
    assert diameter < 0.8 * guess and warning == ""


def test_a_given_size_is_used_as_is_without_a_warning() -> None:
    counter = _sized_counter(lambda told: 0.5 * told)
    diameter, _, warning = counter.segment(_discs(30.0)[0][:256, :256], cell_diameter=25.0)
    assert diameter == 25.0 and warning == ""


def test_measured_size_ignores_specks_a_fine_split_profile_keeps() -> None:
    from cellcount.inference.cell_size import measured_diameter

    labels = _discs(20.0)[1]
    cells = int(labels.max())
    specks = labels.copy()
    for index in range(cells + 1, 3 * cells + 2):  # twice as many 2x2 specks as cells
        y, x = divmod(index * 7, labels.shape[1] - 2)
        specks[y % (labels.shape[0] - 2) : y % (labels.shape[0] - 2) + 2, x : x + 2] = index
    assert median_diameter(specks) < 10  # the specks would halve the plain median
    assert measured_diameter(specks, 20.0) == pytest.approx(median_diameter(labels), rel=0.05)
    assert measured_diameter(np.zeros((8, 8), np.int32), 20.0) is None


def test_count_estimates_the_size_of_real_nuclei(tmp_path: Path) -> None:
    images = str(samples.path("dsb2018") / "images")
    flags = ["--out", str(tmp_path), "--no-overlays", "--no-labels", "--quiet"]
    assert count_main([images, "--model", "pretrained", *flags]) == 0
    with (tmp_path / "counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    errors = []
    for row in rows:
        assert row["diameter_source"] == "auto" and int(row["count"]) > 0
        truth = read_labels(samples.path("dsb2018") / "labels" / f"{row['name']}.png")
        errors.append(float(row["cell_diameter"]) / (median_diameter(truth) or 1) - 1)
    assert np.mean(np.abs(errors) <= 0.25) >= 0.8, errors


@pytest.mark.parametrize("shape", [(37, 50), (300, 410), (64, 256)])
def test_resizing_matches_scikit_image_away_from_the_border(shape: tuple[int, int]) -> None:
    from skimage.transform import resize

    from cellcount.data.sizes import resize_smooth

    image = np.random.default_rng(0).random((120, 160, 3), dtype=np.float32)
    shrinking = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    expected = resize(image, (*shape, 3), order=1, anti_aliasing=shrinking, preserve_range=True)
    out = resize_smooth(image, shape)
    assert out.shape == (*shape, 3) and out.dtype == np.float32
    assert np.abs(out - expected)[2:-2, 2:-2].max() < 1e-4  # of values in [0, 1]
    assert resize_smooth(image[..., 0], shape).shape == shape
