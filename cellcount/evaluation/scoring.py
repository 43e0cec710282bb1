"""Score one image: its predicted cells against its ground truth, with the
identities of missed and spurious cells (for tables and overlay pictures)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cellcount.evaluation.matching import (
    PAPER_RADIUS,
    CentreKind,
    ImageMatch,
    MatchMethod,
    centres,
    label_mask,
    match_pairs,
)
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.overlays import render_overlay, save_png


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
        pred_labels: int (H, W) labels from :func:`cellcount.evaluation.postprocess.postprocess`.
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


def score_row(name: str, score: ImageScore) -> dict[str, Any]:
    """One row of an evaluation ``counts.csv``: true and predicted counts, TP, FP, FN."""
    match = score.match
    return {
        "image": name, "true_count": match.n_true, "predicted_count": match.n_pred,
        "tp": match.tp, "fp": match.fp, "fn": match.fn,
    }  # fmt: skip


Segmenter = Callable[[np.ndarray], np.ndarray]
"""RGB float image (H, W, 3) in [0, 1] -> int32 cell labels (H, W), 0 background."""


def evaluate_images(
    segment: Segmenter,
    images: list[tuple[str, np.ndarray, np.ndarray]],
    radius: float = PAPER_RADIUS,
    matching: str = "greedy",
    overlay_dir: Path | None = None,
    max_overlays: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Count and score full-size images.

    Args:
        segment: image -> labels (:func:`cellcount.inference.predict.model_segmenter`,
            or the classical baseline).
        images: ``(name, RGB float image, truth)`` triples; truth is a bool mask
            or int instance labels.
        radius, matching: matching options (paper: 50 px, greedy).
        overlay_dir: where to save overlay PNGs (None: none).
        max_overlays: at most this many overlays (None: all).

    Returns:
        Micro metrics (see :func:`cellcount.evaluation.metrics.summarize`) and one
        ``counts.csv`` row per image.
    """
    rows, scores = [], []
    for index, (name, image, truth) in enumerate(tqdm(images, desc="evaluate", unit="image")):
        labels = segment(image)
        score = score_image(labels, truth, radius, matching)  # type: ignore[arg-type]
        scores.append(score)
        rows.append(score_row(name, score))
        if overlay_dir is not None and (max_overlays is None or index < max_overlays):
            picture = render_overlay(image, labels, score.true_labels,
                                     score.false_positives, score.false_negatives)  # fmt: skip
            save_png(picture, overlay_dir / f"{name}.png")
    return summarize(s.match for s in scores), rows
