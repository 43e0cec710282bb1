"""Building blocks shared by the networks (docs/method.md#networks).

Conventions reproduced from the authors' Keras code:

* "same" padding, stride 1, conv bias on;
* BatchNorm with Keras defaults: momentum 0.99 in Keras = ``momentum=0.01`` in
  PyTorch, ``eps=1e-3``;
* 2x2 max-pool down, 2x2 stride-2 transposed conv up (exactly doubles H and W).

WEIGHT-PORT ORDER. The authors' Keras weights are ported to PyTorch by zipping
the Keras layer list with ``state_dict()`` *positionally*
(docs/method.md#importing-the-authors-weights). That only
works if modules are registered in Keras layer order, so inside each block:
the main path is registered BEFORE the 1x1 shortcut, and in decoder blocks the
transposed conv is registered BEFORE the main path; BN comes after the conv it
follows in Keras. Do not reorder the attribute assignments in ``__init__``.
"""

from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the Keras default hyper-parameters."""
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Stride-1 convolution with "same" padding (odd kernel sizes) and bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def up_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """2x2 stride-2 transposed conv: doubles H and W exactly."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


def _elu(x: torch.Tensor) -> torch.Tensor:
    """ELU(x) (alpha 1) in a new tensor, as ``max(x, exp(min(x, 0)) - 1)``: for x > 0 the
    second term is 0, for x <= 0 it is >= x (e^x >= 1 + x)."""
    y = torch.clamp(x, max=0.0)
    y.exp_()
    y.sub_(1.0)
    return torch.maximum(x, y, out=y)


class _ELUFunction(torch.autograd.Function):
    """ELU with the backward computed from the output: dELU/dx = min(y + 1, 1)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        y = _elu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (y + 1.0).clamp_(max=1.0)


class ELU(nn.Module):
    """``nn.ELU()`` (alpha 1), the same function within float rounding, several times faster.

    PyTorch's CPU ELU kernel evaluates ``expm1`` element by element: on a 16-channel
    1600 x 1200 activation it takes ~145 ms, where ``exp`` takes 7-19 ms, so it was two
    thirds of a c-ResUnet forward pass in bf16 (BENCHMARKS.md section 4). Here it is
    ``max(x, exp(min(x, 0)) - 1)``, which differs from ``expm1`` by at most one float
    ulp of 1 near 0 (~6e-8 in float32). Without autograd (counting, export) it is
    plain tensor operations; with it, a custom function whose backward uses the output.
    No parameters: checkpoints of ``nn.ELU`` nets load unchanged.
    Shapes: any -> the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _ELUFunction.apply(x)
        return _elu(x)


def pre_act_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """BN -> ELU -> conv (full pre-activation)."""
    return nn.Sequential(
        batch_norm(in_channels), ELU(), conv(in_channels, out_channels, kernel_size)
    )


def conv_relu_bn(
    in_channels: int, out_channels: int, kernel_size: int, norm: bool = True
) -> nn.Sequential:
    """conv -> ReLU [-> BN]: the UNet unit (Keras ``Conv2D(activation='relu')`` + BN)."""
    layers: list[nn.Module] = [conv(in_channels, out_channels, kernel_size), nn.ReLU()]
    if norm:
        layers.append(batch_norm(out_channels))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: ``main(x) + shortcut(x)``, no activation after the add.

    ``main`` = (BN -> ELU -> conv_k) twice. ``shortcut`` is a 1x1 conv (no BN)
    when the channel count changes, the identity otherwise.
    Shapes: (N, C_in, H, W) -> (N, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        # Registration order = Keras layer order: main path first, then shortcut.
        self.main = nn.Sequential(
            pre_act_conv(in_channels, out_channels, kernel_size),
            pre_act_conv(out_channels, out_channels, kernel_size),
        )
        self.shortcut: nn.Module = (
            conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class UpResidualUnit(nn.Module):
    """Decoder residual unit: ``u = up(x)``, ``out = main(cat[u, skip]) + u``.

    The shortcut is the upsampled tensor ``u`` itself; the concat puts ``u``
    first, then the encoder skip. ``skip`` must have ``out_channels`` channels.
    Shapes: x (N, C_in, H, W), skip (N, C_out, 2H, 2W) -> (N, C_out, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        # Registration order = Keras layer order: transposed conv, then main path.
        self.up = up_conv(in_channels, out_channels)
        self.main = nn.Sequential(
            pre_act_conv(2 * out_channels, out_channels, kernel_size),
            pre_act_conv(out_channels, out_channels, kernel_size),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = self.up(x)
        return self.main(torch.cat([u, skip], dim=1)) + u


class UNetUpBlock(nn.Module):
    """UNet decoder step: ConvT -> BN, concat [up, skip], two conv-ReLU(-BN) units.

    ``last_norm=False`` drops the BN after the second conv (the authors' last
    decoder block, right before the head).
    Shapes: x (N, C_in, H, W), skip (N, C_out, 2H, 2W) -> (N, C_out, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int, last_norm: bool = True) -> None:
        super().__init__()
        self.up = up_conv(in_channels, out_channels)
        self.up_norm = batch_norm(out_channels)
        self.convs = nn.Sequential(
            conv_relu_bn(2 * out_channels, out_channels, 3),
            conv_relu_bn(out_channels, out_channels, 3, norm=last_norm),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = self.up_norm(self.up(x))
        return self.convs(torch.cat([u, skip], dim=1))


def double_conv_relu_bn(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Two conv -> ReLU -> BN units (a UNet encoder level / bottom)."""
    return nn.Sequential(
        conv_relu_bn(in_channels, out_channels, kernel_size),
        conv_relu_bn(out_channels, out_channels, kernel_size),
    )


def init_kaiming_normal(module: nn.Module) -> None:
    """Init as in the authors' PyTorch port (docs/method.md#networks).

    ``kaiming_normal_`` (fan_in, ReLU gain) on every ``nn.Conv2d`` weight, 1x1
    convs and the head included; conv biases and ``ConvTranspose2d`` keep
    PyTorch's default init; BatchNorm weight = 1, bias = 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
