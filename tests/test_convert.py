"""Weight import from the authors' layouts (Keras h5/pkl, FNC v2 PyTorch).

The released files cannot be downloaded here, so every test builds a source in the
authors' layout from one of our nets with random weights (inverse permutations,
their key names) and checks that conversion gives back exactly that net.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cellcount.cli.convert import main
from cellcount.inference.convert import (
    KERAS_KERNEL_PERMUTATION,
    ConversionError,
    UnsafePickleError,
    convert,
    detect_kind,
    from_fnc_v2_state_dict,
    from_keras_weights,
    infer_n_features_start,
    read_keras_h5,
    read_pickled_keras_dict,
)
from cellcount.nets import build_net
from cellcount.training.module import CellSegModule

# torch (out, in, kh, kw) -> Keras (kh, kw, in, out); ConvT (in, out, kh, kw) -> (kh, kw, out, in)
TORCH_TO_KERAS = (2, 3, 1, 0)
KerasLayer = tuple[str, list[tuple[str, np.ndarray]]]


def random_net(n_features_start: int = 16, seed: int = 0) -> nn.Module:
    """c_resunet with every parameter and BN statistic random (eval mode)."""
    net = build_net("c_resunet", n_features_start=n_features_start)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if key.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return net.eval()


def keras_layers(net: nn.Module, seed: int = 0) -> list[KerasLayer]:
    """The net as Keras layers in layer order, with Keras names and kernel layouts.

    Layer numbers are shuffled so that alphabetical order differs from layer order
    (in the real file the 1x1 shortcut ``conv2d_4`` comes after ``conv2d_6``).
    """
    rng = np.random.default_rng(seed)
    leaves = [
        m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.BatchNorm2d)
    ]
    numbers = rng.permutation(len(leaves)) + 1
    layers: list[KerasLayer] = []
    for module, number in zip(leaves, numbers, strict=True):
        state = module.state_dict()
        if isinstance(module, nn.BatchNorm2d):
            name = f"batch_normalization_{number}"
            arrays = [state[k] for k in ("weight", "bias", "running_mean", "running_var")]
            leaf_names = ["gamma", "beta", "moving_mean", "moving_variance"]
        else:
            kind = "conv2d_transpose" if isinstance(module, nn.ConvTranspose2d) else "conv2d"
            name = f"{kind}_{number}"
            arrays = [state["weight"].permute(TORCH_TO_KERAS), state["bias"]]
            leaf_names = ["kernel", "bias"]
        weights = [
            (f"{name}/{leaf}:0", a.detach().numpy().copy())
            for leaf, a in zip(leaf_names, arrays, strict=True)
        ]
        layers.append((name, weights))
    return layers


def keras_weights(net: nn.Module) -> list[tuple[str, np.ndarray]]:
    return [pair for _, weights in keras_layers(net) for pair in weights]


def fnc_v2_keys() -> list[str]:
    """State-dict keys of the authors' FNC v2 ``cResUnet`` (see convert docstring)."""

    def conv(prefix: str) -> list[str]:
        return [f"{prefix}.weight", f"{prefix}.bias"]

    def bn(prefix: str) -> list[str]:
        stats = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        return [f"{prefix}.{s}" for s in stats]

    def conv_block(prefix: str) -> list[str]:
        p = f"{prefix}.conv_block"
        return (
            bn(f"{p}.batchnorm2d_0")
            + conv(f"{p}.conv2d_2")
            + bn(f"{p}.batchnorm2d_3")
            + conv(f"{p}.conv2d_5")
        )

    def residual(prefix: str, shortcut: bool) -> list[str]:
        return conv_block(f"{prefix}.conv_path") + (
            conv(f"{prefix}.id_path.conv2d_1") if shortcut else []
        )

    def up(prefix: str) -> list[str]:
        return conv(f"{prefix}.id_path.up_conv") + conv_block(f"{prefix}.conv_path")

    return [
        *conv("encoder.colorspace"),
        *conv_block("encoder.conv_block"),
        *residual("encoder.residual_block1", True),
        *residual("encoder.residual_block2", True),
        *residual("encoder.bottleneck.residual_block1", True),
        *residual("encoder.bottleneck.residual_block2", False),
        *up("decoder.upconv_block1"),
        *up("decoder.upconv_block2"),
        *up("decoder.upconv_block3"),
        *conv("head.heatmap.conv2d"),
    ]


def fnc_v2_state(net: nn.Module) -> OrderedDict[str, torch.Tensor]:
    ours = net.state_dict()
    keys = fnc_v2_keys()
    assert len(keys) == len(ours)
    for theirs, mine in zip(keys, ours, strict=True):  # the helper itself must follow the layout
        assert theirs.rsplit(".", 1)[1] == mine.rsplit(".", 1)[1]
    return OrderedDict((k, v.clone()) for k, v in zip(keys, ours.values(), strict=True))


