"""Threshold grid, knee selection, sweep and curve output (docs/method.md#threshold-selection)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from types import SimpleNamespace

import kneed
import numpy as np
import pytest

from cellcount.evaluation.postprocess import PostprocessParams
from cellcount.evaluation.thresholds import (
    TABLE_COLUMNS,
    kneedle_070,
    save_curve,
    select_threshold,
    sweep,
    sweep_image,
    threshold_grid,
)


def test_default_grid_is_the_papers() -> None:
    grid = threshold_grid()
    assert grid.shape == (20,)
    assert grid[0] == 0.5 and grid[-1] == 0.975 and grid[15] == 0.875
    np.testing.assert_allclose(grid, np.arange(0.5, 0.98, 0.025), atol=1e-12)
    np.testing.assert_array_equal(np.diff(grid).round(10), 0.025)
    assert threshold_grid(0.2, 0.85, 0.05).size == 14
    with pytest.raises(ValueError):
        threshold_grid(0.5, 0.4, 0.1)


# The kneedle rule for (concave, decreasing) on x = 0..4 (x_norm step 0.25) and
# y already in [0, 1]:  y_rev = [0, .6, .94, .98, 1];  d = y_rev - x_norm =
# [0, .35, .44, .23, 0].  The only local maximum is d[2] = .44, its threshold
# .44 - 1.0 * .25 = .19; d[3] = .23 stays above it, d[4] = 0 falls below, so
# the knee is x[N - 1 - 2] = x[2] = 2: the last point before F1 drops steeply.
KNEE_X = np.arange(5.0)
KNEE_Y = np.array([1.0, 0.98, 0.94, 0.6, 0.0])


@pytest.mark.parametrize("method", ["kneedle", "kneedle070"])
def test_kneedle_finds_the_hand_computed_knee(method: str) -> None:
    assert select_threshold(KNEE_X, KNEE_Y, method) == 2.0  # type: ignore[arg-type]
    # Order of the inputs does not matter.
    assert select_threshold(KNEE_X[::-1], KNEE_Y[::-1], method) == 2.0  # type: ignore[arg-type]


def test_kneedle_on_a_paper_like_curve_picks_the_plateau_end() -> None:
    grid = threshold_grid()
    f1 = np.minimum(0.9, 0.6 + 1.5 * (grid - 0.5))  # rises, then flat from 0.7
    f1[grid > 0.9] -= 2.0 * (grid[grid > 0.9] - 0.9)  # falls at the top
    for method in ("kneedle", "kneedle070"):
        knee = select_threshold(grid, f1, method)
        assert 0.7 <= knee <= 0.9


# A difference curve with a local minimum followed by negative values:
# d = [0, .1, -.02, -.01, -.05, -.03, 0] on 7 points. kneed 0.7.0 resets the
# threshold to 0 at the minimum (index 2) and declares the knee at d[3] < 0, i.e.
# x[7 - 1 - 1] = x[5]; kneed 0.9 stops detecting after a minimum until the next
# maximum (index 3, whose threshold is never crossed), so it finds none.
TWO_BUMPS_X = np.linspace(0.5, 0.8, 7)
TWO_BUMPS_Y = (np.array([0, 0.1, -0.02, -0.01, -0.05, -0.03, 0]) + np.linspace(0, 1, 7))[::-1]


def test_kneedle_070_rule_on_a_two_bump_curve() -> None:
    assert kneedle_070(TWO_BUMPS_X, TWO_BUMPS_Y) == pytest.approx(0.75)


@pytest.mark.skipif(not kneed.__version__.startswith("0.9"), reason="kneed 0.9 behaviour")
def test_installed_kneed_differs_from_070_after_a_minimum(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cellcount.evaluation.thresholds"):
        chosen = select_threshold(TWO_BUMPS_X, TWO_BUMPS_Y, "kneedle")
    assert chosen == 0.5  # no knee -> argmax fallback
    assert "no knee" in caplog.text


def test_argmax_ties_go_to_the_highest_threshold() -> None:
    thresholds = [0.5, 0.6, 0.7, 0.8]
    assert select_threshold(thresholds, [0.5, 0.8, 0.8, 0.7], "argmax") == 0.7
    assert select_threshold(thresholds[::-1], [0.7, 0.8, 0.8, 0.5], "argmax") == 0.7


@pytest.mark.parametrize("method", ["kneedle", "kneedle070"])
def test_flat_curve_falls_back_to_argmax(method: str, caplog: pytest.LogCaptureFixture) -> None:
    grid = threshold_grid()
    with caplog.at_level(logging.WARNING, logger="cellcount.evaluation.thresholds"):
        chosen = select_threshold(grid, np.full(grid.size, 0.8), method)  # type: ignore[arg-type]
    assert chosen == 0.975
    assert "no knee" in caplog.text


def test_select_threshold_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        select_threshold([0.5, 0.6], [0.5], "argmax")
    with pytest.raises(ValueError):
        select_threshold([0.5, 0.6], [0.5, float("nan")], "argmax")
    with pytest.raises(ValueError):
        select_threshold([0.5, 0.6], [0.5, 0.6], "best")  # type: ignore[arg-type]


def _toy_image(shape: tuple[int, int] = (160, 200)) -> tuple[np.ndarray, np.ndarray]:
    """Three cells at p = 0.9 (the truth) and one spurious blob at p = 0.6."""
    rows, cols = np.indices(shape)
    prob = np.zeros(shape, dtype=np.float32)
    truth = np.zeros(shape, dtype=bool)
    for r, c in [(40, 40), (40, 150), (120, 90)]:
        disc = np.hypot(rows - r, cols - c) <= 15
        prob[disc], truth[disc] = 0.9, True
    prob[np.hypot(rows - 120, cols - 170) <= 15] = 0.6
    return prob, truth


def test_sweep_on_toy_images() -> None:
    prob, truth = _toy_image()
    grid = threshold_grid()
    table = sweep([prob, prob], [truth, truth], grid, progress=True)
    assert [row["threshold"] for row in table] == grid.tolist()
    assert all(list(row) == list(TABLE_COLUMNS) for row in table)
    by_t = {row["threshold"]: row for row in table}
    assert by_t[0.5]["fp"] == 2 and by_t[0.5]["f1"] < 1  # the spurious blob, twice
    for t in (0.6, 0.75, 0.875):
        row = by_t[t]
        assert (row["tp"], row["fp"], row["fn"], row["n_images"]) == (6, 0, 0, 2)
        assert row["f1"] == pytest.approx(1.0) and row["mae"] == 0.0
    assert by_t[0.9]["tp"] == 0 and by_t[0.9]["mae"] == 3.0  # 0.9 > 0.9 is false
    chosen = select_threshold(grid, [row["f1"] for row in table], "argmax")
    assert chosen == 0.875


def test_sweep_image_accepts_label_images_and_options() -> None:
    from cellcount.evaluation.matching import label_mask

    prob, truth = _toy_image()
    params = PostprocessParams.from_cell_diameter(30)
    from_mask = sweep_image(prob, truth, [0.7], params, radius=20, method="hungarian")
    from_labels = sweep_image(prob, label_mask(truth), [0.7], params, 20, "hungarian", "centroid")
    assert from_mask[0].tp == from_labels[0].tp == 3


def test_save_curve_writes_png_and_csv(tmp_path: Path) -> None:
    prob, truth = _toy_image()
    grid = threshold_grid(0.5, 0.95, 0.15)
    table = sweep([prob], [truth], grid)
    png, csv_path = tmp_path / "out" / "f1.png", tmp_path / "out" / "f1.csv"
    save_curve(table, png, csv_path, chosen=0.65)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(TABLE_COLUMNS)
    assert [float(r["threshold"]) for r in rows] == grid.tolist()
    assert float(rows[1]["f1"]) == pytest.approx(table[1]["f1"])
    assert sorted(p.name for p in png.parent.iterdir()) == ["f1.csv", "f1.png"]
    with pytest.raises(ValueError):
        save_curve([], png, csv_path)


def test_counting_choice_is_the_best_f1_among_unbiased_rows_of_every_profile() -> None:
    from cellcount.evaluation.postprocess import PAPER_SPLIT, SplitProfile
    from cellcount.evaluation.thresholds import select_counting

    def rows(*values: tuple[float, float, float]) -> list[dict[str, float]]:
        return [{"threshold": t, "f1": f1, "mpe": mpe} for t, f1, mpe in values]

    paper = rows((0.3, 0.80, 0.00), (0.5, 0.89, 0.01), (0.6, 0.90, -0.02), (0.7, 0.91, -0.08))
    assert select_counting({PAPER_SPLIT: paper}) == (PAPER_SPLIT, 0.6)
    assert select_counting({PAPER_SPLIT: paper}, mpe_tolerance=0.1) == (PAPER_SPLIT, 0.7)
    assert select_counting({PAPER_SPLIT: paper}, mpe_tolerance=0.0) == (PAPER_SPLIT, 0.3)
    # A finer profile with a better unbiased row wins; a biased row never does.
    fine = SplitProfile(0.6, 0.5, True)
    finer = rows((0.5, 0.93, 0.015), (0.7, 0.95, -0.06))
    assert select_counting({PAPER_SPLIT: paper, fine: finer}) == (fine, 0.5)
    # No row unbiased enough: the least biased one.
    biased = rows((0.5, 0.9, 0.2), (0.7, 0.8, -0.1))
    assert select_counting({PAPER_SPLIT: biased}) == (PAPER_SPLIT, 0.7)
    # Exact ties keep the earlier (the paper's) profile.
    assert select_counting({PAPER_SPLIT: paper, fine: paper}) == (PAPER_SPLIT, 0.6)
    with pytest.raises(ValueError, match="empty"):
        select_counting({PAPER_SPLIT: []})


def test_trained_checkpoint_carries_both_thresholds_and_counting_uses_the_unbiased_one(
    tiny_run: Path,
) -> None:
    from cellcount.counter import Counter
    from cellcount.evaluation.postprocess import COUNTING_SPLITS, SplitProfile
    from cellcount.inference.checkpoints import load_module, read_checkpoint

    best = tiny_run / "checkpoints" / "best.ckpt"
    hparams = read_checkpoint(best)["hyper_parameters"]
    assert 0.3 <= hparams["count_threshold"] <= 0.975 and 0.5 <= hparams["threshold"] <= 0.975
    assert hparams["normalization"] == {"method": "percentile", "low": 1.0, "high": 99.8}
    module = load_module(best)
    assert Counter(module).threshold == pytest.approx(hparams["count_threshold"])
    assert Counter(module).split == SplitProfile.from_dict(hparams["count_split"])
    assert SplitProfile.from_dict(hparams["count_split"]) in COUNTING_SPLITS
    assert Counter(module, threshold=0.9).threshold == 0.9
    sweep = (tiny_run / "threshold_sweep.csv").read_text().splitlines()
    assert sweep[1].startswith("0.3")  # the grid reaches down to count_start
    rows = (tiny_run / "counting_sweep.csv").read_text().splitlines()
    assert rows[0].startswith("window,min_area,keep_unmarked,threshold,f1")
    assert len(rows) - 1 == len(COUNTING_SPLITS) * (len(sweep) - 1)


def test_sweep_on_given_images_reproduces_the_trained_choice(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``make_pretrained --recalibrate`` relies on: sweeping a trained model on its
    validation images again, with a progress bar, makes the training run's choices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from cellcount.data.datamodule import CellDataModule
    from cellcount.evaluation.postprocess import COUNTING_SPLITS, SplitProfile
    from cellcount.inference.checkpoints import load_module, read_checkpoint
    from tests.conftest import CONF_DIR, TINY_TRAIN_OVERRIDES

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tiny_run.parent / 'outputs'}", f"paths.run_dir={tiny_run}",
            *TINY_TRAIN_OVERRIDES,
        ])  # fmt: skip
    datamodule = CellDataModule(instantiate(cfg.data))
    datamodule.prepare_data()
    best = tiny_run / "checkpoints" / "best.ckpt"
    hparams = read_checkpoint(best)["hyper_parameters"]
    sweep = instantiate(cfg.callbacks.threshold_sweep)
    images = datamodule.full_images("val")
    _, chosen = sweep.sweep(load_module(best), images, COUNTING_SPLITS, progress=True)
    assert chosen == pytest.approx(hparams["threshold"])
    assert sweep.count_threshold == pytest.approx(hparams["count_threshold"])
    assert sweep.count_split == SplitProfile.from_dict(hparams["count_split"])
    assert sweep.count_result["threshold"] == sweep.count_threshold
    assert "threshold sweep" in capsys.readouterr().err
    # In training the bar follows the trainer's own progress bar.
    sweep._images = images
    quiet = SimpleNamespace(is_global_zero=True, progress_bar_callback=None)
    sweep.run(quiet, load_module(best), 2)  # type: ignore[arg-type]
    assert "threshold sweep" not in capsys.readouterr().err
    shown = SimpleNamespace(is_global_zero=True, progress_bar_callback=object())
    sweep.run(shown, load_module(best), 2)  # type: ignore[arg-type]
    assert "threshold sweep" in capsys.readouterr().err
