"""Detection and counting metrics over matched images (docs/method.md#matching-and-metrics).

Aggregates are micro-averaged (TP/FP/FN summed over images) with the paper's
+0.001 smoothing; counting errors are per-image means/medians. Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cellcount.evaluation.matching import ImageMatch

PAPER_EPS = 0.001
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "mae", "medae", "mpe")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def detection_scores(tp: float, fp: float, fn: float, eps: float = PAPER_EPS) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from (summed) TP/FP/FN.

    With the paper's smoothing ``eps = 0.001``: precision = (TP+eps)/(TP+FP+eps),
    recall = (TP+eps)/(TP+FN+eps), accuracy = (TP+eps)/(TP+FP+FN+eps),
    F1 = 2PR/(P+R). So an empty prediction of an empty image scores 1. With
    ``eps = 0`` the plain ratios are returned and 0/0 is taken as 0.

    Returns:
        dict with float values in [0, 1].
    """
    accuracy = _ratio(tp + eps, tp + fp + fn + eps)
    precision = _ratio(tp + eps, tp + fp + eps)
    recall = _ratio(tp + eps, tp + fn + eps)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def counting_errors(
    n_true: np.ndarray | Sequence[int], n_pred: np.ndarray | Sequence[int]
) -> dict[str, float]:
    """Per-image counting errors, aggregated over images.

    * ``mae``: mean of ``|n_pred - n_true|``; ``medae``: their median (numpy's,
      the mean of the two middle values for an even number of images).
    * ``mpe``: mean of the **signed** fraction ``(n_pred - n_true) /
      max(n_true, 1)`` (not x100). The paper divides by ``n_true + 1e-6``,
      which turns an image without cells but with one false detection into a
      1e6 term; flooring the denominator at 1 (as FNC v2 does) makes that term
      ``n_pred`` instead and changes nothing for images with cells (up to the
      paper's 1e-6).

    Args:
        n_true: per-image true counts (>= 0).
        n_pred: per-image predicted counts (>= 0), same length.

    Returns:
        dict of floats; NaN for all three when there are no images.
    """
    true = np.asarray(n_true, dtype=np.float64).ravel()
    pred = np.asarray(n_pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"count arrays differ in length: {true.shape} vs {pred.shape}")
    if true.size == 0:
        return {"mae": float("nan"), "medae": float("nan"), "mpe": float("nan")}
    error = pred - true
    return {
        "mae": float(np.mean(np.abs(error))),
        "medae": float(np.median(np.abs(error))),
        "mpe": float(np.mean(error / np.maximum(true, 1.0))),
    }


def summarize(matches: Iterable[ImageMatch], eps: float = PAPER_EPS) -> dict[str, float]:
    """Micro-averaged detection scores and counting errors over images.

    Returns:
        dict with keys ``accuracy, precision, recall, f1, mae, medae, mpe, tp, fp,
        fn, n_images`` (floats).
    """
    items = list(matches)
    tp = sum(m.tp for m in items)
    fp = sum(m.fp for m in items)
    fn = sum(m.fn for m in items)
    scores: dict[str, float] = detection_scores(tp, fp, fn, eps)
    scores.update(counting_errors([m.n_true for m in items], [m.n_pred for m in items]))
    scores.update(
        {"tp": float(tp), "fp": float(fp), "fn": float(fn), "n_images": float(len(items))}
    )
    return scores
