"""The ablation grid at scale: sweeps compose, multiruns isolate and skip jobs, DDP agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cellcount.cli.report import main as report_main
from tests.conftest import TINY_TRAIN_OVERRIDES, Composer

ROOT = Path(__file__).resolve().parents[1]
PAPER_MODELS = ("unet", "small_unet", "resunet", "c_resunet")
ABLATIONS = ("full", "no_wm", "no_ao")


def _train(*overrides: str, multirun: bool = False) -> subprocess.CompletedProcess[str]:
    flags = ["--multirun"] if multirun else []
    command = [sys.executable, "-m", "cellcount.train", *flags, *TINY_TRAIN_OVERRIDES, *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", PAPER_MODELS)
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_grid_composes(compose_train: Composer, model: str, ablation: str) -> None:
    cfg = compose_train(f"model={model}", f"ablation={ablation}")
    assert (cfg.module.arch, cfg.ablation.name) == (model, ablation)
    assert cfg.logger.wandb.name == f"{model}-{ablation}-{cfg.seed}"
    assert set(cfg.logger.wandb.tags) == {model, ablation}


def test_ablation_grid_preset_lists_the_paper_study(compose_train: Composer) -> None:
    cfg = compose_train("sweep=ablation_grid")
    assert cfg.sweep_name == "ablation_grid"
    # The sweeper params live in the hydra node (not in the job config): check the preset.
    text = (ROOT / "conf" / "sweep" / "ablation_grid.yaml").read_text()
    assert "model: unet,small_unet,resunet,c_resunet" in text
    assert "ablation: full,no_wm,no_ao" in text and "seed: 1,2,3" in text


def test_multirun_isolates_failures_and_skips_finished_jobs(tmp_path: Path) -> None:
    # crop 60 with step 64 would leave gaps: that job fails, the other one must still finish.
    args = ("data.crop_size=64,60", f"paths.output_dir={tmp_path}", "sweep_name=t")
    first = _train(*args, multirun=True)
    assert first.returncode == 0, first.stderr[-3000:]
    folders = {crop: next((tmp_path / "multiruns" / "t").glob(f"*data.crop_size={crop},*"))
               for crop in (60, 64)}  # fmt: skip
    jobs = {crop: json.loads((f / "results.json").read_text()) for crop, f in folders.items()}
    assert jobs[64]["status"] == "finished" and jobs[64]["test"]["n_images"] >= 1
    assert jobs[60]["status"] == "failed" and "crop=60" in jobs[60]["error"]
    finished = folders[64] / "results.json"
    stamp = finished.stat().st_mtime_ns
    second = _train(*args, multirun=True)
    assert second.returncode == 0
    assert finished.stat().st_mtime_ns == stamp  # skipped, not retrained
    assert "already finished; skipping" in second.stdout + second.stderr
    # The report builds Table 1 from the sweep folder and lists the failed job.
    assert report_main([str(tmp_path / "multiruns" / "t")]) == 0
    table = (tmp_path / "multiruns" / "t" / "table1.md").read_text()
    assert "| c_resunet | full |" in table and "crop=60" in table
    assert (tmp_path / "multiruns" / "t" / "f1_vs_threshold.png").stat().st_size > 0


def test_interrupted_job_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    args = (f"paths.output_dir={tmp_path}", "sweep_name=r", "seed=7")
    assert _train(*args, multirun=True).returncode == 0
    (job,) = [p for p in (tmp_path / "multiruns" / "r").iterdir() if p.is_dir()]
    (job / "results.json").unlink()  # as if killed after the last checkpoint was written
    again = _train(*args, multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in again.stdout + again.stderr
    assert json.loads((job / "results.json").read_text())["status"] == "finished"


def test_ddp_on_cpu_gives_single_process_metrics(tiny_run: Path, tmp_path: Path) -> None:
    """Same weights (resumed from the tiny run), one vs two gloo processes: same numbers."""
    common = (f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
              f"data.root={tiny_run.parent / 'outputs' / 'data' / 'synthetic-v2'}")  # fmt: skip
    single = _train(*common, f"paths.output_dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-3000:]
    double = _train(*common, f"paths.output_dir={tmp_path / 'two'}", "trainer=ddp",
                    "trainer.accelerator=cpu", "trainer.devices=2")  # fmt: skip
    assert double.returncode == 0, double.stderr[-3000:]
    assert "distributed_backend=gloo" in double.stdout + double.stderr

    def results(folder: Path) -> dict:
        (run,) = (folder / "runs").iterdir()
        return json.loads((run / "results.json").read_text())

    one, two = results(tmp_path / "one"), results(tmp_path / "two")
    assert one["threshold"] == two["threshold"]
    assert one["val"] == two["val"] and one["test"] == two["test"]
    assert one["val"]["n_images"] >= 1
