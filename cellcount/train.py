"""Train a cell-segmentation net: ``python -m cellcount.train [overrides]``.

Examples::

    python -m cellcount.train                                  # synthetic data, c-ResUnet, CPU
    python -m cellcount.train model=c_resunet ablation=no_wm
    python -m cellcount.train data=fnc data.root=/data/FNC trainer=gpu
    python -m cellcount.train model=classical data=dsb data.root=DSB  # baseline, no training
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cellcount.allocator import tune_allocator
from cellcount.callbacks import ThresholdSweep
from cellcount.classical import ClassicalSegmenter
from cellcount.config import register_resolvers
from cellcount.evaluate import Segmenter, evaluate_images, model_info, model_segmenter
from cellcount.files import atomic_write_text, write_csv
from cellcount.module import CellSegModule
from cellcount.provenance import write_run_info

log = logging.getLogger(__name__)


register_resolvers()


RESULTS = "results.json"
CLASSICAL = "classical"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, choose the threshold, test; write and return ``results.json``'s content.

    A run folder whose ``results.json`` says "finished" is skipped (``skip_finished``);
    one with ``checkpoints/last.ckpt`` resumes from it, so re-running an
    interrupted command or sweep continues where it stopped.
    """
    run_dir = Path(cfg.paths.run_dir)
    previous = read_results(run_dir)
    if cfg.skip_finished and previous.get("status") == "finished":
        log.info("%s already finished; skipping (skip_finished=false to redo it)", run_dir)
        return previous
    pl.seed_everything(cfg.seed, workers=True)
    tune_allocator()  # reuse freed activation buffers: faster CPU steps, same results
    info = write_run_info(run_dir, cfg.seed)
    if cfg.model.arch == CLASSICAL:
        results = _classical_results(cfg, run_dir)
        atomic_write_text(run_dir / RESULTS, json.dumps(results, indent=1))
        return results
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    try:
        for logger in loggers:
            logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True),
                                    "git_commit": info["git_commit"]})  # fmt: skip
        trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, run_dir))
        results = _results(cfg, trainer, module, datamodule, run_dir)
    finally:
        _finish_loggers(loggers)
    if trainer.is_global_zero:
        atomic_write_text(run_dir / RESULTS, json.dumps(results, indent=1))
    return results


def read_results(run_dir: Path) -> dict[str, Any]:
    """``results.json`` of a run folder, or {} when there is none (or it is unreadable)."""
    try:
        return dict(json.loads((run_dir / RESULTS).read_text()))
    except (OSError, ValueError):
        return {}


def _results(
    cfg: DictConfig, trainer: pl.Trainer, module: CellSegModule, datamodule: Any, run_dir: Path
) -> dict[str, Any]:
    best_path, best_score = _best_checkpoint(trainer)
    sweep = next((c for c in trainer.callbacks if isinstance(c, ThresholdSweep)), None)  # type: ignore[attr-defined]
    results: dict[str, Any] = {
        "status": "finished", "model": cfg.model.arch, "ablation": cfg.ablation.name,
        "seed": cfg.seed, "run_dir": str(run_dir), "best_checkpoint": best_path or "",
        "val_loss": best_score, "epochs": trainer.current_epoch,
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "threshold": float(module.threshold),
        "val": sweep.result if sweep is not None else None,
    }  # fmt: skip
    if cfg.test:
        test_loss = trainer.test(module, datamodule=datamodule, ckpt_path=best_path)
        results["test_loss"] = test_loss[0].get("test/loss") if test_loss else None
        results["threshold"] = float(module.threshold)
        if trainer.is_global_zero:
            results["test"] = _test_full_images(module, datamodule, sweep, run_dir)
    return results


def _test_full_images(
    module: CellSegModule, datamodule: Any, sweep: ThresholdSweep | None, run_dir: Path
) -> dict[str, Any]:
    """Count and score the full-size test images with the chosen threshold."""
    radius, matching = (sweep.radius, sweep.matching) if sweep else (50.0, "greedy")
    threshold = float(module.threshold)
    segment = model_segmenter(module, threshold)
    metrics = _score_test_images(segment, datamodule, radius, matching, run_dir)
    return {**metrics, **model_info(module, threshold)}


def _score_test_images(
    segment: Segmenter, datamodule: Any, radius: float, matching: str, run_dir: Path
) -> dict[str, Any]:
    """Score the full-size test images; write ``test_counts.csv`` and four overlays."""
    metrics, rows = evaluate_images(
        segment, datamodule.full_images("test"), radius, matching,
        run_dir / "test_overlays", max_overlays=4,
    )  # fmt: skip
    write_csv(run_dir / "test_counts.csv", rows)
    return metrics


def _classical_results(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """``model=classical``: score the untrained baseline on the val and test images."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # synthetic data and split.json, as for training
    segment = ClassicalSegmenter(cfg.data.cell_diameter, **cfg.model.arch_kwargs)
    radius, matching = cfg.callbacks.threshold_sweep.radius, cfg.callbacks.threshold_sweep.matching
    val, _ = evaluate_images(segment, datamodule.full_images("val"), radius, matching)
    results: dict[str, Any] = {
        "status": "finished", "model": CLASSICAL, "ablation": "none", "seed": cfg.seed,
        "run_dir": str(run_dir), "best_checkpoint": "", "val_loss": None, "epochs": 0,
        "parameters": 0, "threshold": None, "method": segment.method, "val": val,
    }  # fmt: skip
    if cfg.test:
        results["test"] = _score_test_images(segment, datamodule, radius, matching, run_dir)
    return results


def _best_checkpoint(trainer: pl.Trainer) -> tuple[str | None, float | None]:
    """Path and monitored score of the best checkpoint, or None (``fast_dev_run`` saves none)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", None) or None
    score = getattr(callback, "best_model_score", None)
    return path, (float(score) if path and score is not None else None)


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """Checkpoint to resume from: explicit, ``last``, or the run folder's last.ckpt if any."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path == "last" or (cfg.ckpt_path is None and last.exists()):
        if not last.exists():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist; drop ckpt_path.")
        log.info("resuming from %s", last)
        return str(last)
    return cfg.ckpt_path


def _finish_loggers(loggers: list[Any]) -> None:
    """Close W&B runs even when training failed, so no run is left dangling."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not launched by Hydra
        return False


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation loss (for sweepers).

    In a multirun a failing job is recorded as failed in its ``results.json`` and
    the sweep goes on with the next job.
    """
    try:
        results = train(cfg)
    except Exception as err:
        if not _in_multirun():
            raise
        log.exception("job %s failed", cfg.paths.run_dir)
        failed = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        atomic_write_text(Path(cfg.paths.run_dir) / RESULTS, json.dumps(failed, indent=1))
        return None
    _print_summary(results)
    return results.get("val_loss")


def _print_summary(results: dict[str, Any]) -> None:
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
    if results.get("best_checkpoint"):
        print(f"best checkpoint: {results['best_checkpoint']}")
    print(f"run folder: {results['run_dir']}")


if __name__ == "__main__":
    main()
