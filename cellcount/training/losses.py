"""Weighted binary cross-entropy on logits (docs/method.md#loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    cell_weight: float = 1.5,
) -> torch.Tensor:
    """Mean over pixels of ``class factor x weight map x BCE``.

    The class factor is ``cell_weight`` on cell pixels and 1 on background (the
    authors' code: 1.5 for cells; the paper text states the reverse, docs/method.md#loss).
    The mean is a plain mean, not normalised by the sum of weights, as in the
    original. With ``weight=None`` (ablation ``no_wm``) it is class-weighted BCE.

    Args:
        logits: (N, 1, H, W) raw network outputs.
        target: (N, 1, H, W) in {0, 1}.
        weight: (N, 1, H, W) weight map (>= 1) or None.
        cell_weight: class factor of cell pixels (> 0).

    Returns:
        Scalar loss tensor.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    factor = 1.0 + (cell_weight - 1.0) * target
    if weight is not None:
        factor = factor * weight
    return (factor * bce).mean()
