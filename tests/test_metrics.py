"""Detection/counting metrics and their TorchMetrics accumulator
(docs/method.md#matching-and-metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellcount.evaluation.matching import (
    ImageMatch,
    candidate_pairs,
    centres,
    label_mask,
    match_greedy,
    match_hungarian,
    match_points,
)
from cellcount.evaluation.metrics import counting_errors, detection_scores, summarize
from cellcount.evaluation.scoring import score_image

# --- centres -----------------------------------------------------------------


def test_bbox_centres_follow_the_paper_rounding() -> None:
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:6, 3:8] = 1  # rows 2..5 -> 2 + 4 // 2 = 4; cols 3..7 -> 3 + 5 // 2 = 5
    labels[10:11, 10:13] = 3  # label 2 absent: skipped
    np.testing.assert_array_equal(centres(labels), [[4, 5], [10, 11]])


def test_centroids_are_mean_positions() -> None:
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[0, 0:3] = 1
    labels[5, 5] = labels[6, 5] = labels[5, 6] = 2  # an L: centroid (16/3, 16/3)
    np.testing.assert_allclose(centres(labels, "centroid"), np.array([[0, 1], [16 / 3, 16 / 3]]))
    assert centres(np.zeros((4, 4), np.int32)).shape == (0, 2)
    assert centres(np.zeros((4, 4), np.int32), "centroid").shape == (0, 2)
    with pytest.raises(ValueError):
        centres(labels, "middle")  # type: ignore[arg-type]


def test_label_mask_uses_four_connectivity() -> None:
    mask = np.array([[255, 0], [0, 255]], dtype=np.uint8)
    labels = label_mask(mask)
    assert labels.dtype == np.int32 and labels.max() == 2


# --- matching ------------------------------------------------------------------


def test_radius_is_strict() -> None:
    true = np.array([[0.0, 0.0]])
    assert match_points(true, [[30.0, 40.0]], radius=50).tp == 0  # exactly 50
    assert match_points(true, [[30.0, 39.0]], radius=50).tp == 1  # 49.2
    assert match_points(true, [[30.0, 40.0]], radius=50, method="hungarian").tp == 0
    assert match_points(true, [[0.0, 49.999]], radius=50, method="hungarian").tp == 1
    t, p, d2 = candidate_pairs(true, np.array([[0.0, 50.0], [0.0, 49.0]]), 50)
    assert t.tolist() == [0] and p.tolist() == [1] and d2.tolist() == [49.0**2]


def test_empty_sides() -> None:
    some = np.array([[1.0, 1.0], [5.0, 5.0]])
    none = np.zeros((0, 2))
    for method in ("greedy", "hungarian"):
        assert match_points(none, some, method=method) == ImageMatch(0, 2, 0, 0, 2)
        assert match_points(some, none, method=method) == ImageMatch(0, 0, 2, 2, 0)
        assert match_points(none, none, method=method) == ImageMatch(0, 0, 0, 0, 0)
        assert match_points([], [], method=method) == ImageMatch(0, 0, 0, 0, 0)


def test_greedy_ties_go_to_the_lowest_true_index() -> None:
    true = np.array([[0.0, 10.0], [0.0, -10.0]])
    pairs = match_greedy(true, np.array([[0.0, 0.0]]))
    assert pairs.tolist() == [[0, 0]]


def test_greedy_visits_predictions_in_order_and_takes_the_nearest() -> None:
    true = np.array([[0.0, 0.0], [0.0, 20.0]])
    pred = np.array([[0.0, 12.0], [0.0, 1.0]])
    # Pred 0 is nearer true 1 (8 px) than true 0 (12 px): takes true 1.
    assert match_greedy(true, pred).tolist() == [[1, 0], [0, 1]]
    # Pred 0 takes true 0 (nearest, 5 px); pred 1 then only has true 0 in range.
    pred = np.array([[0.0, 5.0], [0.0, -40.0]])
    assert match_greedy(true, pred).tolist() == [[0, 0]]


def test_greedy_is_suboptimal_where_hungarian_is_not() -> None:
    # Pred 0 sits between both cells and is nearer true 0; greedy gives it true 0,
    # leaving pred 1 (in range of true 0 only) unmatched. Hungarian pairs
    # pred 0 with true 1 and pred 1 with true 0.
    true = np.array([[0.0, 0.0], [0.0, 60.0]])
    pred = np.array([[0.0, 25.0], [0.0, -40.0]])
    assert match_points(true, pred, 50, "greedy") == ImageMatch(1, 1, 1, 2, 2)
    assert match_points(true, pred, 50, "hungarian") == ImageMatch(2, 0, 0, 2, 2)
    assert match_hungarian(true, pred).tolist() == [[1, 0], [0, 1]]


def test_hungarian_prefers_shorter_total_distance_among_maximum_matchings() -> None:
    true = np.array([[0.0, 0.0], [0.0, 10.0]])
    pred = np.array([[0.0, 9.0], [0.0, 1.0]])
    assert match_hungarian(true, pred).tolist() == [[1, 0], [0, 1]]


def test_score_image_defaults_are_the_paper_rule() -> None:
    truth = np.zeros((100, 200), dtype=np.int32)
    truth[10:30, 10:30] = 1
    truth[10:30, 150:170] = 2
    pred = np.zeros_like(truth)
    pred[12:32, 12:32] = 1  # near cell 1
    pred[80:95, 60:75] = 2  # far from everything
    assert score_image(pred, truth).match == ImageMatch(tp=1, fp=1, fn=1, n_true=2, n_pred=2)
    assert score_image(pred, truth, method="hungarian", centre="centroid").match.tp == 1
    with pytest.raises(ValueError):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), method="nearest")  # type: ignore[arg-type]


points = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=0, max_size=40).map(
    lambda p: np.asarray(p, dtype=np.float64).reshape(-1, 2)
)


@settings(max_examples=150, deadline=None)
@given(true=points, pred=points, radius=st.sampled_from([10.0, 30.0, 50.0]))
def test_matching_properties(true: np.ndarray, pred: np.ndarray, radius: float) -> None:
    greedy = match_points(true, pred, radius, "greedy")
    hungarian = match_points(true, pred, radius, "hungarian")
    for result in (greedy, hungarian):
        assert result.tp + result.fn == len(true) and result.tp + result.fp == len(pred)
        assert min(result.tp, result.fp, result.fn) >= 0
    assert hungarian.tp >= greedy.tp
    for pairs in (match_greedy(true, pred, radius), match_hungarian(true, pred, radius)):
        assert len(set(pairs[:, 0].tolist())) == len(pairs) == len(set(pairs[:, 1].tolist()))
        if len(pairs):
            d2 = ((true[pairs[:, 0]] - pred[pairs[:, 1]]) ** 2).sum(axis=1)
            assert (d2 < radius**2).all()


def test_hungarian_is_maximum_on_a_brute_force_check() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        true = rng.integers(0, 60, (5, 2)).astype(float)
        pred = rng.integers(0, 60, (5, 2)).astype(float)
        best = _brute_force_max_matching(true, pred, 20.0)
        assert match_points(true, pred, 20.0, "hungarian").tp == best


def _brute_force_max_matching(true: np.ndarray, pred: np.ndarray, radius: float) -> int:
    from itertools import permutations

    close = ((true[:, None] - pred[None]) ** 2).sum(-1) < radius**2
    return max(sum(close[i, p] for i, p in enumerate(perm)) for perm in permutations(range(5)))


def test_matching_1000_cells_is_fast() -> None:
    import time

    rng = np.random.default_rng(0)
    true = rng.uniform(0, [1200, 1600], (1000, 2)).round()
    pred = (true + rng.normal(0, 15, true.shape)).round()
    start = time.perf_counter()
    for method in ("greedy", "hungarian"):
        match_points(true, pred, 50.0, method)
    assert time.perf_counter() - start < 1.0


# --- aggregates ------------------------------------------------------------------


def test_detection_scores_hand_computed() -> None:
    scores = detection_scores(8, 2, 4)
    assert scores["precision"] == pytest.approx(8.001 / 10.001)
    assert scores["recall"] == pytest.approx(8.001 / 12.001)
    assert scores["accuracy"] == pytest.approx(8.001 / 14.001)
    p, r = 8.001 / 10.001, 8.001 / 12.001
    assert scores["f1"] == pytest.approx(2 * p * r / (p + r))
    plain = detection_scores(8, 2, 4, eps=0)
    assert plain["f1"] == pytest.approx(16 / 22)  # 2TP / (2TP + FP + FN)
    assert detection_scores(0, 0, 0)["f1"] == pytest.approx(1.0)  # smoothing
    assert detection_scores(0, 0, 0, eps=0) == {
        "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0
    }  # fmt: skip


def test_counting_errors_hand_computed() -> None:
    errors = counting_errors([10, 4, 2, 5], [12, 4, 1, 9])
    assert errors["mae"] == pytest.approx((2 + 0 + 1 + 4) / 4)
    assert errors["medae"] == pytest.approx(1.5)
    assert errors["mpe"] == pytest.approx((0.2 + 0 - 0.5 + 0.8) / 4)


def test_mpe_with_a_zero_cell_image_stays_bounded() -> None:
    # The paper's n_true + 1e-6 would add 3e6 / 2 here.
    errors = counting_errors([0, 10], [3, 10])
    assert errors["mpe"] == pytest.approx((3 + 0) / 2)
    assert counting_errors([0], [0])["mpe"] == 0.0
    assert all(math.isnan(v) for v in counting_errors([], []).values())
    with pytest.raises(ValueError):
        counting_errors([1, 2], [1])


def test_summarize_micro_averages() -> None:
    matches = [ImageMatch(3, 1, 0, 3, 4), ImageMatch(1, 0, 2, 3, 1)]
    out = summarize(matches)
    assert (out["tp"], out["fp"], out["fn"], out["n_images"]) == (4, 1, 2, 2)
    assert out["f1"] == pytest.approx(detection_scores(4, 1, 2)["f1"])
    assert out["mae"] == pytest.approx(1.5) and out["mpe"] == pytest.approx((1 / 3 - 2 / 3) / 2)


# --- TorchMetrics ------------------------------------------------------------------

MATCHES = [
    ImageMatch(3, 1, 0, 3, 4),
    ImageMatch(1, 0, 2, 3, 1),
    ImageMatch(0, 2, 0, 0, 2),
    ImageMatch(5, 0, 0, 5, 5),
    ImageMatch(7, 3, 1, 8, 10),
]
