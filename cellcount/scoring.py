"""Score one image: its predicted cells against its ground truth, with the
identities of missed and spurious cells (for tables and overlay pictures)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellcount.metrics import (
    PAPER_RADIUS,
    CentreKind,
    ImageMatch,
    MatchMethod,
    centres,
    label_mask,
    match_pairs,
)


@dataclass(frozen=True)
class ImageScore:
    """One image's outcome.

    Attributes:
        pred_labels, true_labels: int (H, W) label images (0 background).
        match: TP/FP/FN counts.
        false_positives: predicted label ids with no true partner.
        false_negatives: true label ids with no predicted partner.
    """

    pred_labels: np.ndarray
    true_labels: np.ndarray
    match: ImageMatch
    false_positives: list[int]
    false_negatives: list[int]


def score_image(
    pred_labels: np.ndarray,
    truth: np.ndarray,
    radius: float = PAPER_RADIUS,
    method: MatchMethod = "greedy",
    centre: CentreKind = "bbox",
) -> ImageScore:
    """Match predicted cells to true cells (paper defaults: bbox centres, greedy, < 50 px).

    Args:
        pred_labels: int (H, W) labels from :func:`cellcount.postprocess.postprocess`.
        truth: bool (H, W) mask (labelled with 4-connectivity) or int (H, W) labels.
        radius, method, centre: matching options.
    """
    true_labels = label_mask(truth) if truth.dtype == bool else truth
    true_pts, pred_pts = centres(true_labels, centre), centres(pred_labels, centre)
    pairs = match_pairs(true_pts, pred_pts, radius, method)
    match = ImageMatch.from_pairs(pairs, len(true_pts), len(pred_pts))
    return ImageScore(
        pred_labels=pred_labels,
        true_labels=true_labels,
        match=match,
        false_positives=_unmatched(pairs[:, 1], len(pred_pts)),
        false_negatives=_unmatched(pairs[:, 0], len(true_pts)),
    )


def _unmatched(matched_indices: np.ndarray, count: int) -> list[int]:
    """Label ids (1-based) of objects whose 0-based index is not matched."""
    free = np.ones(count, dtype=bool)
    free[matched_indices] = False
    return (np.flatnonzero(free) + 1).tolist()
