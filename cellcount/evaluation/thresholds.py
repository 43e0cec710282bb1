"""Threshold optimisation: F1-vs-threshold sweep and knee selection
(docs/method.md#threshold-selection).

The paper sweeps 20 thresholds (0.500 ... 0.975, step 0.025) over the train/val
full-size images, records micro-F1 per threshold and picks the knee of the curve
with ``KneeLocator(curve="concave", direction="decreasing", S=1.0)`` (kneed
0.7.0). Reading the curve from the highest threshold down, the knee is where
F1 stops rising quickly, usually the high end of the F1 plateau.

kneed 0.9 (installed) vs 0.7.0 for (concave, decreasing): 0.9 mirrors x by value
(``1 - x``) instead of only reversing y, which is the same on an evenly spaced
grid up to rounding; and after a local minimum of the difference curve 0.9
stops declaring knees until the next local maximum, where 0.7.0 keeps going with
a threshold of 0 (a knee as soon as the difference curve goes negative). So the
two can differ on curves with several bumps. ``method="kneedle"`` uses the
installed kneed; ``method="kneedle070"`` is our re-implementation of the 0.7.0
rule (written from docs/method.md#threshold-selection), to reproduce the paper whatever kneed is
installed.
This is the only module that imports kneed.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.signal import argrelextrema

from cellcount.evaluation.matching import (
    PAPER_RADIUS,
    CentreKind,
    ImageMatch,
    MatchMethod,
    centres,
    label_mask,
    match_points,
)
from cellcount.evaluation.metrics import PAPER_EPS, summarize
from cellcount.evaluation.postprocess import (
    PostprocessParams,
    SplitProfile,
    postprocess,
)
from cellcount.runtime.files import atomic_path, write_csv

log = logging.getLogger(__name__)

SelectMethod = Literal["kneedle", "kneedle070", "argmax"]
TABLE_COLUMNS = (
    "threshold", "f1", "precision", "recall", "accuracy", "mae", "medae", "mpe",
    "tp", "fp", "fn", "n_images",
)  # fmt: skip


def threshold_grid(start: float = 0.5, stop: float = 0.975, step: float = 0.025) -> np.ndarray:
    """Evenly spaced thresholds from ``start`` to ``stop`` inclusive.

    The defaults give the paper's 20 values 0.500, 0.525, ..., 0.975 (0.875 is
    the 16th). Built with ``linspace`` and rounded to 10 decimals, so the values
    are the decimal ones, free of ``arange`` drift.

    Returns:
        float64 (N,) ascending.
    """
    if step <= 0 or stop < start:
        raise ValueError(f"need step > 0 and stop >= start, got {start}, {stop}, {step}")
    count = round((stop - start) / step) + 1
    return np.round(np.linspace(start, start + (count - 1) * step, count), 10)


def _argmax_highest(thresholds: np.ndarray, f1: np.ndarray) -> float:
    """Threshold of maximal F1; ties go to the highest threshold (the most
    conservative binarisation, and the end of a plateau the knee also favours)."""
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best].max())


def _knee_installed(x: np.ndarray, y: np.ndarray, sensitivity: float) -> float | None:
    from kneed import KneeLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        locator = KneeLocator(x, y, S=sensitivity, curve="concave", direction="decreasing")
    return None if locator.knee is None else float(locator.knee)


def kneedle_070(x: np.ndarray, y: np.ndarray, sensitivity: float = 1.0) -> float | None:
    """Knee of a (concave, decreasing) curve by kneed 0.7.0's offline rule.

    Steps (docs/method.md#threshold-selection): min-max normalise x and y; reverse y; difference
    curve
    ``d = y_rev - x_norm``; local maxima/minima of ``d`` with ``>=``/``<=``
    (``argrelextrema``, ends included). From the first maximum on, each maximum
    sets the threshold ``d[max] - S * mean(diff(x_norm))`` and each minimum
    resets it to 0; the first ``i`` whose successor falls below the threshold
    ends the scan, and the knee is ``x[N - 1 - m]`` with ``m`` the last maximum.

    Args:
        x: float (N,) ascending, N >= 3, not constant.
        y: float (N,) not constant.
        sensitivity: kneedle's S.

    Returns:
        The knee's x value, or None when there is none.
    """
    xn = (x - x.min()) / (x.max() - x.min())
    yn = (y - y.min()) / (y.max() - y.min())
    diff = yn[::-1] - xn
    maxima = argrelextrema(diff, np.greater_equal)[0]
    minima = argrelextrema(diff, np.less_equal)[0]
    if maxima.size == 0:
        return None
    limits = diff[maxima] - sensitivity * abs(float(np.diff(xn).mean()))
    is_max, is_min = set(maxima.tolist()), set(minima.tolist())
    threshold, last_max, seen = 0.0, int(maxima[0]), 0
    for i in range(int(maxima[0]), len(x) - 1):
        if i in is_max:
            threshold, last_max = float(limits[seen]), i
            seen += 1
        if i in is_min:
            threshold = 0.0
        if diff[i + 1] < threshold:
            return float(x[len(x) - 1 - last_max])
    return None


def select_threshold(
    thresholds: Sequence[float] | np.ndarray,
    f1: Sequence[float] | np.ndarray,
    method: SelectMethod = "kneedle",
    sensitivity: float = 1.0,
) -> float:
    """Pick the operating threshold from an F1-vs-threshold curve.

    Args:
        thresholds: float (N,) thresholds (any order; sorted here).
        f1: float (N,) F1 at each threshold, finite.
        method: ``"kneedle"`` (installed kneed, the paper's call), ``"kneedle070"``
            (kneed 0.7.0 rule, version-proof) or ``"argmax"``.
        sensitivity: kneedle's S (paper: 1.0).

    Returns:
        The chosen threshold. When a kneedle finds no knee (e.g. a flat or
        monotone curve, or fewer than 3 points) the argmax is used and a warning
        is logged. Argmax ties go to the highest threshold.
    """
    x = np.asarray(thresholds, dtype=np.float64).ravel()
    y = np.asarray(f1, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(
            f"thresholds and f1 must be non-empty and equal length: {x.shape}, {y.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("F1 values must be finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if method == "argmax":
        return _argmax_highest(x, y)
    if method not in ("kneedle", "kneedle070"):
        raise ValueError(f"unknown selection method {method!r}")
    knee = None
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        if method == "kneedle":
            knee = _knee_installed(x, y, sensitivity)
        else:
            knee = kneedle_070(x, y, sensitivity)
    if knee is None:
        chosen = _argmax_highest(x, y)
        log.warning("%s found no knee in the F1 curve; using the argmax %.4g", method, chosen)
        return chosen
    return knee


def select_counting(
    tables: Mapping[SplitProfile, Sequence[dict[str, float]]], mpe_tolerance: float = 0.02
) -> tuple[SplitProfile, float]:
    """The (split profile, threshold) pair for counting (docs/method.md#threshold-selection).

    kneedle picks a conservative threshold (the knee of the F1 curve), which
    under-counts. For counting, the rows (of every profile's sweep at once) whose
    counts are unbiased within ``mpe_tolerance`` (``|MPE|``, the mean signed
    relative count error) compete on F1; when no row is that unbiased, the least
    biased row is taken.

    Args:
        tables: one sweep table (rows with ``threshold``, ``f1`` and ``mpe``) per
            candidate profile, e.g. ``{PAPER_SPLIT: table}`` for the threshold alone.

    Returns:
        The chosen profile and threshold. Ties go to the smaller ``|MPE|``, then
        to the earlier profile.
    """
    rows = [(index, profile, row) for index, (profile, table) in enumerate(tables.items())
            for row in table]  # fmt: skip
    if not rows:
        raise ValueError("empty sweep table")
    unbiased = [item for item in rows if abs(item[2]["mpe"]) <= mpe_tolerance]
    if unbiased:
        key = lambda item: (-item[2]["f1"], abs(item[2]["mpe"]), item[0])  # noqa: E731
        _, profile, row = min(unbiased, key=key)
    else:
        _, profile, row = min(rows, key=lambda item: (abs(item[2]["mpe"]), item[0]))
    return profile, float(row["threshold"])


def sweep_image(
    prob: np.ndarray,
    truth: np.ndarray,
    thresholds: Iterable[float],
    params: PostprocessParams | None = None,
    radius: float = PAPER_RADIUS,
    method: MatchMethod = "greedy",
    centre: CentreKind = "bbox",
) -> list[ImageMatch]:
    """Post-process one probability map at every threshold and match it.

    Args:
        prob: float (H, W) probabilities in [0, 1].
        truth: (H, W) ground truth: a bool mask (labelled here with
            4-connectivity) or an int label image (used as is).
        thresholds: the thresholds to test.
        params, radius, method, centre: as in :func:`postprocess` and
            :func:`cellcount.evaluation.scoring.score_image`.

    Returns:
        One :class:`ImageMatch` per threshold, in the given order.
    """
    truth_labels = label_mask(truth) if truth.dtype == bool else truth
    true_pts = centres(truth_labels, centre)
    return [
        match_points(true_pts, centres(postprocess(prob, t, params), centre), radius, method)
        for t in thresholds
    ]


def sweep(
    prob_maps: Iterable[np.ndarray],
    true_labels: Iterable[np.ndarray],
    thresholds: Sequence[float] | np.ndarray | None = None,
    params: PostprocessParams | None = None,
    radius: float = PAPER_RADIUS,
    method: MatchMethod = "greedy",
    centre: CentreKind = "bbox",
    eps: float = PAPER_EPS,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Micro-averaged scores at each threshold over a set of images
    (docs/method.md#threshold-selection).

    Args:
        prob_maps: float (H, W) probability maps (an iterable, consumed once, so
            a generator that predicts image by image keeps memory flat).
        true_labels: matching ground truths (see :func:`sweep_image`).
        thresholds: grid; :func:`threshold_grid` when None.
        params, radius, method, centre, eps: post-processing and scoring options.
        progress: show a tqdm bar over images.

    Returns:
        One dict per threshold (ascending as given) with the keys of
        ``TABLE_COLUMNS``.
    """
    grid = threshold_grid() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pairs: Iterable[tuple[np.ndarray, np.ndarray]] = zip(prob_maps, true_labels, strict=True)
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="threshold sweep", unit="image")
    per_image = [
        sweep_image(prob, truth, grid, params, radius, method, centre) for prob, truth in pairs
    ]
    return sweep_table(grid, per_image, eps)


def sweep_table(
    thresholds: Sequence[float] | np.ndarray,
    per_image: Sequence[Sequence[ImageMatch]],
    eps: float = PAPER_EPS,
) -> list[dict[str, float]]:
    """Micro-averaged scores per threshold from per-image matches.

    Args:
        thresholds: the grid, length T.
        per_image: for each image, its T matches (one per threshold, as from
            :func:`sweep_image`).
        eps: score smoothing (paper: 0.001).

    Returns:
        One dict per threshold with the keys of ``TABLE_COLUMNS``.
    """
    table = []
    for index, threshold in enumerate(thresholds):
        row = {"threshold": float(threshold), **summarize((m[index] for m in per_image), eps)}
        table.append({key: row[key] for key in TABLE_COLUMNS})
    return table


def save_curve(
    table: Sequence[dict[str, float]],
    path_png: Path | str,
    path_csv: Path | str,
    chosen: float | None = None,
    count_threshold: float | None = None,
) -> None:
    """Write the sweep table as CSV and the F1/precision/recall-vs-threshold plot.

    Both files are written to a temporary sibling and renamed into place.

    Args:
        table: rows from :func:`sweep` (at least ``threshold`` and ``f1``).
        path_png: plot path (format from the suffix).
        path_csv: CSV path; columns are the first row's keys, in order.
        chosen: threshold to mark with a vertical line, if any.
        count_threshold: the counting threshold, marked too when given.
    """
    if not table:
        raise ValueError("empty sweep table")
    columns = list(table[0])
    write_csv(path_csv, [{key: row[key] for key in columns} for row in table], columns)
    _plot_curve(table, Path(path_png), chosen, count_threshold)


def _plot_curve(
    table: Sequence[dict[str, float]], path: Path, chosen: float | None,
    count_threshold: float | None = None,
) -> None:  # fmt: skip
    # Figure + Agg canvas directly: no pyplot global state, safe in workers.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [row["threshold"] for row in table]
    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(x, [row["f1"] for row in table], "o-", color="black", label="F1")
    for key, colour in (("precision", "tab:blue"), ("recall", "tab:orange")):
        if key in table[0]:
            axes.plot(x, [row[key] for row in table], "--", color=colour, alpha=0.7, label=key)
    if chosen is not None:
        f1_at = float(np.interp(chosen, x, [row["f1"] for row in table]))
        axes.axvline(chosen, color="tab:red", linestyle=":", label=f"chosen t = {chosen:.3f}")
        # Put the note on the roomier side of the line.
        right_half = chosen > (min(x) + max(x)) / 2
        axes.annotate(
            f"t = {chosen:.3f}\nF1 = {f1_at:.3f}",
            (chosen, f1_at),
            textcoords="offset points",
            xytext=(-70 if right_half else 8, -36),
            color="tab:red",
            bbox={"boxstyle": "round", "fc": "white", "ec": "tab:red", "alpha": 0.9},
        )
    if count_threshold is not None:
        axes.axvline(count_threshold, color="tab:green", linestyle="--",
                     label=f"counting t = {count_threshold:.3f}")  # fmt: skip
    axes.set_xlabel("threshold")
    axes.set_ylabel("score")
    axes.set_title("F1 vs threshold")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
