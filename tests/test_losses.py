"""Weighted BCE: the class factor and the weight map scale each pixel's BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cellcount.training.losses import weighted_bce


def test_matches_hand_computed_values() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0, 0.5]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    weight = torch.tensor([1.0, 2.0, 1.0, 3.0]).view(1, 1, 2, 2)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
    factor = torch.tensor([1.5, 1.0, 1.5, 1.0]) * weight.flatten()
    expected = (factor * bce).mean()
    assert torch.allclose(weighted_bce(logits, target, weight), expected)


def test_unit_map_equals_class_weighted_bce() -> None:
    logits = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert torch.allclose(
        weighted_bce(logits, target, torch.ones_like(target)), weighted_bce(logits, target, None)
    )
    plain = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(weighted_bce(logits, target, None, cell_weight=1.0), plain)


def test_stable_for_extreme_logits() -> None:
    logits = torch.tensor([1e4, -1e4]).view(1, 1, 1, 2)
    target = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    loss = weighted_bce(logits, target)
    assert torch.isfinite(loss) and loss > 1000
