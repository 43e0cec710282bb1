"""LightningModule: a segmentation net from the registry, the weighted BCE loss,
optimiser and LR schedule, and the detection threshold stored as a buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from cellcount.data.normalize import Normalization
from cellcount.evaluation.postprocess import (
    REFERENCE_CELL_DIAMETER,
    PostprocessParams,
    SplitProfile,
)
from cellcount.inference.size_model import SizeModel
from cellcount.nets import build_net, net_config
from cellcount.training.losses import weighted_bce

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class CellSegModule(pl.LightningModule):
    """Binary cell segmentation.

    The checkpoint is self-sufficient: ``arch`` and ``arch_kwargs`` are saved as
    hyperparameters and the chosen ``threshold`` is a buffer in the state dict, so
    ``CellSegModule.load_from_checkpoint(path)`` needs no Hydra run folder.

    Args:
        arch: registry name of the net (see :func:`cellcount.nets.available_nets`).
        arch_kwargs: keyword arguments of the net builder.
        cell_weight: class factor of cell pixels in the loss (paper code: 1.5).
        threshold: initial probability threshold in (0, 1); tuned later on validation.
        cell_diameter: expected cell diameter in px; scales the post-processing
            constants (the paper's at 40 px, see :class:`PostprocessParams`).
        normalization: intensity normalisation of the training images
            (:class:`cellcount.data.normalize.Normalization` as a dict); None: the
            paper's divide-by-dtype-maximum (what older and converted checkpoints use).
        count_threshold: threshold for counting chosen on validation to make counts
            unbiased; None: counting uses ``threshold``.
        count_split: the :class:`SplitProfile` (as a dict) chosen with it; None:
            the paper's.
        size_model: the :class:`~cellcount.inference.size_model.SizeModel` (as a dict)
            fitted to this net's features, for automatic cell size; None: none.
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_``); default Adam(lr=1e-3).
        scheduler: ``optimizer -> scheduler``; a ReduceLROnPlateau watches ``val/loss``.
    """

    threshold: torch.Tensor  # buffer: 0-d float, the detection threshold in (0, 1)

    def __init__(
        self,
        arch: str = "c_resunet",
        arch_kwargs: dict[str, Any] | None = None,
        cell_weight: float = 1.5,
        threshold: float = 0.5,
        cell_diameter: float = REFERENCE_CELL_DIAMETER,
        normalization: dict[str, Any] | None = None,
        count_threshold: float | None = None,
        count_split: dict[str, Any] | None = None,
        size_model: dict[str, Any] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(cell_diameter, int | float) and 0 < cell_diameter < float("inf")):
            raise ValueError(
                f"cell_diameter={cell_diameter!r} is not a cell size: it must be a positive "
                f"number of px (module.cell_diameter, stored in each checkpoint)"
            )
        self.net = build_net(arch, **dict(arch_kwargs or {}))
        # Record the resolved, JSON-plain kwargs (defaults filled in): the checkpoint
        # then holds only primitive types and loads with torch.load(weights_only=True).
        arch_kwargs = net_config(self.net)["kwargs"]
        if normalization is not None:  # checked, and a plain dict (not a DictConfig)
            normalization = Normalization.from_dict(dict(normalization)).as_dict()
        if count_split is not None:
            count_split = SplitProfile.from_dict(dict(count_split)).as_dict()
        if size_model is not None:
            size_model = SizeModel.from_dict(dict(size_model)).as_dict()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.cell_weight = float(cell_weight)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    @property
    def normalization(self) -> Normalization:
        """How this model's images are normalised (recorded in the checkpoint)."""
        return Normalization.from_dict(self.hparams.get("normalization"))

    @property
    def count_threshold(self) -> float:
        """The threshold for counting: the unbiased one when stored, else ``threshold``."""
        stored = self.hparams.get("count_threshold")
        return float(self.threshold) if stored is None else float(stored)

    @property
    def count_split(self) -> SplitProfile:
        """How finely counting splits touching cells (stored with ``count_threshold``)."""
        return SplitProfile.from_dict(self.hparams.get("count_split"))

    @property
    def size_model(self) -> SizeModel | None:
        """The regression from this net's features to the cell size, if it has one."""
        stored = self.hparams.get("size_model")
        return None if stored is None else SizeModel.from_dict(stored)

    def postprocess_params(self) -> PostprocessParams:
        """The paper's post-processing constants for this model's expected cell size."""
        return PostprocessParams.from_cell_diameter(float(self.hparams["cell_diameter"]))

    def on_fit_start(self) -> None:
        # Channels-last convolutions are faster on CPU (oneDNN) and GPU tensor cores
        # and give the same results; inputs follow in forward().
        self.net.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) logits."""
        return self.net(image.contiguous(memory_format=torch.channels_last))

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = weighted_bce(logits, batch["mask"], batch["weight"], self.cell_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage} loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}; lower the learning rate (module.optimizer.lr) or check "
                f"the input images for NaN/inf. The last good checkpoint is kept."
            )
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["image"].shape[0],
            sync_dist=True,
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        make_optimizer = self.optimizer_factory or (lambda p: torch.optim.Adam(p, lr=1e-3))
        optimizer = make_optimizer(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"},
        }
