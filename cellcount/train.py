"""Train a cell-segmentation net: ``python -m cellcount.train [overrides]``.

Examples::

    python -m cellcount.train                                  # synthetic data, c-ResUnet, CPU
    python -m cellcount.train model=c_resunet ablation=no_wm
    python -m cellcount.train data=fnc data.root=/data/FNC trainer=gpu
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from cellcount.config import register_resolvers
from cellcount.provenance import write_run_info

log = logging.getLogger(__name__)


register_resolvers()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and test) the configured model; return the final metrics and paths."""
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    write_run_info(run_dir, cfg.seed)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, run_dir))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        best_path, best_score = _best_checkpoint(trainer)
        if best_score is not None:
            metrics["val/loss_best"] = best_score
        if cfg.test:
            for result in trainer.test(module, datamodule=datamodule, ckpt_path=best_path):
                metrics.update(result)
    finally:
        _finish_loggers(loggers)
    return {"metrics": metrics, "run_dir": str(run_dir), "best_checkpoint": best_path or ""}


def _best_checkpoint(trainer: pl.Trainer) -> tuple[str | None, float | None]:
    """Path and monitored score of the best checkpoint, or None (``fast_dev_run`` saves none)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", None) or None
    score = getattr(callback, "best_model_score", None)
    return path, (float(score) if path and score is not None else None)


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path == "last":
        return str(run_dir / "checkpoints" / "last.ckpt")
    return cfg.ckpt_path


def _finish_loggers(loggers: list[Any]) -> None:
    """Close W&B runs even when training failed, so no run is left dangling."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation loss (for sweepers)."""
    result = train(cfg)
    metrics = result["metrics"]
    val_loss = metrics.get("val/loss_best", metrics.get("val/loss"))
    print(f"validation loss: {val_loss:.4f}" if val_loss is not None else "validation loss: n/a")
    if result["best_checkpoint"]:
        print(f"best checkpoint: {result['best_checkpoint']}")
    print(f"run folder: {result['run_dir']}")
    return val_loss


if __name__ == "__main__":
    main()
