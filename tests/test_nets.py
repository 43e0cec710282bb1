"""Tests for cellcount.nets: shapes, parameter counts, gradients, input errors, registry."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cellcount.nets import (
    UnknownNetError,
    available_nets,
    build_net,
    build_net_from_config,
    net_config,
)
from cellcount.nets.blocks import ELU

# Trainable params and totals incl. BN running stats (docs/method.md#networks).
PAPER_PARAMS = {
    "c_resunet": (1_707_287, 1_709_177),
    "resunet": (887_601, 888_977),
    "small_unet": (876_849, 878_449),
    "unet": (13_995_201, 14_001_601),
}
PAPER_NETS = sorted(PAPER_PARAMS)

# Narrow variants keep the CPU tests fast; nets not listed are built at defaults.
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "c_resunet": {"n_features_start": 4},
    "resunet": {"n_features_start": 4},
    "small_unet": {"n_features_start": 4},
    "unet": {"n_features_start": 4},
    "smp_unet": {"decoder_channels": [32, 16, 16, 8, 8]},
}


def tiny_net(name: str) -> nn.Module:
    return build_net(name, **TINY_KWARGS.get(name, {}))


def n_trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def n_total(net: nn.Module) -> int:
    stats = sum(b.numel() for k, b in net.named_buffers() if not k.endswith("num_batches_tracked"))
    return n_trainable(net) + stats


def test_registry_has_the_five_nets() -> None:
    assert set(available_nets()) >= {"unet", "small_unet", "resunet", "c_resunet", "smp_unet"}


def test_paper_parameter_counts() -> None:
    print("\ntrainable parameters (total incl. BN running stats):")
    for name in PAPER_NETS:
        net = build_net(name)
        trainable, total = n_trainable(net), n_total(net)
        print(f"  {name:<11s} {trainable:>12,d}  ({total:,d})")
        assert (trainable, total) == PAPER_PARAMS[name], name


def test_unet_width_32_count() -> None:
    assert n_trainable(build_net("unet", n_features_start=32)) == 3_501_665


@pytest.mark.parametrize("name", available_nets())
def test_forward_shape_tiny(name: str) -> None:
    net = tiny_net(name)
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", PAPER_NETS)
def test_forward_shape_paper_width(name: str) -> None:
    net = build_net(name).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 32, 48))
    assert out.shape == (1, 1, 32, 48)
    # logits, not probabilities: a sigmoid head would keep them inside (0, 1)
    assert out.min() < 0 or out.max() > 1


@pytest.mark.parametrize("name", available_nets())
def test_gradient_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    net = tiny_net(name)
    logits = net(torch.rand(2, 3, 32, 32))
    target = (torch.rand_like(logits) > 0.5).float()
    F.binary_cross_entropy_with_logits(logits, target).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        # Biases of convs feeding a train-mode BN get ~0 gradient (BN removes
        # the mean), so only weight tensors must have a non-zero gradient.
        if p.ndim > 1:
            assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", available_nets())
def test_bad_height_width_raise_with_fix(name: str) -> None:
    net = tiny_net(name)
    multiple = net.input_multiple
    with pytest.raises(ValueError, match=rf"multiples of {multiple}, got 64x{64 + 1}; pad to"):
        net(torch.rand(1, 3, 64, 64 + 1))


def test_bad_size_message_names_the_padded_size() -> None:
    net = build_net("c_resunet")
    x = torch.empty(1, 3, 1200, 1601, device="meta")  # no memory, never computed
    with pytest.raises(ValueError, match="multiples of 8, got 1200x1601; pad to 1200x1608"):
        net(x)


@pytest.mark.parametrize("name", available_nets())
def test_wrong_channels_raise(name: str) -> None:
    net = tiny_net(name)
    with pytest.raises(ValueError, match="expected 3 input channels"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"channels-last; use x\.permute\(0, 3, 1, 2\)"):
        net(torch.rand(1, 64, 64, 3))


def test_wrong_rank_and_dtype_raise() -> None:
    net = tiny_net("resunet")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="float"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_unknown_name_lists_valid_names() -> None:
    valid = ", ".join(available_nets())
    with pytest.raises(ValueError, match=f"unknown net 'resnet'; valid nets: {valid}"):
        build_net("resnet")
    with pytest.raises(UnknownNetError):
        build_net("resnet")


def test_unknown_kwarg_raises() -> None:
    with pytest.raises(TypeError, match="accepted: n_features_start"):
        build_net("unet", width=8)


def test_config_is_json_and_rebuilds_the_same_architecture() -> None:
    net = build_net("c_resunet", n_features_start=4)
    config = net_config(net)
    assert config == {"name": "c_resunet", "kwargs": {"n_features_start": 4}}
    rebuilt = build_net_from_config(json.loads(json.dumps(config)))
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


def test_smp_unet_builds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("smp_unet tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    net = build_net("smp_unet")
    assert net_config(net)["kwargs"]["encoder_weights"] is None
    assert net.input_multiple == 32
    with pytest.raises(ValueError, match="encoder_weights"):
        build_net("smp_unet", encoder_weights="imagenet")


def test_smp_unet_encoder_depth_sets_the_input_multiple() -> None:
    net = build_net("smp_unet", encoder_depth=3)
    assert net_config(net)["kwargs"]["decoder_channels"] is None  # smp defaults, cut to depth
    assert net.input_multiple == 8
    assert net(torch.rand(1, 3, 40, 24)).shape == (1, 1, 40, 24)


def test_registration_order_matches_keras_layer_order() -> None:
    """The Keras weight port zips state_dict positionally
    (docs/method.md#importing-the-authors-weights)."""
    keys = list(build_net("c_resunet", n_features_start=4).state_dict())
    prefixes = ["colorspace", "enc1", "enc2.main", "enc2.shortcut", "bridge.1", "dec3.up"]
    prefixes += ["dec3.main", "head"]
    first = {p: next(i for i, k in enumerate(keys) if k.startswith(p)) for p in prefixes}
    assert first["colorspace"] < first["enc1"] < first["enc2.main"] < first["enc2.shortcut"]
    assert first["enc2.shortcut"] < first["bridge.1"] < first["dec3.up"] < first["dec3.main"]
    assert keys[-2:] == ["head.weight", "head.bias"]


@pytest.mark.parametrize("name", PAPER_NETS)
def test_batchnorm_and_activation_conventions(name: str) -> None:
    net = tiny_net(name)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for bn in norms:
        assert (bn.momentum, bn.eps) == (0.01, 1e-3)
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    elus = (ELU, nn.ELU)
    act, other = (ELU, nn.ReLU) if "resunet" in name else (nn.ReLU, elus)
    assert any(isinstance(m, act) for m in net.modules())
    assert not any(isinstance(m, other) for m in net.modules())


def test_fast_elu_is_torch_elu_in_value_and_gradient() -> None:
    x = torch.cat([torch.linspace(-20, 20, 4001), torch.tensor([0.0, -1e-9, 1e-9])])
    x = x.double().requires_grad_()
    assert torch.autograd.gradcheck(ELU(), (x[::97].detach().requires_grad_(),))
    y = ELU()(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    (expected_grad,) = torch.autograd.grad(F.elu(x).sum(), x)
    torch.testing.assert_close(y, F.elu(x), atol=1e-15, rtol=0)
    torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=0)
    with torch.inference_mode():  # counting's path: no autograd, same values
        for dtype, tol in ((torch.float32, 1e-7), (torch.bfloat16, 2**-7)):
            z = x.detach().to(dtype)  # the exact ELU of the rounded input, within its rounding
            assert ELU()(z).dtype == dtype
            torch.testing.assert_close(ELU()(z).double(), F.elu(z.double()), atol=tol, rtol=tol)
    assert torch.isnan(ELU()(torch.tensor([float("nan")]))).all()


def test_conv_init_is_kaiming_fan_in() -> None:
    torch.manual_seed(0)
    modules = dict(build_net("c_resunet").named_modules())
    conv = modules["bridge.1.main.1.2"]  # 5x5, 128 -> 128: fan_in 3200
    assert isinstance(conv, nn.Conv2d)
    expected = (2 / 3200) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.05
