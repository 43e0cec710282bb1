"""Post-processing: probability map -> labelled cells (docs/method.md#post-processing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from cellcount.evaluation.postprocess import (
    COUNTING_SPLITS,
    FOUR_CONNECTED,
    PAPER_SPLIT,
    REFERENCE_CELL_DIAMETER,
    PostprocessParams,
    SplitProfile,
    _clusters,
    _split,
    binarize,
    clean,
    count_cells,
    distance_transform,
    fill_small_holes,
    find_markers,
    postprocess,
    relabel_raster_order,
    remove_small_objects,
    split_touching,
)

PAPER = PostprocessParams()


def discs(
    shape: tuple[int, int], centres: Sequence[tuple[float, float]], radius: float
) -> np.ndarray:
    """Bool mask: union of discs of the given radius."""
    mask = np.zeros(shape, dtype=bool)
    reach = int(np.ceil(radius)) + 1
    for r, c in centres:
        r0, c0 = max(int(r) - reach, 0), max(int(c) - reach, 0)
        rows, cols = np.mgrid[r0 : int(r) + reach + 1, c0 : int(c) + reach + 1]
        window = mask[r0 : int(r) + reach + 1, c0 : int(c) + reach + 1]
        window |= np.hypot(rows[: window.shape[0], : window.shape[1]] - r,
                           cols[: window.shape[0], : window.shape[1]] - c) <= radius  # fmt: skip
    return mask


def random_blobs(seed: int, shape: tuple[int, int] = (160, 200), count: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(count):
        r, c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        mask |= np.hypot(rows - r, cols - c) <= rng.uniform(8, 24)
    return mask


def assert_sequential(labels: np.ndarray) -> None:
    assert labels.dtype == np.int32
    values = np.unique(labels)
    assert values[0] == 0 or labels.all()
    k = count_cells(labels)
    np.testing.assert_array_equal(values[values > 0], np.arange(1, k + 1))


# --- parameters -----------------------------------------------------------


def test_defaults_are_the_paper_constants() -> None:
    assert (PAPER.max_hole_area, PAPER.min_object_area) == (600, 200)
    assert (PAPER.max_filter_size, PAPER.peak_footprint, PAPER.min_peak_area) == (30, 40, 25)
    assert PAPER.compactness == 1.0
    assert PAPER.watershed_line and not PAPER.keep_unmarked


def test_from_cell_diameter_reference_gives_paper_constants() -> None:
    assert PostprocessParams.from_cell_diameter(REFERENCE_CELL_DIAMETER) == PAPER


def test_from_cell_diameter_scales_areas_quadratically_and_sizes_linearly() -> None:
    double = PostprocessParams.from_cell_diameter(2 * REFERENCE_CELL_DIAMETER)
    assert (double.max_hole_area, double.min_object_area, double.min_peak_area) == (2400, 800, 100)
    assert (double.max_filter_size, double.peak_footprint) == (60, 80)
    assert double.compactness == PAPER.compactness
    half = PostprocessParams.from_cell_diameter(20, keep_unmarked=True)
    assert (half.max_hole_area, half.min_object_area, half.min_peak_area) == (150, 50, 6)
    assert (half.max_filter_size, half.peak_footprint, half.keep_unmarked) == (15, 20, True)
    with pytest.raises(ValueError):
        PostprocessParams.from_cell_diameter(0)


# --- binarise and clean ------------------------------------------------------


def test_binarize_is_strict() -> None:
    prob = np.array([[0.49, 0.5, 0.51]])
    np.testing.assert_array_equal(binarize(prob, 0.5), [[False, False, True]])
    # A float32 "0.6" is not above a float64 0.6 (compared in the map's dtype).
    stored = np.array([[0.6, 0.61]], dtype=np.float32)
    for threshold in (0.6, np.float64(0.6), np.float32(0.6)):
        np.testing.assert_array_equal(binarize(stored, threshold), [[False, True]])
    np.testing.assert_array_equal(binarize(np.array([[0, 1]], np.uint8), 0.5), [[False, True]])
    with pytest.raises(ValueError):
        binarize(np.zeros((2, 2, 1)), 0.5)


def test_fill_small_holes_is_strict_and_four_connected() -> None:
    mask = np.ones((80, 80), dtype=bool)
    mask[5:25, 5:35] = False  # 600 px: kept (not < 600)
    mask[40:60, 5:35] = False
    mask[40, 5] = True  # 599 px: filled
    out = fill_small_holes(mask, 600)
    assert not out[10, 10] and out[50, 10]
    # Border-touching background pockets are holes too (as in remove_small_holes).
    pocket = np.ones((50, 50), dtype=bool)
    pocket[:3, :3] = False
    assert fill_small_holes(pocket, 600).all()


def test_remove_small_objects_strict_and_four_connected() -> None:
    mask = np.zeros((60, 60), dtype=bool)
    mask[0:10, 0:20] = True  # 200 px: kept
    mask[30:40, 0:20] = True
    mask[30, 0] = False  # 199 px: removed
    # Two 150-px squares touching only diagonally: separate 4-connected objects.
    mask[45:55, 30:45] = True
    mask[35:45, 45:60] = True
    out = remove_small_objects(mask, 200)
    assert out[5, 5] and not out[35, 5]
    assert not out[50, 35] and not out[40, 50]


def test_clean_fills_holes_and_removes_specks() -> None:
    mask = discs((120, 120), [(60, 60)], 25)
    mask[55:60, 55:60] = False  # 25-px hole
    mask[5:8, 5:8] = True  # 9-px speck
    out = clean(mask)
    assert out[57, 57] and not out[6, 6]
    assert out.dtype == bool


# --- splitting ---------------------------------------------------------------


def test_distance_transform_per_component_is_exact() -> None:
    for seed in range(4):
        mask = random_blobs(seed)
        mask[:, :3] = True  # an object on the border
        np.testing.assert_array_equal(distance_transform(mask), ndi.distance_transform_edt(mask))


def _reference_peaks(dmax: np.ndarray, mask: np.ndarray, footprint: int) -> np.ndarray:
    """``peak_local_max(dmax, footprint, labels=mask, indices=False)`` as in
    scikit-image < 0.18, spelled out: crop to the labels' box, zero outside the
    label, maximum filter (constant mode), equality, and > the global minimum."""
    labels = mask.astype(np.int32)
    (box,) = ndi.find_objects(labels)
    image = dmax[box] * (labels[box] == 1)
    window = ndi.maximum_filter(image, footprint=np.ones((footprint, footprint)), mode="constant")
    peaks = np.zeros(mask.shape, dtype=bool)
    peaks[box] = (image == window) & (image > dmax.min())
    return peaks


@pytest.mark.parametrize("seed", range(5))
def test_markers_match_the_original_peak_semantics(seed: int) -> None:
    mask = clean(random_blobs(seed, count=15))
    distance = ndi.distance_transform_edt(mask)
    dmax = ndi.maximum_filter(distance, size=PAPER.max_filter_size, mode="constant")
    peaks = _reference_peaks(dmax, mask, PAPER.peak_footprint)
    blobs, _ = ndi.label(peaks, structure=FOUR_CONNECTED)
    sizes = np.bincount(blobs.ravel())
    expected = (sizes >= PAPER.min_peak_area)[blobs] & peaks
    markers = find_markers(mask, distance, PAPER)
    np.testing.assert_array_equal(markers > 0, expected)
    reference_markers, _ = ndi.label(expected, structure=FOUR_CONNECTED)
    np.testing.assert_array_equal(markers, reference_markers)


@pytest.mark.parametrize("offset", [(0, 0), (37, 91), (300, 5)])
def test_cropped_computation_equals_full_image(offset: tuple[int, int]) -> None:
    mask = clean(random_blobs(7, count=14))
    full = _full_image_split(mask, PAPER)
    big = np.zeros((mask.shape[0] + 400, mask.shape[1] + 300), dtype=bool)
    r, c = offset
    big[r : r + mask.shape[0], c : c + mask.shape[1]] = mask
    labels = split_touching(big)
    assert_same_up_to_border_ties(labels[r : r + mask.shape[0], c : c + mask.shape[1]], full)


def _full_image_split(mask: np.ndarray, params: PostprocessParams) -> np.ndarray:
    return relabel_raster_order(_split(mask, params, distance_transform(mask), floor=None))


def _on_a_shared_border(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds two different nonzero labels."""
    high = ndi.maximum_filter(labels, size=3)
    low = -ndi.maximum_filter(-np.where(labels > 0, labels, np.iinfo(np.int32).max), size=3)
    return high > low


