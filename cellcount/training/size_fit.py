"""Fit a trained model's size model (:mod:`cellcount.inference.size_model`) on its own split.

The training images, each at its own size and rescaled to random cell sizes, teach
the regression; the validation images (rescaled the same way, with another seed)
choose its ridge strength and measure it. Images are read at their native size
(not resized to the training cell size), and each image's cell diameter is the
median of its truth's cells. :class:`SizeModelFit` does this at the end of every
``cellcount.train`` run (callback ``callbacks.size_model``) and stores the result in
the best checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from tqdm import tqdm

from cellcount.data.datamodule import CellDataModule
from cellcount.data.io import load_pair
from cellcount.data.sizes import median_diameter
from cellcount.inference.checkpoints import read_checkpoint, save_checkpoint
from cellcount.inference.size_model import (
    CROP,
    SizeModel,
    appearance,
    choose_size_model,
    relative_errors,
    rescaled_views,
)
from cellcount.training.module import CellSegModule

log = logging.getLogger(__name__)

# Views per image: one per CROP x CROP px of it, within these bounds (a 256 x 256 image
# gives 3, a 1600 x 1200 one 8).
VIEWS_PER_IMAGE = (3, 8)


@dataclass(frozen=True)
class SizeFit:
    """A fitted size model and how it did on the validation views.

    Attributes:
        model: the regression.
        train_views, val_views: views fitted on / scored on.
        val_median_error: median |estimate / truth - 1| on the validation views.
        val_within_25: share of validation views estimated within 25 %.
        alphas: median validation error of every ridge strength tried.
    """

    model: SizeModel
    train_views: int
    val_views: int
    val_median_error: float
    val_within_25: float
    alphas: dict[float, float]

    def summary(self) -> dict[str, object]:
        """Plain numbers for a model card."""
        return {"alpha": self.model.alpha, "train_views": self.train_views,
                "val_views": self.val_views, "val_median_error": self.val_median_error,
                "val_within_25": self.val_within_25,
                "alphas": {str(k): v for k, v in self.alphas.items()}}  # fmt: skip


def fit_on_split(module: CellSegModule, datamodule: CellDataModule, seed: int = 0) -> SizeFit:
    """Fit ``module``'s size model on the datamodule's train part, chosen on its val part
    (errors NaN when the val part has no cells).

    Raises:
        ValueError: the train part has no image with cells.
    """
    train = _view_features(module, datamodule, "train", np.random.default_rng(seed))
    val = _view_features(module, datamodule, "val", np.random.default_rng(seed + 1))
    if not train[1].size:
        raise ValueError("the training images hold no cells to fit a size model on")
    model, alphas = choose_size_model(train, val)
    median = within = float("nan")
    if val[1].size:
        errors = np.abs(relative_errors(model, *val))
        median, within = float(np.median(errors)), float(np.mean(errors <= 0.25))
    return SizeFit(model, len(train[1]), len(val[1]), median, within, alphas)


def _view_features(
    module: CellSegModule, datamodule: CellDataModule, part: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """float (N, F) features and float (N,) cell diameters of the views of a split part
    (N = 0 when none of its images has cells)."""
    features, diameters = [], []
    samples = datamodule.part_samples(part)
    for sample in tqdm(samples, desc=f"size model: {part} images", unit="image"):
        image, truth = load_pair(sample, datamodule.normalization)
        diameter = median_diameter(truth)
        if diameter is None:
            continue
        count = int(np.clip(round(image.shape[0] * image.shape[1] / CROP**2), *VIEWS_PER_IMAGE))
        for view, view_diameter in rescaled_views(image, diameter, count, rng):
            features.append(appearance(module.net, view))
            diameters.append(view_diameter)
    if not features:
        return np.empty((0, 0)), np.empty(0)
    return np.stack(features), np.array(diameters)


class SizeModelFit(pl.Callback):
    """After training, fit the best checkpoint's size model on the run's train / val
    split and store it in that checkpoint (``size_model`` hyperparameter), so counting
    with ``--cell-diameter auto`` can use it; ``fit`` holds the result (None: none).

    A run whose training images hold no cells (nothing to fit) keeps no size model
    and says so in the log. Under DDP only rank 0 fits.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.fit: SizeFit | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        datamodule = getattr(trainer, "datamodule", None)
        if not (best and trainer.is_global_zero and isinstance(datamodule, CellDataModule)):
            return
        assert isinstance(pl_module, CellSegModule)
        checkpoint = read_checkpoint(best)
        pl_module.load_state_dict(checkpoint["state_dict"])
        try:
            self.fit = fit_on_split(pl_module, datamodule, self.seed)
        except ValueError as err:
            log.warning("no size model: %s", err)
            return
        pl_module.hparams["size_model"] = self.fit.model.as_dict()
        checkpoint.setdefault("hyper_parameters", {})["size_model"] = self.fit.model.as_dict()
        save_checkpoint(checkpoint, Path(best))
        log.info("size model fitted: validation median error %.1f %% (%d views)",
                 100 * self.fit.val_median_error, self.fit.val_views)  # fmt: skip
