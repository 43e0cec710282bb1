"""``smp_unet``: a segmentation_models_pytorch UNet behind the same contract.

Not a paper model: a modern baseline. The encoder is randomly initialised;
pretrained weights are refused because this project never downloads anything.
smp itself is imported lazily so that ``import cellcount.nets`` stays light.

smp only enforces divisible input sizes for some encoders (resnets silently
interpolate mismatched skips). For a consistent contract, ``SmpUNet`` always
requires H and W to be multiples of the encoder's output stride
(2**encoder_depth: 32 by default).

Quirk of smp 0.6 (checked): with ``encoder_depth < 5`` a resnet encoder keeps
its unused deeper stages (e.g. layer3/layer4 at depth 3). Their parameters
never get a gradient; harmless for the optimiser, but DDP would need
``find_unused_parameters=True``. Use the default depth 5 for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import IN_CHANNELS, SegmentationNet
from .registry import register_net

SMP_DECODER_CHANNELS = (256, 128, 64, 32, 16)
"""smp's default decoder widths, one per encoder stage."""


class SmpUNet(SegmentationNet):
    """``segmentation_models_pytorch.Unet`` (3 input channels, 1 class, no activation).

    Input: float RGB ``(N, 3, H, W)`` in [0, 1], H and W multiples of
    ``input_multiple`` (= 2**encoder_depth).
    Output: logits ``(N, 1, H, W)``.
    """

    def __init__(
        self,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        channels = decoder_channels or SMP_DECODER_CHANNELS[:encoder_depth]
        self.model = smp.Unet(
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=None,
            decoder_channels=tuple(channels),
            in_channels=IN_CHANNELS,
            classes=1,
            activation=None,
        )
        self.input_multiple = int(self.model.encoder.output_stride)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x)
        return logits

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        deepest: torch.Tensor = self.model.encoder(x)[-1]
        return deepest


@register_net("smp_unet")
def smp_unet(
    encoder_name: str = "resnet18",
    encoder_depth: int = 5,
    decoder_channels: list[int] | None = None,
    encoder_weights: str | None = None,
) -> nn.Module:
    """smp UNet with a random-init encoder; ``encoder_weights`` must stay None."""
    if encoder_weights is not None:
        raise ValueError(
            f"smp_unet: encoder_weights={encoder_weights!r} would download weights; "
            "only None is allowed (this project runs offline)"
        )
    return SmpUNet(encoder_name, encoder_depth, decoder_channels)
