"""Score counted images against a lab's own annotations (``cellcount count --truth DIR``).

Each image's annotation (clicked points or a mask, :mod:`cellcount.data.points`) is
matched one to one with the centroids of the counted cells, within a radius that
defaults to 1.25 cell diameters (the paper's 50 px for 40 px cells), greedily as
in the paper's protocol (docs/method.md#matching-and-metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellcount.data.points import annotation_names, find_annotation, read_truth_points
from cellcount.evaluation.matching import ImageMatch, centres, match_points
from cellcount.evaluation.metrics import summarize

SCORE_COLUMNS = ("truth_file", "true_count", "tp", "fp", "fn", "match_radius")
RADIUS_PER_DIAMETER = 1.25


def score_labels(
    labels: np.ndarray,
    folder: Path,
    name: str,
    cell_diameter: float,
    radius: float | None = None,
    marker_type: str | None = None,
) -> dict[str, Any]:
    """The score columns of one counted image.

    Args:
        labels: int (H, W) counted cells.
        folder: the truth folder; ``name`` is looked up in it.
        cell_diameter: the diameter the image was counted at (px), for the radius.
        radius: matching radius in px; None: ``RADIUS_PER_DIAMETER * cell_diameter``.

    Raises:
        DataError: no annotation for ``name``, or an unusable one (the message says
            which files were looked for, or what is wrong with the file).
    """
    from cellcount.data.errors import DataError

    path = find_annotation(folder, name)
    if path is None:
        raise DataError(f"no annotation of {name!r} in {folder} (looked for "
                        f"{annotation_names(name)})")  # fmt: skip
    truth = read_truth_points(path, labels.shape, marker_type)
    radius = RADIUS_PER_DIAMETER * cell_diameter if radius is None else radius
    match = match_points(truth, centres(labels, "centroid"), radius)
    return {"truth_file": str(path), "true_count": match.n_true, "tp": match.tp,
            "fp": match.fp, "fn": match.fn, "match_radius": round(radius, 2)}  # fmt: skip


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Micro precision/recall/F1 and MAE/MedAE/MPE over the scored rows (those with a
    ``true_count``); ``n_images`` 0 when none."""
    matches = [
        ImageMatch(tp=int(r["tp"]), fp=int(r["fp"]), fn=int(r["fn"]),
                   n_true=int(r["true_count"]), n_pred=int(r["tp"]) + int(r["fp"]))
        for r in rows if r.get("true_count") not in (None, "")
    ]  # fmt: skip
    return summarize(matches) if matches else {"n_images": 0.0}
