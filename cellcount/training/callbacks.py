"""Lightning callbacks: threshold selection on full-size validation images.

The work is delegated: :mod:`cellcount.inference.predict` predicts,
:mod:`cellcount.evaluation.thresholds`
sweeps and selects, :mod:`cellcount.evaluation.overlays` draws. Under DDP every process
predicts a shard of the images and the per-image matches are gathered, so the
result equals a single-process run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.loggers import WandbLogger

from cellcount.evaluation.matching import PAPER_RADIUS, ImageMatch
from cellcount.evaluation.overlays import render_overlay
from cellcount.evaluation.postprocess import (
    COUNTING_SPLITS,
    PAPER_SPLIT,
    PostprocessParams,
    SplitProfile,
    postprocess,
)
from cellcount.evaluation.scoring import score_image
from cellcount.evaluation.thresholds import (
    save_curve,
    select_counting,
    select_threshold,
    sweep_image,
    sweep_table,
    threshold_grid,
)
from cellcount.inference.checkpoints import read_checkpoint, save_checkpoint
from cellcount.inference.predict import predict_probabilities
from cellcount.runtime.files import write_csv
from cellcount.training.module import CellSegModule

log = logging.getLogger(__name__)

Images = list[tuple[str, np.ndarray, np.ndarray]]


class ThresholdSweep(pl.Callback):
    """Choose the detection threshold on full-size validation images
    (docs/method.md#threshold-selection).

    Every ``every_n_epochs`` epochs, and once more on the best checkpoint when
    training ends, each validation image is predicted whole, post-processed at
    every threshold of the grid and matched to its ground truth. The micro F1
    curve picks the threshold (kneedle or argmax), which is logged as
    ``val/threshold`` with ``val/f1``, ``val/mae``, ``val/precision``,
    ``val/recall``, and stored in the module's ``threshold`` buffer, so it
    travels in the checkpoint. The final sweep rewrites the best checkpoint with
    its threshold and saves ``threshold_sweep.png``/``.csv`` (the paper's Fig. 5).

    The grid reaches down to ``count_start`` for a second choice, the counting
    threshold (the best F1 among unbiased counts, see
    :func:`cellcount.evaluation.thresholds.select_counting`), stored as the
    checkpoint's ``count_threshold``; kneedle only sees the paper's part of the grid.
    The final sweep also post-processes with finer split profiles
    (``COUNTING_SPLITS``) and picks the counting threshold and profile together
    (``count_split``; all rows in ``counting_sweep.csv``).

    Args:
        every_n_epochs: sweep period during training (0: only at the end).
        start, stop, step: threshold grid (paper: 0.5 to 0.975 by 0.025).
        count_start: lowest threshold considered for counting.
        count_mpe_tolerance: counting rows this unbiased (``|MPE|``) compete on F1.
        method: ``kneedle`` (paper) or ``argmax``.
        radius: matching radius in px (paper: 50).
        matching: ``greedy`` (paper) or ``hungarian``.
        max_images: validation images used by the periodic sweeps (None: all);
            the final sweep always uses all of them.
        log_overlays: overlay pictures sent to W&B after the final sweep.
        output_dir: where the curve files go (default: the trainer's root dir).
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        start: float = 0.5,
        stop: float = 0.975,
        step: float = 0.025,
        count_start: float = 0.3,
        count_mpe_tolerance: float = 0.02,
        method: str = "kneedle",
        radius: float = PAPER_RADIUS,
        matching: str = "greedy",
        max_images: int | None = None,
        log_overlays: int = 2,
        output_dir: str | None = None,
    ) -> None:
        if method not in ("kneedle", "argmax"):
            raise ValueError(f"unknown threshold method {method!r}; use 'kneedle' or 'argmax'")
        self.every_n_epochs = every_n_epochs
        self.grid = threshold_grid(min(start, count_start), stop, step)
        self.paper_grid = self.grid >= start - 1e-9
        self.count_mpe_tolerance = count_mpe_tolerance
        self.count_threshold: float | None = None
        self.count_split = PAPER_SPLIT
        self.method = method
        self.radius = radius
        self.matching = matching
        self.max_images = max_images
        self.log_overlays = log_overlays
        self.output_dir = output_dir
        self._images: Images | None = None
        self.result: dict[str, float] | None = None  # final sweep's row at the chosen threshold
        self.count_result: dict[str, float] | None = None  # ... at the counting threshold

    # -- hooks -------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_epochs <= 0:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        tables, chosen = self.run(trainer, _as_cell_module(pl_module), self.max_images)
        row = _row_at(tables[PAPER_SPLIT], chosen)
        for name in ("f1", "mae", "precision", "recall", "threshold"):
            pl_module.log(f"val/{name}", row[name], sync_dist=False, rank_zero_only=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = _as_cell_module(pl_module)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best:
            module.load_state_dict(read_checkpoint(best)["state_dict"])
        tables, chosen = self.run(trainer, module, None, COUNTING_SPLITS)
        table = tables[PAPER_SPLIT]
        row = self.result = _row_at(table, chosen)
        metrics = {f"val/{k}": row[k] for k in ("f1", "mae", "precision", "recall", "threshold")}
        for logger in trainer.loggers:
            logger.log_metrics({f"{k}_final": v for k, v in metrics.items()}, trainer.global_step)
        if trainer.is_global_zero:
            out = self._output_dir(trainer)
            save_curve(table, out / "threshold_sweep.png", out / "threshold_sweep.csv", chosen,
                       self.count_threshold)  # fmt: skip
            write_csv(out / "counting_sweep.csv", counting_rows(tables))
            if best:
                _store_threshold(Path(best), chosen, self.count_threshold, self.count_split)
            self._log_pictures(trainer, module, out / "threshold_sweep.png")
        counted = self.count_result or {}
        log.info("threshold %.3f chosen on validation (F1 %.4f); counting threshold %.3f "
                 "with split %s (F1 %.4f, MPE %+.3f)", chosen, row["f1"],
                 counted.get("threshold"), self.count_split.as_dict(),
                 counted.get("f1"), counted.get("mpe"))  # fmt: skip

    # -- work ----------------------------------------------------------------------
    def run(
        self,
        trainer: pl.Trainer,
        module: CellSegModule,
        max_images: int | None,
        splits: tuple[SplitProfile, ...] = (PAPER_SPLIT,),
    ) -> tuple[dict[SplitProfile, list[dict[str, float]]], float]:
        """Sweep the grid over (up to ``max_images``) validation images, post-processed
        with each split profile (the paper's first); store the choices. A bar over the
        images shows when the trainer shows its progress bar (on the main process).

        Returns:
            One sweep table per profile, and the kneedle threshold (paper profile).
        """
        shown = trainer.is_global_zero and trainer.progress_bar_callback is not None
        images = self.images(trainer)[: max_images or None]
        return self.sweep(module, images, splits, progress=shown)

    def sweep(
        self,
        module: CellSegModule,
        images: Images,
        splits: tuple[SplitProfile, ...] = (PAPER_SPLIT,),
        progress: bool = False,
    ) -> tuple[dict[SplitProfile, list[dict[str, float]]], float]:
        """:meth:`run` on given full-size images ``(name, RGB float (H, W, 3), bool mask)``:
        the choices go into ``module`` (threshold buffer, counting hparams) and ``self``;
        ``progress`` shows a bar over the images."""
        from tqdm.auto import tqdm

        diameter = float(module.hparams["cell_diameter"])
        params = [PostprocessParams.from_cell_diameter(diameter, split) for split in splits]
        rank, world = _rank_world()
        numbered = tqdm(enumerate(images), total=len(images), desc="threshold sweep",
                        unit="image", disable=not progress, leave=False)  # fmt: skip
        local = [
            (index, _sweep_profiles(predict_probabilities(module, image), truth, self.grid,
                                    params, self.radius, self.matching))
            for index, (_, image, truth) in numbered
            if index % world == rank
        ]  # fmt: skip
        per_image = [matches for _, matches in sorted(_gather(local))]
        tables = {split: sweep_table(self.grid, [m[k] for m in per_image])
                  for k, split in enumerate(splits)}  # fmt: skip
        f1 = np.array([row["f1"] for row in tables[PAPER_SPLIT]])
        grid, paper_f1 = self.grid[self.paper_grid], f1[self.paper_grid]
        chosen = select_threshold(grid, paper_f1, self.method)  # type: ignore[arg-type]
        module.threshold.fill_(chosen)
        self.count_split, self.count_threshold = select_counting(tables, self.count_mpe_tolerance)
        self.count_result = _row_at(tables[self.count_split], self.count_threshold)
        module.hparams["count_threshold"] = self.count_threshold
        module.hparams["count_split"] = self.count_split.as_dict()
        return tables, chosen

    def images(self, trainer: pl.Trainer) -> Images:
        """Full-size validation images (name, RGB float image, bool mask), read once."""
        if self._images is None:
            datamodule: Any = trainer.datamodule  # type: ignore[attr-defined]
            self._images = datamodule.full_images("val")
        return self._images

    def _output_dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir)

    def _log_pictures(self, trainer: pl.Trainer, module: CellSegModule, curve: Path) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        pictures = []
        params = module.postprocess_params()
        threshold = float(module.threshold)
        for _, image, truth in self.images(trainer)[: self.log_overlays]:
            prob = predict_probabilities(module, image)
            score = score_image(postprocess(prob, threshold, params), truth, self.radius,
                                self.matching)  # type: ignore[arg-type]  # fmt: skip
            pictures.append(
                render_overlay(image, score.pred_labels, score.true_labels,
                               score.false_positives, score.false_negatives)
            )  # fmt: skip
        for logger in loggers:
            logger.log_image(key="val/f1_vs_threshold", images=[str(curve)])
            if pictures:
                logger.log_image(key="val/overlays", images=pictures)


def _as_cell_module(module: pl.LightningModule) -> CellSegModule:
    if not isinstance(module, CellSegModule):
        raise TypeError("ThresholdSweep needs a cellcount CellSegModule")
    return module


def _row_at(table: list[dict[str, float]], threshold: float) -> dict[str, float]:
    return min(table, key=lambda row: abs(row["threshold"] - threshold))


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(
    local: list[tuple[int, list[list[ImageMatch]]]],
) -> list[tuple[int, list[list[ImageMatch]]]]:
    """All processes' (image index, matches) pairs (identity without DDP)."""
    if _rank_world()[1] == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return [item for part in parts for item in part]


def _sweep_profiles(
    prob: np.ndarray, truth: np.ndarray, grid: np.ndarray, params: list[PostprocessParams],
    radius: float, matching: str,
) -> list[list[ImageMatch]]:  # fmt: skip
    """One image's matches at every threshold, for each post-processing variant."""
    return [sweep_image(prob, truth, grid, p, radius, matching) for p in params]  # type: ignore[arg-type]


def counting_rows(tables: dict[SplitProfile, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Every profile's sweep rows, each with the profile's fields first."""
    return [{**split.as_dict(), **row} for split, table in tables.items() for row in table]


def _store_threshold(
    path: Path, threshold: float, count_threshold: float | None, count_split: SplitProfile
) -> None:
    """Rewrite a checkpoint with the chosen thresholds (state dict and hparams)."""
    checkpoint = read_checkpoint(path)
    checkpoint["state_dict"]["threshold"] = torch.tensor(threshold)
    hparams = checkpoint.setdefault("hyper_parameters", {})
    hparams["threshold"] = threshold
    hparams["count_threshold"] = count_threshold
    hparams["count_split"] = count_split.as_dict()
    save_checkpoint(checkpoint, path)
