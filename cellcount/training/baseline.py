"""Score the classical baseline on the val and test images: the ``runner`` of ``model=classical``.

Nothing is trained; the record has the same fields as a net's, so Table 1 and
``cellcount report`` treat the baseline as one more row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from cellcount.data.datamodule import CellDataModule
from cellcount.evaluation.classical import ClassicalSegmenter
from cellcount.evaluation.scoring import evaluate_images
from cellcount.training.fit import score_test_images


def score_baseline(cfg: DictConfig, run_dir: Path, git_commit: str | None) -> dict[str, Any]:
    """Record fields of the baseline: val (and test) scores at its automatic thresholds."""
    datamodule = CellDataModule(instantiate(cfg.data))
    datamodule.prepare_data()  # synthetic data and split.json, as for training
    segment = ClassicalSegmenter(cfg.data.cell_diameter, **cfg.model.arch_kwargs)
    sweep = cfg.callbacks.threshold_sweep
    val, _ = evaluate_images(segment, datamodule.full_images("val"), sweep.radius, sweep.matching)
    fields: dict[str, Any] = {
        "ablation": "none", "best_checkpoint": "", "val_loss": None, "epochs": 0,
        "parameters": 0, "threshold": None, "method": segment.method, "val": val,
    }  # fmt: skip
    if cfg.test:
        fields["test"] = score_test_images(segment, datamodule, sweep.radius, sweep.matching,
                                           run_dir)  # fmt: skip
    return fields
