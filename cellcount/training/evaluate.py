"""Evaluate a checkpoint on full-size images: ``python -m cellcount.evaluate ckpt=PATH``.

Writes ``metrics.json`` (micro detection scores and counting errors),
``counts.csv`` (one row per image) and ``overlays/*.png`` into the run folder and
prints a Table-1 style row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cellcount.data.datamodule import CellDataModule
from cellcount.evaluation.scoring import evaluate_images
from cellcount.inference.checkpoints import load_module
from cellcount.inference.predict import (
    model_info,
    model_segmenter,
    resolve_device,
)
from cellcount.inference.pretrained import resolve_model
from cellcount.runtime.errors import exit_on_fixable
from cellcount.runtime.files import atomic_write_text, write_csv
from cellcount.runtime.provenance import write_run_info
from cellcount.training.resolvers import register_resolvers

log = logging.getLogger(__name__)

TABLE_KEYS = ("f1", "precision", "recall", "accuracy", "mae", "medae", "mpe")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on the ``cfg.part`` images of ``cfg.data``; return the metrics."""
    run_dir = Path(cfg.paths.run_dir)
    write_run_info(run_dir, cfg.seed)
    module = load_module(resolve_model(cfg.ckpt), resolve_device(cfg.device))
    threshold = float(module.threshold) if cfg.threshold is None else float(cfg.threshold)
    # Images are normalised as the model was trained, whatever the data config says.
    options = replace(instantiate(cfg.data), normalization=module.normalization.as_dict())
    images = CellDataModule(options).full_images(cfg.part)
    overlay_dir = run_dir / "overlays" if cfg.overlays else None
    metrics, rows = evaluate_images(
        model_segmenter(module, threshold), images, cfg.radius, cfg.matching, overlay_dir,
        cfg.max_overlays,
    )  # fmt: skip
    metrics.update(
        {
            **model_info(module, threshold),
            "checkpoint": str(resolve_model(cfg.ckpt)),
            "part": cfg.part,
        }
    )
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    write_csv(run_dir / "counts.csv", rows)
    return metrics


def table_row(metrics: dict[str, Any]) -> str:
    """Markdown header and row in the layout of the paper's Table 1."""
    header = "| model | " + " | ".join(TABLE_KEYS) + " | threshold | images |"
    values = " | ".join(f"{metrics[k]:.3f}" for k in TABLE_KEYS)
    row = (
        f"| {metrics['arch']} | {values} | {metrics['threshold']:.3f} | {metrics['n_images']:.0f} |"
    )
    return f"{header}\n|{'---|' * (len(TABLE_KEYS) + 3)}\n{row}"


register_resolvers()


@hydra.main(version_base="1.3", config_path="pkg://cellcount.conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the F1 score."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        exit_on_fixable(ValueError("give the model to score: ckpt=PATH.ckpt or ckpt=pretrained"),
                        "evaluate")  # fmt: skip
    try:
        with torch.inference_mode():
            metrics = evaluate(cfg)
    except Exception as err:
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        atomic_write_text(Path(cfg.paths.run_dir) / "results.json", json.dumps(record, indent=1))
        exit_on_fixable(err, "evaluate")
        raise
    print(table_row(metrics))
    print(f"results: {cfg.paths.run_dir}")
    return float(metrics["f1"])


if __name__ == "__main__":
    main()
