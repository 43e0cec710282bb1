"""Evaluate a checkpoint on full-size images: ``python -m cellcount.evaluate ckpt=PATH``.

Writes ``metrics.json`` (micro detection scores and counting errors),
``counts.csv`` (one row per image) and ``overlays/*.png`` into the run folder and
prints a Table-1 style row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from cellcount.config import register_resolvers
from cellcount.files import atomic_write_text, write_csv
from cellcount.inference import load_module, predict_probabilities, resolve_device
from cellcount.metrics import summarize
from cellcount.module import CellSegModule
from cellcount.overlays import render_overlay, save_png
from cellcount.postprocess import postprocess
from cellcount.provenance import write_run_info
from cellcount.scoring import ImageScore, score_image

log = logging.getLogger(__name__)

TABLE_KEYS = ("f1", "precision", "recall", "accuracy", "mae", "medae", "mpe")


def count_row(name: str, score: ImageScore) -> dict[str, Any]:
    """One ``counts.csv`` row."""
    match = score.match
    return {
        "image": name, "true_count": match.n_true, "predicted_count": match.n_pred,
        "tp": match.tp, "fp": match.fp, "fn": match.fn,
    }  # fmt: skip


Segmenter = Callable[[np.ndarray], np.ndarray]
"""RGB float image (H, W, 3) in [0, 1] -> int32 cell labels (H, W), 0 background."""


def model_segmenter(module: CellSegModule, threshold: float) -> Segmenter:
    """A trained model with its post-processing, as a :data:`Segmenter`."""
    params = module.postprocess_params()

    def segment(image: np.ndarray) -> np.ndarray:
        return postprocess(predict_probabilities(module, image), threshold, params)

    return segment


def model_info(module: CellSegModule, threshold: float) -> dict[str, Any]:
    """Model columns of a metrics record: threshold, architecture, trainable parameters."""
    return {
        "threshold": threshold,
        "arch": module.hparams["arch"],
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }


def evaluate_images(
    segment: Segmenter,
    images: list[tuple[str, np.ndarray, np.ndarray]],
    radius: float = 50.0,
    matching: str = "greedy",
    overlay_dir: Path | None = None,
    max_overlays: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Count and score full-size images.

    Args:
        segment: image -> labels (:func:`model_segmenter`, or the classical baseline).
        images: ``(name, RGB float image, truth)`` triples; truth is a bool mask
            or int instance labels.
        radius, matching: matching options (paper: 50 px, greedy).
        overlay_dir: where to save overlay PNGs (None: none).
        max_overlays: at most this many overlays (None: all).

    Returns:
        Micro metrics (see :func:`cellcount.metrics.summarize`) and one
        ``counts.csv`` row per image.
    """
    rows, scores = [], []
    for index, (name, image, truth) in enumerate(tqdm(images, desc="evaluate", unit="image")):
        labels = segment(image)
        score = score_image(labels, truth, radius, matching)  # type: ignore[arg-type]
        scores.append(score)
        rows.append(count_row(name, score))
        if overlay_dir is not None and (max_overlays is None or index < max_overlays):
            picture = render_overlay(image, labels, score.true_labels,
                                     score.false_positives, score.false_negatives)  # fmt: skip
            save_png(picture, overlay_dir / f"{name}.png")
    return summarize(s.match for s in scores), rows


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on the ``cfg.part`` images of ``cfg.data``; return the metrics."""
    run_dir = Path(cfg.paths.run_dir)
    write_run_info(run_dir, cfg.seed)
    module = load_module(cfg.ckpt, resolve_device(cfg.device))
    threshold = float(module.threshold) if cfg.threshold is None else float(cfg.threshold)
    images = instantiate(cfg.data).full_images(cfg.part)
    overlay_dir = run_dir / "overlays" if cfg.overlays else None
    metrics, rows = evaluate_images(
        model_segmenter(module, threshold), images, cfg.radius, cfg.matching, overlay_dir,
        cfg.max_overlays,
    )  # fmt: skip
    metrics.update(
        {
            **model_info(module, threshold),
            "checkpoint": str(Path(cfg.ckpt).resolve()),
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the F1 score."""
    with torch.inference_mode():
        metrics = evaluate(cfg)
    print(table_row(metrics))
    print(f"results: {cfg.paths.run_dir}")
    return float(metrics["f1"])


if __name__ == "__main__":
    main()
