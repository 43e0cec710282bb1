"""Target cleaning and the overcrowding weight map (docs/method.md#weight-maps)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.morphology import dilation, remove_small_holes, remove_small_objects

from cellcount.data.weight_maps import band_mask, clean_mask, weight_map


def _load_baseline() -> ModuleType:
    """Import ``benchmarks/weight_map_baseline.py`` by path (benchmarks is no package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "weight_map_baseline.py"
    spec = importlib.util.spec_from_file_location("weight_map_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


baseline = _load_baseline()
TRUNCATION_TERM = math.exp(-(4.0**2) / 2)  # largest dropped term at the default truncate


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Irregular touching blobs with holes and nested bounding boxes (raw, uncleaned)."""
    noise = np.random.default_rng(seed).random(shape)
    return ndi.gaussian_filter(noise, 4) > 0.52


def _direct_sum(mask: np.ndarray, sigma: float, quirk: bool) -> np.ndarray:
    """S by brute force over every pixel of every B_k (no band, no truncation)."""
    labels, _ = ndi.label(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    total = np.zeros(mask.shape)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        seeds = np.zeros(mask.shape, bool)
        seeds[box] = labels[box] > 0 if quirk else labels[box] == index
        d2 = np.full(mask.shape, np.inf)
        for y, x in zip(*np.nonzero(seeds), strict=True):
            d2 = np.minimum(d2, (yy - y) ** 2 + (xx - x) ** 2)
        total += np.exp(-d2 / (2 * sigma**2))
    return total


# --- clean_mask ----------------------------------------------------------------------


def test_clean_mask_object_threshold_is_strict() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:14, 5:16] = True  # 9 x 11 = 99 px: removed
    mask[20:30, 30:40] = True  # 10 x 10 = 100 px: kept
    cleaned = clean_mask(mask)
    assert cleaned.dtype == bool
    assert not cleaned[5:14, 5:16].any()
    assert cleaned.sum() == 100


def test_clean_mask_hole_threshold_is_strict() -> None:
    mask = np.zeros((80, 160), bool)
    mask[10:70, 10:70] = True
    mask[30:40, 30:50] = False  # 200 px hole: kept
    mask[10:70, 90:150] = True
    mask[30:40, 110:130] = False
    mask[30, 110] = True  # 199 px hole, still 4-connected: filled
    cleaned = clean_mask(mask)
    assert not cleaned[30:40, 30:50].any()
    assert cleaned[30:40, 110:130].all()


def test_clean_mask_uses_4_connectivity_and_fills_border_pockets() -> None:
    mask = np.zeros((60, 60), bool)
    mask[40:48, 40:48] = True  # 64 px
    mask[48:56, 48:56] = True  # 64 px, touching only diagonally: two objects of 64
    mask[:12, 10:12] = True  # wall cutting off a 10 x 10 pocket at the image corner
    mask[10:12, :12] = True
    mask[12:20, :12] = True  # make the wall an object of >= 100 px
    cleaned = clean_mask(mask)
    assert not cleaned[40:56, 40:56].any()
    assert cleaned[:10, :10].all()  # border-touching 100 px background piece < 200
    assert not cleaned[30:35, 30:35].any()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), min_area=st.integers(0, 150), hole=st.integers(0, 250))
def test_clean_mask_matches_skimage(seed: int, min_area: int, hole: int) -> None:
    mask = _blobs((64, 80), seed)
    expected = remove_small_objects(mask, max_size=max(min_area - 1, 0), connectivity=1)
    expected = remove_small_holes(expected, max_size=max(hole - 1, 0), connectivity=1)
    assert np.array_equal(clean_mask(mask, min_area, hole), expected)


# --- band ----------------------------------------------------------------------------


def test_band_alignment_matches_a_square_footprint_of_ones() -> None:
    mask = np.zeros((300, 300), bool)
    mask[150, 150] = True
    ring = band_mask(mask)
    ys, xs = np.nonzero(ring | mask)
    # Even side 100: 50 px up/left, 49 px down/right (skimage/scipy convention).
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (100, 199, 100, 199)
    assert ring.sum() == 100 * 100 - 1


@pytest.mark.parametrize("band", [1, 2, 6, 7, 10])
def test_band_matches_skimage_dilation(band: int) -> None:
    mask = _blobs((70, 90), band) & (np.random.default_rng(band).random((70, 90)) < 0.05)
    expected = dilation(mask, np.ones((band, band), bool)) & ~mask
    assert np.array_equal(band_mask(mask, band), expected)


def test_pixels_outside_the_band_stay_one_even_when_crowded() -> None:
    # Rows of small squares on the four sides of a square at Chebyshev distance 51
    # from the probe: their Gaussians sum above 1 there, but the probe is outside
    # the 100x100 dilation band, so its weight stays 1.
    mask = np.zeros((260, 260), bool)
    probe, gap, side = 130, 51, 6
    for offset in range(-70, 71, 8):
        start = probe + offset
        for y0, x0 in (
            (probe - gap - side + 1, start),
            (probe + gap, start),
            (start, probe - gap - side + 1),
            (start, probe + gap),
        ):
            mask[y0 : y0 + side, x0 : x0 + side] = True
    near = np.argwhere(mask)
    assert np.abs(near - probe).max(axis=1).min() == gap
    assert _direct_sum(mask, 25.0, quirk=True)[probe, probe] > 1.5
    weights = weight_map(mask)
    assert weights[probe, probe] == 1.0
    # The even-sided band reaches 50 px up/left but 49 px down/right of a cell: the
    # pixel 50 px above the bottom row is in it, the one 50 px below the top row is not.
    assert weights[probe + 1, probe] > 1.0
    assert weights[probe - 1, probe] == 1.0


# --- weight_map on hand-made masks ---------------------------------------------------


def test_isolated_disc_gets_no_extra_weight() -> None:
    mask = _disc((300, 300), (150, 150), 15)
    weights = weight_map(mask)
    assert weights.dtype == np.float32 and weights.shape == mask.shape
    assert np.all(weights[mask] == 1.5)
    assert np.all(weights[~mask] == 1.0)


def test_two_close_discs_weight_the_gap() -> None:
    # Radius 15, centres 51 px apart: 20 background pixels between them (docs/method.md#weight-maps
    # VER).
    mask = _disc((200, 300), (100, 100), 15) | _disc((200, 300), (100, 151), 15)
    weights = weight_map(mask)
    gap = weights[100, 116:136]
    assert gap.min() > 1.7 and gap.max() < 1.85
    assert 1.75 < weights[100, 125] < 1.85
    # The heaviest background pixels are between the discs; pixels right next to
    # one disc also get a little extra weight from the other (S slightly > 1).
    _, xs = np.nonzero(~mask & (weights > 1.5))
    assert xs.min() > 100 and xs.max() < 151
    assert weights[~mask].max() == weights[100, 125] == weights[100, 126]  # mid-gap


def test_empty_and_full_masks() -> None:
    empty = weight_map(np.zeros((64, 80), bool))
    assert empty.dtype == np.float32 and np.all(empty == 1.0)
    full = weight_map(np.ones((64, 80), np.uint8))
    assert full.dtype == np.float32 and np.all(full == 1.5)


def test_bounding_box_quirk() -> None:
    # An L-shaped cell whose bounding box contains a separate square cell: the
    # square counts as part of the L's B_k, as in the original.
    mask = np.zeros((150, 150), bool)
    mask[20:100, 20:30] = True  # vertical bar
    mask[90:100, 20:100] = True  # horizontal bar
    mask[40:50, 60:70] = True  # inside the L's bounding box, not touching it
    weights = weight_map(mask, truncate=math.inf)
    ring = band_mask(mask)
    quirk = np.where(ring, np.maximum(_direct_sum(mask, 25.0, quirk=True), 1), 1)
    plain = np.where(ring, np.maximum(_direct_sum(mask, 25.0, quirk=False), 1), 1)
    np.testing.assert_allclose(weights[~mask], quirk[~mask], atol=1e-5)
    assert weights[45, 75] > 1.9 and plain[45, 75] < 1.3  # right next to the square


def test_components_below_25_px_are_not_seeds() -> None:
    mask = _disc((120, 160), (60, 50), 15)
    mask[58:62, 80:84] = True  # 16 px: a cell pixel, but contributes no Gaussian
    weights = weight_map(mask)
    assert np.all(weights[58:62, 80:84] == 1.5)
    assert np.all(weights[~mask] == 1.0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2-D"):
        weight_map(np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="sigma"):
        weight_map(np.zeros((4, 4)), sigma=0)
    with pytest.raises(ValueError, match="min_object_area"):
        clean_mask(np.zeros((4, 4)), -1)


# --- agreement with the per-cell reference -------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_matches_per_cell_baseline_on_random_discs(seed: int) -> None:
    mask = baseline.random_discs(240, 320, 25, (6, 18), seed=seed)
    expected = baseline.per_cell_weight_map(mask)
    assert np.abs(weight_map(mask) - expected).max() <= 1e-3
    assert np.abs(weight_map(mask, truncate=math.inf) - expected).max() <= 1e-5


def _truncation_bound(mask: np.ndarray, reach: int = 100) -> np.ndarray:
    """Documented error bound: one dropped term per object whose window misses a pixel."""
    labels, count = ndi.label(mask)
    covered = np.zeros(mask.shape, int)
    for ys, xs in ndi.find_objects(labels):
        covered[
            max(0, ys.start - reach) : ys.stop + reach, max(0, xs.start - reach) : xs.stop + reach
        ] += 1
    return (count - covered) * TRUNCATION_TERM


@pytest.mark.parametrize("seed", range(3))
def test_matches_per_cell_baseline_on_irregular_blobs(seed: int) -> None:
    # Dense, touching, nested objects: the truncation error can pass 1e-3 here, but
    # never the documented per-pixel bound.
    for mask in (_blobs((200, 260), seed), clean_mask(_blobs((200, 260), seed))):
        expected = baseline.per_cell_weight_map(mask)
        error = np.abs(weight_map(mask) - expected)
        assert np.all(error <= _truncation_bound(mask) + 1e-5)
        assert np.abs(weight_map(mask, truncate=math.inf) - expected).max() <= 1e-5


@st.composite
def _rectangle_masks(draw: st.DrawFn) -> np.ndarray:
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mask = np.zeros((height, width), bool)
    for _ in range(draw(st.integers(0, 8))):
        y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        mask[y0 : y0 + draw(st.integers(1, 12)), x0 : x0 + draw(st.integers(1, 12))] = True
    return mask


@settings(max_examples=150, deadline=None)
@given(
    mask=_rectangle_masks(),
    sigma=st.floats(0.5, 8.0),
    band=st.integers(1, 20),
    truncate=st.floats(0.5, 4.0),
)
def test_weight_map_properties(mask: np.ndarray, sigma: float, band: int, truncate: float) -> None:
    weights = weight_map(mask, sigma=sigma, band=band, truncate=truncate)
    assert weights.shape == mask.shape and weights.dtype == np.float32
    assert np.isfinite(weights).all() and weights.min() >= 1.0
    assert np.all(weights[mask] == 1.5)
    assert np.all(weights[~(mask | band_mask(mask, band))] == 1.0)
    # Truncation error bound of the module docstring: one dropped term per object.
    expected = baseline.per_cell_weight_map(mask, sigma=sigma, band=band)
    count = ndi.label(mask)[1]
    bound = count * math.exp(-(truncate**2) / 2) + 1e-5
    assert np.abs(weights - expected).max() <= bound
    exact = weight_map(mask, sigma=sigma, band=band, truncate=math.inf)
    assert np.abs(exact - expected).max() <= 1e-5


@pytest.mark.slow
def test_fast_map_is_much_faster_than_per_cell_baseline() -> None:
    mask = baseline.random_discs(1200, 1600, 50, (12, 20), seed=0)
    fast = baseline.median_seconds(lambda: weight_map(mask))
    slow = baseline.median_seconds(lambda: baseline.per_cell_weight_map(mask), repeats=3)
    assert fast < 0.1
    assert slow / fast >= 20
    assert np.abs(weight_map(mask) - baseline.per_cell_weight_map(mask)).max() <= 1e-3
