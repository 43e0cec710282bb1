"""The real Hydra entry point trains end to end (fast_dev_run) and writes a usable run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cellcount.training.module import CellSegModule

ROOT = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "cellcount.train",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "data.synthetic.n_images=6",
        "data.synthetic.height=128",
        "data.synthetic.width=128",
        "data.crop_size=64",
        "data.crop_step=64",
        "data.num_workers=0",
        "module.arch_kwargs={n_features_start: 4}",
        *overrides,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _run_dir(stdout: str) -> Path:
    line = next(x for x in stdout.splitlines() if x.startswith("run folder:"))
    return Path(line.split(":", 1)[1].strip())


def test_fast_dev_run_through_hydra_entry_point(tmp_path: Path) -> None:
    result = _train(tmp_path, "trainer=debug", "model=c_resunet", "ablation=no_wm")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation loss:" in result.stdout
    run_dir = _run_dir(result.stdout)
    assert run_dir.is_relative_to(tmp_path / "outputs" / "runs")
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 6
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seed"] == 12345
    assert torch.__version__.startswith(info["versions"]["torch"])
    assert info["git_commit"]
    assert (run_dir / ".hydra" / "config.yaml").exists()


def test_short_training_saves_self_sufficient_checkpoint(tmp_path: Path) -> None:
    result = _train(tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _run_dir(result.stdout)
    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "csv" / "metrics.csv").read_text().count("val/loss") == 1
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B should log an offline run"
    # Loadable without the Hydra run folder: architecture and threshold travel in the file.
    module = CellSegModule.load_from_checkpoint(best, map_location="cpu")
    assert module.hparams.arch == "c_resunet"
    assert module.hparams.arch_kwargs == {"n_features_start": 4}
    # The threshold sweep on full validation images stored its choice in the best checkpoint.
    assert 0.5 - 1e-6 <= float(module.threshold) <= 0.975 + 1e-6
    assert float(module.threshold) == pytest.approx(module.hparams.threshold)
    assert (run_dir / "threshold_sweep.png").stat().st_size > 0
    assert "f1" in (run_dir / "threshold_sweep.csv").read_text().splitlines()[0]
    with torch.no_grad():
        assert module(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    # ... and the size model, fitted on the run's split after training, travels with it.
    assert module.size_model is not None
    record = json.loads((run_dir / "results.json").read_text())
    assert record["size_model"]["train_views"] >= 3 and record["size_model"]["val_views"] >= 3


def test_a_threshold_that_finds_no_validation_cell_is_called_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cellcount.training.train import print_summary

    found = {"f1": 0.8, "mae": 1.0, "tp": 12.0, "fp": 3.0}
    results = {"val_loss": 0.05, "threshold": 0.95, "val": found, "run_dir": "r"}
    print_summary(results)
    assert "undertrained" not in capsys.readouterr().out
    print_summary({**results, "threshold": 0.975, "val": {**found, "tp": 0.0, "fp": 0.0}})
    out = capsys.readouterr().out
    assert "val: F1 0.800, MAE 1.00 (threshold 0.975)" in out
    assert "finds no cells on the validation images" in out and "trainer.max_epochs" in out
