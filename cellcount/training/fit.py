"""Fit a segmentation net, choose its threshold, test it: the ``runner`` of the net configs.

A runner takes the composed config and the run folder and returns the fields of
the run record (``results.json``) that are its own; :func:`cellcount.training.train.train`
adds the common ones and writes the record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cellcount.data.datamodule import CellDataModule
from cellcount.evaluation.matching import PAPER_RADIUS
from cellcount.evaluation.scoring import Segmenter, evaluate_images
from cellcount.inference.checkpoints import check_checkpoint
from cellcount.inference.predict import model_info, model_segmenter
from cellcount.runtime.files import write_csv
from cellcount.training.callbacks import ThresholdSweep
from cellcount.training.module import CellSegModule
from cellcount.training.size_fit import SizeModelFit

log = logging.getLogger(__name__)

RESUME_LAST = "last"


def fit_net(cfg: DictConfig, run_dir: Path, git_commit: str | None) -> dict[str, Any] | None:
    """Train ``cfg.module`` on ``cfg.data``; the record fields on rank 0, else None.

    A run folder with ``checkpoints/last.ckpt`` resumes from it, so re-running an
    interrupted command or sweep job continues where it stopped.
    """
    datamodule = CellDataModule(instantiate(cfg.data))
    module = instantiate(cfg.module)
    if cfg.get("init_ckpt"):
        init_weights(module, cfg.init_ckpt)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    try:
        for logger in loggers:
            logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True),
                                    "git_commit": git_commit})  # fmt: skip
        resume = resume_path(cfg.ckpt_path, run_dir)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        fields = _fit_fields(cfg, trainer, module, datamodule, run_dir)
    finally:
        _finish_loggers(loggers)
    return fields if trainer.is_global_zero else None


def _fit_fields(
    cfg: DictConfig, trainer: pl.Trainer, module: CellSegModule, datamodule: CellDataModule,
    run_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    best_path, best_score = _best_checkpoint(trainer)
    sweep = next((c for c in trainer.callbacks if isinstance(c, ThresholdSweep)), None)  # type: ignore[attr-defined]
    sizer = next((c for c in trainer.callbacks if isinstance(c, SizeModelFit)), None)  # type: ignore[attr-defined]
    fields: dict[str, Any] = {
        "best_checkpoint": best_path or "", "val_loss": best_score,
        "epochs": trainer.current_epoch,
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "threshold": float(module.threshold), "count_threshold": module.count_threshold,
        "count_split": module.count_split.as_dict(),
        "val": sweep.result if sweep is not None else None,
        "val_counting": sweep.count_result if sweep is not None else None,
        "size_model": sizer.fit.summary() if sizer is not None and sizer.fit else None,
    }  # fmt: skip
    if cfg.test:
        test_loss = trainer.test(module, datamodule=datamodule, ckpt_path=best_path,
                                 weights_only=True)  # fmt: skip
        fields["test_loss"] = test_loss[0].get("test/loss") if test_loss else None
        fields["threshold"] = threshold = float(module.threshold)
        if trainer.is_global_zero:
            radius, matching = (sweep.radius, sweep.matching) if sweep else (PAPER_RADIUS, "greedy")
            segment = model_segmenter(module, threshold)
            metrics = score_test_images(segment, datamodule, radius, matching, run_dir)
            fields["test"] = {**metrics, **model_info(module, threshold)}
    return fields


def score_test_images(
    segment: Segmenter, datamodule: CellDataModule, radius: float, matching: str, run_dir: Path
) -> dict[str, Any]:
    """Score the full-size test images; write ``test_counts.csv`` and four overlays."""
    metrics, rows = evaluate_images(
        segment, datamodule.full_images("test"), radius, matching,
        run_dir / "test_overlays", max_overlays=4,
    )  # fmt: skip
    write_csv(run_dir / "test_counts.csv", rows)
    return metrics


def _best_checkpoint(trainer: pl.Trainer) -> tuple[str | None, float | None]:
    """Path and monitored score of the best checkpoint, or None (``fast_dev_run`` saves none)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", None) or None
    score = getattr(callback, "best_model_score", None)
    return path, (float(score) if path and score is not None else None)


def init_weights(module: CellSegModule, source: str) -> None:
    """Copy the net weights of a checkpoint or shipped model into ``module`` (safe load).

    Raises:
        ValueError: the checkpoint's architecture differs from the module's.
    """
    from cellcount.inference.checkpoints import load_module
    from cellcount.inference.pretrained import resolve_model

    base = load_module(resolve_model(source), "cpu")
    mine, theirs = module.hparams["arch"], base.hparams["arch"]
    if (mine, module.hparams.get("arch_kwargs")) != (theirs, base.hparams.get("arch_kwargs")):
        raise ValueError(f"init_ckpt={source} is a {theirs} {base.hparams.get('arch_kwargs')}, "
                         f"the model a {mine} {module.hparams.get('arch_kwargs')}; choose the "
                         f"matching model= or another init_ckpt")  # fmt: skip
    module.net.load_state_dict(base.net.state_dict())
    log.info("initialised the net from %s", source)


def resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """Checkpoint to resume from: explicit, ``last``, or the run folder's last.ckpt if any.

    The file is checked with the safe loader first (tensors and plain types only).
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_path == RESUME_LAST or (ckpt_path is None and last.exists()):
        if not last.exists():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist; drop ckpt_path.")
        ckpt_path = str(last)
    if ckpt_path is None:
        return None
    log.info("resuming from %s", ckpt_path)
    return str(check_checkpoint(ckpt_path))


def _finish_loggers(loggers: list[Any]) -> None:
    """Close W&B runs even when training failed, so no run is left dangling."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()
