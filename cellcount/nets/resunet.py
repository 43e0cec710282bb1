"""c-ResUnet and ResUnet (docs/method.md#networks): one class, two flags.

Widths n, 2n, 4n, 8n with n = ``n_features_start`` (paper: 16). Three encoder
levels, a 5x5 residual bridge, three residual decoder levels, 1x1 head.

* ``colorspace=True`` prepends the learned 3->1 projection (1x1 conv -> BN -> ELU);
* ``extra_bridge=True`` adds the second 5x5 bridge block (identity shortcut).

Both on = c-ResUnet (1,707,287 trainable params at n=16); both off = the
authors' ResUnet (887,601).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IN_CHANNELS, SegmentationNet
from .blocks import (
    ELU,
    ResidualUnit,
    UpResidualUnit,
    batch_norm,
    conv,
    init_kaiming_normal,
)
from .registry import register_net

BRIDGE_KERNEL = 5


def _colorspace() -> nn.Sequential:
    """Learned RGB -> 1 channel projection: 1x1 conv -> BN -> ELU."""
    return nn.Sequential(conv(IN_CHANNELS, 1, 1), batch_norm(1), ELU())


def _input_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Encoder block 1 (no shortcut): conv3 -> BN -> ELU -> conv3."""
    return nn.Sequential(
        conv(in_channels, out_channels, 3),
        batch_norm(out_channels),
        ELU(),
        conv(out_channels, out_channels, 3),
    )


class ResUNet(SegmentationNet):
    """Residual UNet of the paper, with or without the c-ResUnet additions.

    Input: float RGB ``(N, 3, H, W)`` in [0, 1], H and W multiples of 8.
    Output: logits ``(N, 1, H, W)`` (apply a sigmoid for probabilities).

    Attribute registration order follows the Keras layer order (weight port).
    """

    input_multiple = 8

    def __init__(
        self, n_features_start: int = 16, colorspace: bool = True, extra_bridge: bool = True
    ) -> None:
        super().__init__()
        n = n_features_start
        self.colorspace: nn.Module = _colorspace() if colorspace else nn.Identity()
        self.enc1 = _input_block(1 if colorspace else IN_CHANNELS, n)
        self.enc2 = ResidualUnit(n, 2 * n)
        self.enc3 = ResidualUnit(2 * n, 4 * n)
        bridge = [ResidualUnit(4 * n, 8 * n, BRIDGE_KERNEL)]
        if extra_bridge:
            bridge.append(ResidualUnit(8 * n, 8 * n, BRIDGE_KERNEL))
        self.bridge = nn.Sequential(*bridge)
        self.dec3 = UpResidualUnit(8 * n, 4 * n)
        self.dec2 = UpResidualUnit(4 * n, 2 * n)
        self.dec1 = UpResidualUnit(2 * n, n)
        self.head = conv(n, 1, 1)
        self.pool = nn.MaxPool2d(2)
        init_kaiming_normal(self)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The three encoder levels' outputs (the skips) and the bridge's (N, 8n, H/8, W/8)."""
        e1 = self.enc1(self.colorspace(x))
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        return [e1, e2, e3], self.bridge(self.pool(e3))

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[1]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        (e1, e2, e3), b = self.encode(x)
        return self.head(self.dec1(self.dec2(self.dec3(b, e3), e2), e1))


@register_net("c_resunet")
def c_resunet(n_features_start: int = 16) -> ResUNet:
    """c-ResUnet (paper model): colorspace stage + two 5x5 bridge blocks."""
    return ResUNet(n_features_start, colorspace=True, extra_bridge=True)


@register_net("resunet")
def resunet(n_features_start: int = 16) -> ResUNet:
    """The authors' ResUnet: no colorspace stage, one 5x5 bridge block."""
    return ResUNet(n_features_start, colorspace=False, extra_bridge=False)
