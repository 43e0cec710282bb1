"""Sweep report: collecting job folders, Table 1 aggregation/formatting, F1 curves, CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellcount.cli.report import main
from cellcount.evaluation.report import (
    METRICS,
    collect_jobs,
    collect_results,
    format_mean_std,
    format_params,
    mean_curves,
    mean_std,
    summarise,
    table_markdown,
    write_report,
)

GRID = np.round(np.linspace(0.5, 0.975, 20), 10)
PARAMS = {"unet": 13_995_201, "c_resunet": 1_740_321}
# (model, ablation) -> per-seed (seed 1, seed 2) test values. Scores other than F1
# derive from F1: accuracy = F1 - 0.1, precision = F1 + 0.05, recall = F1 - 0.05.
F1 = {
    ("unet", "full"): (0.70, 0.74),
    ("unet", "no_wm"): (0.60, 0.64),
    ("c_resunet", "full"): (0.80, 0.82),
    ("c_resunet", "no_wm"): (0.76, 0.78),
}
MAE = {
    ("unet", "full"): (5.0, 6.0),
    ("unet", "no_wm"): (7.0, 7.5),
    ("c_resunet", "full"): (3.0, 3.2),
    ("c_resunet", "no_wm"): (4.0, 4.4),
}
# The best |MPE| (1.0 %) is in unet / no_wm, not in the best-F1 row.
MPE = {
    ("unet", "full"): (-0.10, -0.12),
    ("unet", "no_wm"): (0.01, 0.01),
    ("c_resunet", "full"): (-0.05, -0.06),
    ("c_resunet", "no_wm"): (-0.08, -0.09),
}
THRESHOLD = {
    ("unet", "full"): (0.85, 0.875),
    ("unet", "no_wm"): (0.8, 0.8),
    ("c_resunet", "full"): (0.875, 0.9),
    ("c_resunet", "no_wm"): (0.9, 0.925),
}
FAILED_DIR = "ablation=full,model=small_unet,seed=1"
RUNNING_DIR = "ablation=full,model=resunet,seed=1"


def _scores(f1: float, mae: float, mpe: float) -> dict[str, float]:
    return {
        "accuracy": f1 - 0.1, "precision": f1 + 0.05, "recall": f1 - 0.05, "f1": f1,
        "mae": mae, "medae": mae - 1.0, "mpe": mpe, "tp": 100, "fp": 10, "fn": 20,
        "n_images": 7,
    }  # fmt: skip


def _sweep_f1(model: str, seed: int) -> np.ndarray:
    """Validation F1 curve of a seed: base - 0.2 (t - 0.5) + 0.01 seed."""
    base = 0.8 if model == "c_resunet" else 0.7
    return base - 0.2 * (GRID - 0.5) + 0.01 * seed


def _write_job(root: Path, model: str, ablation: str, seed: int) -> Path:
    from cellcount.evaluation.thresholds import TABLE_COLUMNS

    folder = root / f"ablation={ablation},model={model},seed={seed}"
    (folder / ".hydra").mkdir(parents=True)
    key, i = (model, ablation), seed - 1
    test = _scores(F1[key][i], MAE[key][i], MPE[key][i])
    results = {
        "status": "finished", "model": model, "ablation": ablation, "seed": seed,
        "parameters": PARAMS[model], "threshold": THRESHOLD[key][i], "test": test,
        "val": test,
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    with (folder / "threshold_sweep.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for t, f1 in zip(GRID, _sweep_f1(model, seed), strict=True):
            writer.writerow({**_scores(float(f1), 3.0, -0.05), "threshold": float(t)})
    return folder


@pytest.fixture
def sweep_root(tmp_path: Path) -> Path:
    """2 models x 2 ablations x 2 seeds, one crashed/running job, one failed job."""
    root = tmp_path / "multiruns" / "ablation_grid"
    for model, ablation in F1:
        for seed in (1, 2):
            _write_job(root, model, ablation, seed)
    (root / RUNNING_DIR / ".hydra").mkdir(parents=True)
    (root / FAILED_DIR).mkdir(parents=True)
    failed = {"status": "failed", "error": "RuntimeError: CUDA out of memory"}
    (root / FAILED_DIR / "results.json").write_text(json.dumps(failed))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def _row(rows: list[dict[str, Any]], model: str, ablation: str) -> dict[str, Any]:
    return next(r for r in rows if r["model"] == model and r["ablation"] == ablation)


def test_metric_names_match_the_package() -> None:
    from cellcount.evaluation.metrics import METRIC_NAMES

    assert tuple(METRICS) == tuple(METRIC_NAMES)


def test_collect_jobs_separates_finished_and_missing(sweep_root: Path) -> None:
    finished, missing = collect_jobs(sweep_root)
    assert len(finished) == 8
    assert all(r["status"] == "finished" and r["folder"].is_dir() for r in finished)
    assert len(collect_results(sweep_root)) == 8
    by_folder = {job["folder"].name: job for job in missing}
    assert set(by_folder) == {FAILED_DIR, RUNNING_DIR}
    assert "failed" in by_folder[FAILED_DIR]["reason"]
    assert "CUDA out of memory" in by_folder[FAILED_DIR]["reason"]
    assert "no results.json" in by_folder[RUNNING_DIR]["reason"]
    # Model/ablation/seed come from the folder name when results.json lacks them.
    assert by_folder[FAILED_DIR]["model"] == "small_unet"
    assert by_folder[RUNNING_DIR]["seed"] == "1"


def test_unreadable_and_untested_results_are_missing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text('{"status": "fini')  # half-written
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(
        json.dumps({"status": "finished", "model": "unet", "ablation": "full", "seed": 1})
    )
    finished, missing = collect_jobs(tmp_path)
    assert finished == []
    reasons = {job["folder"].name: job["reason"] for job in missing}
    assert "unreadable" in reasons["a"]
    assert "without test metrics" in reasons["b"]


def test_summarise_means_stds_and_order(sweep_root: Path) -> None:
    rows = summarise(collect_results(sweep_root))
    assert [(r["model"], r["ablation"]) for r in rows] == [
        ("unet", "full"), ("unet", "no_wm"), ("c_resunet", "full"), ("c_resunet", "no_wm"),
    ]  # fmt: skip
    row = _row(rows, "c_resunet", "full")
    assert row["n_seeds"] == 2 and row["seeds"] == [1, 2]
    assert row["parameters"] == PARAMS["c_resunet"]
    # Hand-computed: mean of (a, b) and sample std |a - b| / sqrt(2).
    assert row["f1_mean"] == pytest.approx(0.81)
    assert row["f1_std"] == pytest.approx(0.02 / math.sqrt(2))
    assert row["accuracy_mean"] == pytest.approx(0.71)
    assert row["precision_mean"] == pytest.approx(0.86)
    assert row["recall_mean"] == pytest.approx(0.76)
    assert row["mae_mean"] == pytest.approx(3.1)
    assert row["mae_std"] == pytest.approx(0.2 / math.sqrt(2))
    assert row["medae_mean"] == pytest.approx(2.1)
    assert row["mpe_mean"] == pytest.approx(-0.055)
    assert row["threshold_mean"] == pytest.approx(0.8875)
    assert row["threshold_std"] == pytest.approx(0.025 / math.sqrt(2))
    assert _row(rows, "unet", "no_wm")["mpe_std"] == pytest.approx(0.0)


def test_unknown_names_sort_after_the_papers() -> None:
    def run(model: str, ablation: str) -> dict[str, Any]:
        return {"model": model, "ablation": ablation, "seed": 1, "test": {"f1": 0.5}}

    runs = [run("zeta", "full"), run("alpha", "no_wm"), run("c_resunet", "extra"),
            run("c_resunet", "no_ao"), run("unet", "no_wm"), run("small_unet", "full")]  # fmt: skip
    order = [(r["model"], r["ablation"]) for r in summarise(runs)]
    assert order == [
        ("unet", "no_wm"), ("small_unet", "full"), ("c_resunet", "no_ao"),
        ("c_resunet", "extra"), ("alpha", "no_wm"), ("zeta", "full"),
    ]  # fmt: skip


def test_single_seed_std_is_nan() -> None:
    assert mean_std([0.5]) == (0.5, pytest.approx(math.nan, nan_ok=True))
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    row = summarise([{"model": "unet", "ablation": "full", "seed": 3, "threshold": 0.9,
                      "test": {"f1": 0.8}}])[0]  # fmt: skip
    assert row["n_seeds"] == 1 and row["f1_mean"] == 0.8 and math.isnan(row["f1_std"])
    assert math.isnan(row["mae_mean"]) and row["parameters"] is None
    assert format_mean_std(0.8, math.nan, 3) == "0.800"
    assert format_mean_std(math.nan, math.nan, 3) == "–"


def test_formatting_helpers() -> None:
    assert format_params(13_995_201) == "14.00M"
    assert format_params(887_000) == "887k"
    assert format_params(512) == "512"
    assert format_params(None) == "–"
    assert format_mean_std(3.14159, 0.01, 2) == "3.14 ± 0.01"


def _cells(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_table_markdown_values_and_bold_best(sweep_root: Path) -> None:
    rows = summarise(collect_results(sweep_root))
    table = _cells(table_markdown(rows))
    header, body = table[0], table[2:]
    assert header == ["model", "ablation", "seeds", "params", "threshold", "accuracy",
                      "precision", "recall", "F1", "MAE", "MedAE", "MPE (%)"]  # fmt: skip
    assert [(r[0], r[1]) for r in body] == [(r["model"], r["ablation"]) for r in rows]
    c_full = dict(zip(header, body[2], strict=True))
    assert c_full["F1"] == "**0.810 ± 0.014**"
    assert c_full["MAE"] == "**3.10 ± 0.14**"
    assert c_full["threshold"] == "0.887 ± 0.018"
    assert c_full["params"] == "1.74M" and c_full["seeds"] == "2"
    assert c_full["MPE (%)"] == "-5.5 ± 0.7"  # not bold: |1.0| of unet/no_wm is smaller
    unet_no_wm = dict(zip(header, body[1], strict=True))
    assert unet_no_wm["MPE (%)"] == "**1.0 ± 0.0**"
    assert unet_no_wm["F1"] == "0.620 ± 0.028"
    # Exactly one bold cell per metric column here (no ties).
    for column in range(5, 12):
        assert sum(r[column].startswith("**") for r in body) == 1, header[column]


def test_ties_at_display_precision_are_all_bold() -> None:
    def run(model: str, f1: float) -> dict[str, Any]:
        return {"model": model, "ablation": "full", "seed": 1, "test": {"f1": f1, "mpe": -f1}}

    table = _cells(table_markdown(summarise([run("unet", 0.8001), run("resunet", 0.8004)])))
    assert [r[8] for r in table[2:]] == ["**0.800**", "**0.800**"]
    assert [r[11] for r in table[2:]] == ["**-80.0**", "**-80.0**"]
    assert len(_cells(table_markdown([]))) == 2  # header and rule only


def test_mean_curves(sweep_root: Path) -> None:
    curves = mean_curves(collect_results(sweep_root), "full")
    assert list(curves) == ["unet", "c_resunet"]
    curve = curves["c_resunet"]
    np.testing.assert_allclose(curve["threshold"], GRID)
    expected = (_sweep_f1("c_resunet", 1) + _sweep_f1("c_resunet", 2)) / 2
    np.testing.assert_allclose(curve["mean"], expected)
    np.testing.assert_allclose(curve["std"], 0.01 / math.sqrt(2))
    assert curve["n"] == 2
    assert mean_curves(collect_results(sweep_root), "no_ao") == {}


def test_write_report_files(sweep_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report(sweep_root, out)
    assert paths == {
        "markdown": out / "table1.md",
        "csv": out / "table1.csv",
        "figure": out / "f1_vs_threshold.png",
    }
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    assert "**0.810 ± 0.014**" in markdown
    assert "Missing or failed jobs (2)" in markdown
    assert f"`{FAILED_DIR}`" in markdown and "CUDA out of memory" in markdown
    assert f"`{RUNNING_DIR}`" in markdown
    with paths["csv"].open(newline="") as handle:
        reader = csv.DictReader(handle)
        csv_rows = list(reader)
    expected_columns = ["model", "ablation", "n_seeds", "seeds", "parameters",
                        "threshold_mean", "threshold_std"]  # fmt: skip
    expected_columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    assert reader.fieldnames == expected_columns
    assert [(r["model"], r["ablation"]) for r in csv_rows] == list(F1)
    assert float(csv_rows[2]["f1_mean"]) == pytest.approx(0.81)
    assert csv_rows[2]["seeds"] == "1;2" and csv_rows[2]["parameters"] == "1740321"
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_write_report_defaults_to_root(sweep_root: Path) -> None:
    paths = write_report(sweep_root, ablation="no_ao")  # no curves: a note instead
    assert all(path.parent == sweep_root and path.exists() for path in paths.values())
    # The report's own files do not turn the root into a job folder.
    assert len(collect_results(sweep_root)) == 8


def test_cli_success(sweep_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([str(sweep_root), "--out", str(out), "--ablation", "no_wm"]) == 0
    stdout = capsys.readouterr().out
    assert "| model | ablation | seeds | params | threshold |" in stdout
    assert "**0.810 ± 0.014**" in stdout
    assert f"wrote {out / 'table1.csv'}" in stdout
    assert (out / "f1_vs_threshold.png").exists()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "cellcount.train" in err
    assert main([str(tmp_path / "absent")]) == 2
    failed = tmp_path / "failed" / "ablation=full,model=unet,seed=1"
    failed.mkdir(parents=True)
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    assert main([str(tmp_path / "failed")]) == 1  # report written, nothing finished
    captured = capsys.readouterr()
    assert "boom" in captured.out and "no finished job" in captured.err
    assert (tmp_path / "failed" / "table1.md").exists()


def test_module_entry_point_is_light(sweep_root: Path) -> None:
    code = "import sys, cellcount.cli.report; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "cellcount", "report", str(sweep_root)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| unet | full | 2 | 14.00M |" in result.stdout
