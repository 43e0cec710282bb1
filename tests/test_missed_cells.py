"""scripts.missed_cells: each missed true cell lands in the class and peak band it should."""

from __future__ import annotations

import numpy as np
from skimage.draw import disk

from cellcount.evaluation.scoring import score_image
from scripts.missed_cells import markdown, missed_classes


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth labels, predicted labels and probabilities of five 16 px-scale cells: two
    touching ones found as one detection, a speck cut by the border, a small nucleus
    the model saw but lost, and a full-size dim one it did not find."""
    truth = np.zeros((100, 100), np.int32)
    for cell, centre in enumerate([(30, 30), (30, 46)], start=1):
        truth[disk(centre, 8, shape=truth.shape)] = cell
    truth[0:3, 70:75] = 3
    truth[disk((70, 70), 2, shape=truth.shape)] = 4
    truth[disk((70, 30), 8, shape=truth.shape)] = 5
    pred = np.where((truth == 1) | (truth == 2), 1, 0).astype(np.int32)
    probabilities = np.zeros(truth.shape, np.float32)
    probabilities[pred > 0] = 0.95
    probabilities[truth == 4] = 0.9
    probabilities[truth == 5] = 0.5
    return truth, pred, probabilities


def test_each_missed_cell_gets_its_class_and_peak_band() -> None:
    truth, pred, probabilities = _scene()
    score = score_image(pred, truth, radius=20.0)
    assert score.match.tp == 1 and len(score.false_negatives) == 4
    tally = missed_classes(score, probabilities, threshold=0.85, diameter=16.0)
    assert {k: tally[k] for k in ("merged", "small, border", "small, inside", "full size")} == {
        "merged": 1, "small, border": 1, "small, inside": 1, "full size": 1}  # fmt: skip
    assert (tally["over threshold"], tally["dim"], tally["faint"]) == (2, 1, 1)
    tally.update({"true cells": 5, "missed": 4})
    row = markdown({"toy": tally}, "cmd").splitlines()[-1]
    assert row == "| toy | 5 | 4 | 25% | 25% | 25% | 25% | 50% | 25% | 25% |"