def assert_same_params(converted: dict[str, torch.Tensor], net: nn.Module) -> None:
    expected = net.state_dict()
    assert list(converted) == list(expected)
    for key, value in expected.items():
        if not key.endswith("num_batches_tracked"):
            assert converted[key].dtype == value.dtype
            assert torch.equal(converted[key], value), key


def assert_same_outputs(state: dict[str, torch.Tensor], reference: nn.Module) -> None:
    n = infer_n_features_start(reference.state_dict().values())
    converted = build_net("c_resunet", n_features_start=n)
    converted.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(converted.eval()(x), reference.eval()(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- Keras


def test_keras_round_trip_paper_width() -> None:
    net = random_net(16)
    weights = keras_weights(net)
    assert len(weights) == 112  # 21 convs + 3 ConvT (2 each) + 16 BN (4 each)
    state = from_keras_weights(weights)
    assert_same_params(state, net)
    assert_same_outputs(state, net)


def test_keras_accepts_ordered_dict_and_infers_width() -> None:
    net = random_net(4)
    state = from_keras_weights(OrderedDict(keras_weights(net)))
    assert_same_params(state, net)


def _keras_conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference Keras Conv2D, NHWC, 'same' padding, stride 1 (cross-correlation)."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((*x.shape[:3], kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nhwc,co->nhwo", xp[:, a : a + h, b : b + w], kernel[a, b])
    return out + bias


def _keras_conv_transpose_2x2(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference Keras Conv2DTranspose, kernel (2, 2, out, in), stride 2, 'same'."""
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for a in range(2):
        for b in range(2):
            out[:, a::2, b::2] = np.einsum("nhwc,oc->nhwo", x, kernel[a, b])
    return out + bias


def test_kernel_permutation_matches_keras_semantics() -> None:
    """Independent of our inverse: Keras-layout kernels give Keras results in torch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, 3))
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)

    kernel, bias = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    weight = torch.from_numpy(kernel.transpose(KERAS_KERNEL_PERMUTATION).copy())
    got = F.conv2d(x_t, weight, torch.from_numpy(bias), padding=1).permute(0, 2, 3, 1)
    np.testing.assert_allclose(got.numpy(), _keras_conv_same(x, kernel, bias), atol=1e-10)

    kernel, bias = rng.standard_normal((2, 2, 4, 3)), rng.standard_normal(4)  # (kh, kw, out, in)
    weight = torch.from_numpy(kernel.transpose(KERAS_KERNEL_PERMUTATION).copy())
    got = F.conv_transpose2d(x_t, weight, torch.from_numpy(bias), stride=2).permute(0, 2, 3, 1)
    np.testing.assert_allclose(got.numpy(), _keras_conv_transpose_2x2(x, kernel, bias), atol=1e-10)


def test_shape_mismatch_names_the_layer() -> None:
    weights = keras_weights(random_net(4))
    name, array = weights[20]
    weights[20] = (name, np.zeros((*array.shape[:-1], array.shape[-1] + 1), array.dtype))
    with pytest.raises(
        ConversionError, match=rf"#20 '{name}'.*shape mismatch|shape mismatch.*'{name}'"
    ):
        from_keras_weights(weights, n_features_start=4)


def test_missing_extra_bridge_block_is_reported() -> None:
    """A ResUnet (no colorspace stage) is not a c-ResUnet: the first layer already fails."""
    resunet = build_net("resunet", n_features_start=4)
    with pytest.raises(
        ConversionError, match=r"source entry #0 .* our parameter 'colorspace.0.weight'"
    ):
        from_keras_weights(keras_weights(resunet), n_features_start=4)


def test_truncated_source_is_reported() -> None:
    weights = keras_weights(random_net(4))[:-2]  # head conv missing
    with pytest.raises(ConversionError, match=r"ends before our parameter 'head.weight'"):
        from_keras_weights(weights)


def test_swapped_batchnorm_entries_are_reported() -> None:
    weights = keras_weights(random_net(4))
    weights[2], weights[3] = weights[3], weights[2]  # beta before gamma (same shapes)
    with pytest.raises(ConversionError, match=r"'bias' but our parameter 'colorspace.1.weight'"):
        from_keras_weights(weights)


# --------------------------------------------------------------------------- FNC v2


def test_fnc_v2_round_trip() -> None:
    net = random_net(16, seed=3)
    state = from_fnc_v2_state_dict(fnc_v2_state(net))
    assert_same_params(state, net)
    assert_same_outputs(state, net)


def test_fnc_v2_fastai_file_converts(tmp_path: Path) -> None:
    net = random_net(4, seed=5)
    source = tmp_path / "c-ResUnet.pth"
    torch.save({"model": fnc_v2_state(net), "opt": {"state": {}, "param_groups": []}}, source)
    out = convert(source, "auto", tmp_path / "out.ckpt")
    module = CellSegModule.load_from_checkpoint(out, map_location="cpu")
    assert_same_params(dict(module.net.state_dict()), net)


