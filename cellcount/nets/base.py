"""Input contract shared by every network: one shape check, one base class.

All networks take a float RGB batch ``(N, 3, H, W)`` with values in [0, 1] and
return per-pixel LOGITS ``(N, 1, H, W)`` (no sigmoid). H and W must be multiples
of ``input_multiple`` (8 for the paper nets: three 2x2 max-pools).
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 3
"""The nets read RGB images."""


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``multiple``: the size to pad an image to."""
    return round_up(height, multiple), round_up(width, multiple)


def _channels_hint(shape: tuple[int, ...]) -> str:
    if shape[-1] == IN_CHANNELS:
        return "it looks channels-last; use x.permute(0, 3, 1, 2)"
    return "convert the images to RGB (e.g. repeat a grey channel, drop alpha)"


def check_input(x: torch.Tensor, multiple: int) -> None:
    """Raise a ValueError/TypeError explaining the fix unless ``x`` is a valid net input.

    Valid: a floating-point tensor shaped (N, 3, H, W) with H and W multiples of
    ``multiple``. Values are not range-checked (that would force a device sync).
    """
    shape = tuple(x.shape)
    if x.ndim != 4:
        raise ValueError(f"expected a batch shaped (N, 3, H, W), got shape {shape}")
    if shape[1] != IN_CHANNELS:
        raise ValueError(
            f"expected {IN_CHANNELS} input channels (RGB, shape (N, 3, H, W)), "
            f"got {shape[1]} in shape {shape}; {_channels_hint(shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"expected a float tensor with values in [0, 1], got {x.dtype}; "
            "convert with x.float() / 255"
        )
    height, width = shape[2], shape[3]
    if height % multiple or width % multiple:
        new_h, new_w = padded_size(height, width, multiple)
        raise ValueError(
            f"input height/width must be multiples of {multiple}, got {height}x{width}; "
            f"pad to {new_h}x{new_w} (and crop the output back)"
        )


class SegmentationNet(nn.Module):
    """Base class: validates the input, then runs ``forward_logits``.

    Input: float RGB ``(N, 3, H, W)`` in [0, 1], H and W multiples of
    ``input_multiple``. Output: logits ``(N, 1, H, W)``.
    """

    input_multiple: int = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_multiple)
        return self.forward_logits(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network body, called on an already validated input."""
        raise NotImplementedError

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's deepest features of a validated input: float (N, C, H / s, W / s),
        s the net's total downsampling (what :mod:`cellcount.inference.size_model`
        reads a cell size from)."""
        raise NotImplementedError
