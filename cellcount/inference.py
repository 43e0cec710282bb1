"""Full-image inference: probabilities of any-size images from a trained net.

Shared by the threshold-sweep callback, ``evaluate`` and the counting CLI. The
net sees the image padded (by reflection) to a multiple of its input stride; the
output is cropped back to the original size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellcount.data.crops import pad_to_multiple
from cellcount.module import CellSegModule


def load_module(path: Path | str, map_location: str | torch.device = "cpu") -> CellSegModule:
    """Load a training checkpoint in eval mode (no Hydra run folder needed)."""
    module = CellSegModule.load_from_checkpoint(str(path), map_location=map_location)
    return module.eval()


def input_multiple(net: nn.Module) -> int:
    """Side multiple the net needs (8 for the paper nets; stored on registry nets)."""
    inner = getattr(net, "net", net)
    return int(getattr(inner, "input_multiple", 8))


@torch.inference_mode()
def predict_probabilities(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """Cell probability of every pixel of one image.

    Args:
        net: a net or :class:`CellSegModule` returning logits (N, 1, H, W); it is run
            in eval mode and its previous mode is restored.
        image: float (H, W, 3) RGB in [0, 1], any H and W.

    Returns:
        float32 (H, W) probabilities in [0, 1].
    """
    was_training = net.training
    net.eval()
    try:
        padded, (height, width) = pad_to_multiple(image, input_multiple(net))
        device = next(net.parameters()).device
        batch = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1), np.float32))
        logits = net(batch[None].to(device))
        return torch.sigmoid(logits[0, 0, :height, :width]).float().cpu().numpy()
    finally:
        net.train(was_training)