def test_fnc_v2_shape_mismatch_names_their_key() -> None:
    state = fnc_v2_state(random_net(4))
    key = "decoder.upconv_block1.id_path.up_conv.weight"
    state[key] = state[key].transpose(0, 1).clone()
    with pytest.raises(ConversionError, match=rf"'{key}'.*'dec3.up.weight'"):
        from_fnc_v2_state_dict(state)


def test_pickled_whole_model_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "model.pth"
    torch.save(random_net(4), source)
    with pytest.raises(ConversionError, match="state_dict"):
        convert(source, "fnc_v2", tmp_path / "out.ckpt")


# --------------------------------------------------------------------------- checkpoint


def test_checkpoint_loads_in_lightning_and_weights_only(tmp_path: Path) -> None:
    net = random_net(4, seed=2)
    source = tmp_path / "c-ResUnet_state_dict.pkl"
    with source.open("wb") as f:
        pickle.dump(OrderedDict(keras_weights(net)), f)
    out = convert(source, out=tmp_path / "model.ckpt", threshold=0.875)

    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["arch"] == "c_resunet"
    assert raw["hyper_parameters"]["arch_kwargs"] == {"n_features_start": 4}
    assert raw["cellcount_conversion"]["kind"] == "keras_pkl"

    module = CellSegModule.load_from_checkpoint(out, map_location="cpu")
    assert float(module.threshold) == pytest.approx(0.875)
    assert_same_outputs(dict(module.net.state_dict()), net)


def test_threshold_out_of_range(tmp_path: Path) -> None:
    source = tmp_path / "w.pkl"
    with source.open("wb") as f:
        pickle.dump(OrderedDict(keras_weights(random_net(4))), f)
    with pytest.raises(ValueError, match="threshold"):
        convert(source, out=tmp_path / "m.ckpt", threshold=1.5)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "w.pkl"
    with source.open("wb") as f:
        pickle.dump(OrderedDict(keras_weights(random_net(4))), f)
    out = tmp_path / "cli.ckpt"
    assert main([str(source), "--out", str(out), "--threshold", "0.6"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert main([str(tmp_path / "missing.h5"), "--out", str(out)]) == 1
    assert "missing.h5" in capsys.readouterr().err


# --------------------------------------------------------------------------- h5


def _write_keras_h5(path: Path, layers: list[KerasLayer], model_file: bool) -> None:
    """Keras 2 HDF5 layout: layer_names / weight_names attributes (bytes), nested datasets."""
    h5py = pytest.importorskip("h5py")
    # Weightless layers are listed too (input, activations, pools) in the real files.
    all_layers = [("input_1", []), *layers[:3], ("activation_1", []), *layers[3:]]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_file else f
        if model_file:
            f.attrs["model_config"] = b"{}"
        root.attrs["layer_names"] = np.array([n.encode() for n, _ in all_layers])
        root.attrs["backend"] = b"tensorflow"
        for name, weights in all_layers:
            group = root.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=array)


@pytest.mark.parametrize("model_file", [True, False])
def test_read_keras_h5_in_layer_order(tmp_path: Path, model_file: bool) -> None:
    net = random_net(4, seed=4)
    layers = keras_layers(net)
    path = tmp_path / "c-ResUnet.h5"
    _write_keras_h5(path, layers, model_file)

    read = read_keras_h5(path)
    expected = [pair for _, weights in layers for pair in weights]
    assert [name for name, _ in read] == [name for name, _ in expected]
    for (_, got), (_, want) in zip(read, expected, strict=True):
        np.testing.assert_array_equal(got, want)

    assert detect_kind(path) == "keras_h5"
    out = convert(path, out=tmp_path / "m.ckpt")
    module = CellSegModule.load_from_checkpoint(out, map_location="cpu")
    assert_same_params(dict(module.net.state_dict()), net)


def test_h5_without_layer_names_is_refused(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers")
    with pytest.raises(ConversionError, match="layer_names"):
        read_keras_h5(path)


# --------------------------------------------------------------------------- pickle safety


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "c-ResUnet_state_dict.pkl"
    payload = OrderedDict([("conv2d_1/kernel:0", np.zeros((1, 1, 3, 1), np.float32))])
    payload["conv2d_1/bias:0"] = _Exploit(marker)  # type: ignore[assignment]
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle '(posix|os|nt)\.system'"):
        read_pickled_keras_dict(path)
    assert not marker.exists()
    assert main([str(path), "--out", str(tmp_path / "m.ckpt")]) == 1


@pytest.mark.parametrize("protocol", [2, 3, pickle.HIGHEST_PROTOCOL])
def test_pickled_arrays_load_with_every_protocol(tmp_path: Path, protocol: int) -> None:
    weights = OrderedDict(keras_weights(random_net(4))[:4])
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(weights, protocol=protocol))
    loaded = read_pickled_keras_dict(path)
    assert list(loaded) == list(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def test_pickle_of_non_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"conv2d_1/kernel:0": [1.0, 2.0]}))
    with pytest.raises(ConversionError, match="not a float array"):
        read_pickled_keras_dict(path)
