"""The paper's UNet and small UNet (docs/method.md#networks): the authors' 3-level BN UNet.

This is the Keras function ``shorter_unet`` (called ``Unet`` until Aug 2021),
which docs/method.md#networks concludes produced the paper's UNet (n=8, base width 64) and
small UNet (n=2, base width 16). With base width ``w``:

* encoder levels 1-3: [conv3 -> ReLU -> BN] x 2 with w, 2w, 4w filters, each
  followed by a 2x2 max-pool;
* bottom: [conv5 -> ReLU -> BN] x 2 with 8w filters;
* decoder levels 3-1: ConvT 2x2/2 -> BN (no activation), concat [up, skip],
  [conv3 -> ReLU -> BN] x 2, except that the very last conv (level 1, right
  before the head) has no BN;
* head: 1x1 conv -> 1 channel (logits).

Trainable params: 876,849 (w=16), 3,501,665 (w=32), 13,995,201 (w=64).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IN_CHANNELS, SegmentationNet
from .blocks import UNetUpBlock, conv, double_conv_relu_bn, init_kaiming_normal
from .registry import register_net

BOTTOM_KERNEL = 5


class UNet(SegmentationNet):
    """3-level UNet with BN after every ReLU, 5x5 bottom, ConvT upsampling.

    Input: float RGB ``(N, 3, H, W)`` in [0, 1], H and W multiples of 8.
    Output: logits ``(N, 1, H, W)`` (apply a sigmoid for probabilities).

    Attribute registration order follows the Keras layer order (weight port).
    """

    input_multiple = 8

    def __init__(self, n_features_start: int = 64) -> None:
        super().__init__()
        w = n_features_start
        self.enc1 = double_conv_relu_bn(IN_CHANNELS, w, 3)
        self.enc2 = double_conv_relu_bn(w, 2 * w, 3)
        self.enc3 = double_conv_relu_bn(2 * w, 4 * w, 3)
        self.bottom = double_conv_relu_bn(4 * w, 8 * w, BOTTOM_KERNEL)
        self.dec3 = UNetUpBlock(8 * w, 4 * w)
        self.dec2 = UNetUpBlock(4 * w, 2 * w)
        self.dec1 = UNetUpBlock(2 * w, w, last_norm=False)
        self.head = conv(w, 1, 1)
        self.pool = nn.MaxPool2d(2)
        init_kaiming_normal(self)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The three encoder levels' outputs (the skips) and the bottom's (N, 8w, H/8, W/8)."""
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        return [e1, e2, e3], self.bottom(self.pool(e3))

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[1]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        (e1, e2, e3), b = self.encode(x)
        return self.head(self.dec1(self.dec2(self.dec3(b, e3), e2), e1))


@register_net("unet")
def unet(n_features_start: int = 64) -> UNet:
    """The paper's UNet (~14.0 M params): base width 64."""
    return UNet(n_features_start)


@register_net("small_unet")
def small_unet(n_features_start: int = 16) -> UNet:
    """The paper's small UNet (876,849 params): base width 16."""
    return UNet(n_features_start)