def assert_same_up_to_border_ties(got: np.ndarray, expected: np.ndarray) -> None:
    """Same cells; pixels may differ only where two cells touch (heap ties)."""
    assert count_cells(got) == count_cells(expected)
    differ = got != expected
    assert (_on_a_shared_border(got) | _on_a_shared_border(expected))[differ].all()
    assert differ.sum() <= 0.01 * (expected > 0).sum()


def _scene(seed: int, shape: tuple[int, int] = (600, 800)) -> np.ndarray:
    """Small groups of discs (touching or a few px apart), some on the border."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(3, 30))):
        r, c = rng.uniform(-10, shape[0] + 10), rng.uniform(-10, shape[1] + 10)
        for _ in range(int(rng.integers(1, 5))):
            dr, dc = rng.uniform(-35, 35, 2)
            mask |= np.hypot(rows - r - dr, cols - c - dc) <= rng.uniform(7, 28)
    return clean(mask)


@pytest.mark.parametrize("seed", [*range(6), 1029])
def test_cluster_path_equals_full_image_path(seed: int) -> None:
    """Markers and counts are identical; labels too, except that skimage's
    watershed heap breaks cost ties between touching cells in an order that
    depends on every marker in the image (seed 1029 shows such a tie)."""
    mask = _scene(seed)
    components, _ = ndi.label(mask, structure=FOUR_CONNECTED)
    boxes = np.array([(b[0].start, b[0].stop, b[1].start, b[1].stop)
                      for b in ndi.find_objects(components)])  # fmt: skip
    assert _clusters(boxes, PAPER, mask.shape) is not None  # the cluster path is taken
    for params in (PAPER, PostprocessParams(keep_unmarked=True, watershed_line=False)):
        assert_same_up_to_border_ties(split_touching(mask, params), _full_image_split(mask, params))


def test_dense_mask_uses_the_full_image_path() -> None:
    mask = np.ones((120, 150), dtype=bool)
    mask[::40, :] = False
    components, _ = ndi.label(mask, structure=FOUR_CONNECTED)
    boxes = np.array([(b[0].start, b[0].stop, b[1].start, b[1].stop)
                      for b in ndi.find_objects(components)])  # fmt: skip
    assert _clusters(boxes, PAPER, mask.shape) is None
    np.testing.assert_array_equal(split_touching(mask), _full_image_split(mask, PAPER))


@pytest.mark.parametrize(
    ("direction", "radius", "distance"),
    [((0, 1), 20, 34), ((1, 0), 20, 34), ((1, 1), 24, 42)],
)
@pytest.mark.parametrize("watershed_line", [True, False])
def test_two_disc_clump_splits_into_two(
    direction: tuple[int, int], radius: float, distance: float, watershed_line: bool
) -> None:
    """Two overlapping discs. The square max filter resolves centres more than
    ~max_filter_size apart *per axis*, so the diagonal case needs 42 px."""
    step = distance / 2 / np.hypot(*direction)
    a = (110 - direction[0] * step, 110 - direction[1] * step)
    b = (110 + direction[0] * step, 110 + direction[1] * step)
    mask = discs((220, 220), [a, b], radius)
    assert ndi.label(mask, structure=FOUR_CONNECTED)[1] == 1
    labels = split_touching(mask, PostprocessParams(watershed_line=watershed_line))
    assert count_cells(labels) == 2
    assert labels[round(a[0]), round(a[1])] != labels[round(b[0]), round(b[1])]
    assert_sequential(labels)


def test_counts_come_from_labels_not_from_relabelling() -> None:
    """docs/method.md#post-processing pitfall: with skimage >= 0.25 the compact watershed's lines
    have
    4-connected gaps, so ``label(labels > 0)`` may merge the halves; our count
    must not depend on that."""
    mask = discs((200, 200), [(100, 83), (100, 117)], 20)
    labels = split_touching(mask)
    assert count_cells(labels) == 2
    assert ndi.label(labels > 0, structure=FOUR_CONNECTED)[1] in (1, 2)


def test_three_disc_clump_splits_into_three() -> None:
    side = 38.0
    height = side * np.sqrt(3) / 2
    centres = [(100 - height / 2, 100 - side / 2), (100 - height / 2, 100 + side / 2),
               (100 + height / 2, 100)]  # fmt: skip
    mask = discs((200, 200), centres, 20)
    assert ndi.label(mask, structure=FOUR_CONNECTED)[1] == 1
    labels = split_touching(mask)
    assert count_cells(labels) == 3
    assert len({labels[round(r), round(c)] for r, c in centres}) == 3


def test_centres_closer_than_max_filter_size_are_one_marker() -> None:
    """A property of the method: equal discs whose centres are <= max_filter_size
    apart along an axis (or ~40 px diagonally) share one Dmax plateau, hence one
    marker, hence one cell."""
    assert count_cells(split_touching(discs((200, 200), [(100, 86), (100, 114)], 20))) == 1
    diagonal = [(100 - 12.7, 100 - 12.7), (100 + 12.7, 100 + 12.7)]  # 36 px apart
    assert count_cells(split_touching(discs((200, 200), diagonal, 20))) == 1


def test_unmarked_object_dropped_by_default_kept_on_request() -> None:
    # A small disc 4 px from a large one: the large disc's Dmax dominates the
    # shared peak window, so the small one gets no marker.
    mask = discs((200, 200), [(100, 80)], 30) | discs((200, 200), [(100, 124)], 10)
    assert ndi.label(mask, structure=FOUR_CONNECTED)[1] == 2
    default = split_touching(mask)
    assert count_cells(default) == 1 and default[100, 124] == 0
    kept = split_touching(mask, PostprocessParams(keep_unmarked=True))
    assert count_cells(kept) == 2 and kept[100, 124] != kept[100, 80]
    assert_sequential(kept)


def test_relabel_raster_order() -> None:
    labels = np.array([[0, 7, 7], [3, 0, 9], [3, 0, 0]], dtype=np.int32)
    np.testing.assert_array_equal(relabel_raster_order(labels), [[0, 1, 1], [2, 0, 3], [2, 0, 0]])


# --- full pipeline -------------------------------------------------------------


def test_postprocess_empty_and_specks_give_no_cells() -> None:
    assert not postprocess(np.zeros((64, 80), dtype=np.float32), 0.5).any()
    prob = np.zeros((64, 80), dtype=np.float32)
    prob[10:20, 10:20] = 0.9  # 100 px < 200
    labels = postprocess(prob, 0.5)
    assert labels.dtype == np.int32 and count_cells(labels) == 0


def test_postprocess_threshold_is_strict() -> None:
    prob = discs((120, 120), [(60, 60)], 20).astype(np.float64) * 0.7
    assert count_cells(postprocess(prob, 0.7)) == 0
    assert count_cells(postprocess(prob, 0.69)) == 1


def test_postprocess_many_cells_no_uint8_overflow() -> None:
    centres = [(20 + 40 * i, 20 + 40 * j) for i in range(15) for j in range(20)]
    prob = discs((600, 800), centres, 12).astype(np.float32)
    labels = postprocess(prob, 0.5)
    assert count_cells(labels) == 300
    assert_sequential(labels)
    # Raster order: the first cell is the top-left one, the last the bottom-right.
    assert labels[20, 20] == 1 and labels[580, 780] == 300


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.05, 0.95),
    blobs=st.integers(0, 12),
)
def test_random_probability_maps_give_valid_labels(seed: int, threshold: float, blobs: int) -> None:
    """Property: any probability map gives sequential int32 labels inside the cleaned mask,
    and scoring them against a random truth keeps TP + FN = true and TP + FP = predicted."""
    from cellcount.evaluation.scoring import score_image

    rng = np.random.default_rng(seed)
    prob = np.zeros((96, 128), np.float32)
    for _ in range(blobs):
        y, x, r = rng.integers(0, 96), rng.integers(0, 128), rng.integers(3, 20)
        yy, xx = np.ogrid[:96, :128]
        prob[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = rng.uniform(0.3, 1.0)
    prob = np.clip(prob + rng.normal(0, 0.05, prob.shape).astype(np.float32), 0, 1)
    params = PostprocessParams.from_cell_diameter(12)
    labels = postprocess(prob, threshold, params)
    assert labels.dtype == np.int32 and labels.shape == prob.shape
    count = int(labels.max(initial=0))
    assert set(np.unique(labels).tolist()) == set(range(count + 1))
    assert not (labels > 0)[~clean(binarize(prob, threshold), params)].any()
    truth = rng.random((96, 128)) > 0.97
    score = score_image(labels, truth)
    assert score.match.tp + score.match.fn == score.match.n_true
    assert score.match.tp + score.match.fp == score.match.n_pred == count
    assert min(score.match.tp, score.match.fp, score.match.fn) >= 0


def test_split_profile_scales_windows_and_minimum_area_only() -> None:
    paper = PostprocessParams.from_cell_diameter(40.0)
    fine = PostprocessParams.from_cell_diameter(40.0, SplitProfile(0.5, 0.25, True))
    assert (fine.max_filter_size, fine.peak_footprint) == (15, 20)
    assert fine.min_object_area == 50 and fine.keep_unmarked
    assert (fine.max_hole_area, fine.min_peak_area) == (paper.max_hole_area, paper.min_peak_area)
    assert PostprocessParams.from_cell_diameter(40.0, PAPER_SPLIT) == PostprocessParams()
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError, match="window"):
            SplitProfile(window=bad)
    assert SplitProfile.from_dict(SplitProfile(0.6, 0.5, True).as_dict()) == SplitProfile(
        0.6, 0.5, True
    )
    assert SplitProfile.from_dict(None) == PAPER_SPLIT


def test_finer_split_profile_separates_crowded_cells_the_paper_merges() -> None:
    """Equal discs 28 px apart (0.7 diameters): one cell for the paper's windows,
    two with the 0.6 profile; a lone disc stays one cell under every profile."""
    crowded = discs((200, 200), [(100, 86), (100, 114)], 20)
    lone = discs((200, 200), [(100, 100)], 20)
    counts = {}
    for split in COUNTING_SPLITS:
        params = PostprocessParams.from_cell_diameter(40.0, split)
        counts[split.window] = count_cells(split_touching(crowded, params))
        assert count_cells(split_touching(lone, params)) == 1
    assert counts[1.0] == 1 and counts[0.6] == 2
