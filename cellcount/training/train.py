"""Train a cell-segmentation net: ``python -m cellcount.train [overrides]`` (or ``cellcount
train``).

Examples::

    python -m cellcount.train                                  # synthetic data, c-ResUnet, CPU
    python -m cellcount.train model=c_resunet ablation=no_wm
    python -m cellcount.train data=fnc data.root=/data/FNC trainer=gpu
    python -m cellcount.train model=classical data=dsb data.root=DSB  # baseline, no training

What runs is the config's ``runner`` (:func:`cellcount.training.fit.fit_net` for the
nets, :func:`cellcount.training.baseline.score_baseline` for ``model=classical``);
this module adds seeding, provenance, skip/resume and the run record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig

from cellcount.runtime.allocator import tune_allocator
from cellcount.runtime.errors import exit_on_fixable
from cellcount.runtime.files import clean_stale_temporaries
from cellcount.runtime.provenance import write_run_info
from cellcount.runtime.results import read_results, write_results
from cellcount.training.resolvers import register_resolvers

log = logging.getLogger(__name__)

register_resolvers()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.runner`` in the run folder; write and return ``results.json``'s content.

    A run folder whose ``results.json`` says "finished" is skipped (``skip_finished``).
    """
    run_dir = Path(cfg.paths.run_dir)
    previous = read_results(run_dir)
    if cfg.skip_finished and previous.get("status") == "finished":
        log.info("%s already finished; skipping (skip_finished=false to redo it)", run_dir)
        return previous
    clean_stale_temporaries(run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    tune_allocator()  # reuse freed activation buffers: faster CPU steps, same results
    info = write_run_info(run_dir, cfg.seed)
    fields = get_method(cfg.runner)(cfg, run_dir, info["git_commit"])
    record = run_record(cfg, "finished", **(fields or {}))
    return write_results(run_dir, record) if fields is not None else record


def run_record(cfg: DictConfig, status: str, **fields: Any) -> dict[str, Any]:
    """The run record: status, model, ablation, seed and run folder, then ``fields``."""
    common = {"status": status, "model": cfg.model.arch, "ablation": cfg.ablation.name,
              "seed": cfg.seed, "run_dir": str(cfg.paths.run_dir)}  # fmt: skip
    return {**common, **fields}


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not launched by Hydra
        return False


@hydra.main(version_base="1.3", config_path="pkg://cellcount.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation loss (for sweepers).

    In a multirun a failing job is recorded as failed in its ``results.json`` and
    the sweep goes on with the next job.
    """
    try:
        results = train(cfg)
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        write_results(cfg.paths.run_dir, run_record(cfg, "failed", error=error))
        if not _in_multirun():
            exit_on_fixable(err, "train")
            raise
        log.exception("job %s failed", cfg.paths.run_dir)
        return None
    print_summary(results)
    return results.get("val_loss")


def print_summary(results: dict[str, Any]) -> None:
    """Validation loss, val/test F1 and MAE at the chosen threshold (and a warning when it
    finds no validation cell at all), checkpoint, run folder."""
    val_loss = results.get("val_loss")
    print(f"validation loss: {val_loss:.4f}" if val_loss is not None else "validation loss: n/a")
    for part in ("val", "test"):
        scores = results.get(part)
        if scores:
            threshold = results["threshold"]
            chosen = (
                f"threshold {threshold:.3f}" if threshold is not None else "automatic threshold"
            )
            print(f"{part}: F1 {scores['f1']:.3f}, MAE {scores['mae']:.2f} ({chosen})")
            if part == "val" and scores.get("tp", 1) + scores.get("fp", 1) == 0:
                print("warning: at this threshold the model finds no cells on the "
                      "validation images; it is undertrained: train longer "
                      "(trainer.max_epochs=...)")  # fmt: skip
    if results.get("best_checkpoint"):
        print(f"best checkpoint: {results['best_checkpoint']}")
    print(f"run folder: {results['run_dir']}")


if __name__ == "__main__":
    main()
