"""Import the authors' released c-ResUnet weights into ``build_net("c_resunet")``.

Three source formats (docs/method.md#networks and #importing-the-authors-weights):

* ``keras_h5``: the original Keras model or weights file (``c-ResUnet.h5``), read
  with h5py in layer order (:func:`read_keras_h5`);
* ``keras_pkl``: the authors' dump of the same weights, ``c-ResUnet_state_dict.pkl``,
  a pickled ordered dict ``name -> ndarray`` (:func:`read_pickled_keras_dict`, read
  with a restricted unpickler: pickles can run code);
* ``fnc_v2``: a PyTorch state dict of the authors' ``cResUnet`` (FNC v2 package, fastai
  ``{"model": ..., "opt": ...}`` files included, and the earlier cell_counting_torch port).

All three are matched to our state dict POSITIONALLY, which works because
``cellcount.nets.resunet`` registers its modules in Keras layer order (main path
before the 1x1 shortcut, transposed conv before the decoder main path). Every step
is checked: the parameter kind (weight/bias/running_mean/running_var) and the shape
must agree, otherwise a :class:`ConversionError` names the first offending layer.
Positional matching is robust to key naming (``module.`` prefixes, renamed blocks)
but not to a different layer order, which the kind and shape checks catch in
practice (e.g. a 1x1 shortcut where a 3x3 conv is expected).

:func:`convert` writes a Lightning-compatible checkpoint that
``CellSegModule.load_from_checkpoint`` reads and that holds only tensors and plain
Python values (``torch.load(path, weights_only=True)`` works)::

    cellcount convert c-ResUnet.h5 --out c_resunet_paper.ckpt --threshold 0.875
"""

from __future__ import annotations

import codecs
import importlib
import json
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from cellcount.data.normalize import PAPER_NORMALIZATION
from cellcount.inference.checkpoints import checkpoint_dict, save_checkpoint
from cellcount.nets import build_net
from cellcount.runtime.files import file_sha256
from cellcount.training.module import CellSegModule

ARCH = "c_resunet"
"""Registry name of the architecture the released weights belong to."""

KERAS_KERNEL_PERMUTATION = (3, 2, 0, 1)
"""Keras -> PyTorch axis permutation of 4-D kernels.

Conv2D (kh, kw, in, out) -> Conv2d (out, in, kh, kw); Conv2DTranspose
(kh, kw, out, in) -> ConvTranspose2d (in, out, kh, kw): the same permutation.
Neither framework flips the kernel (both cross-correlate), so no spatial flip.
"""

KERAS_TO_TORCH_KIND = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
"""Keras weight name (last path component, ``:0`` stripped) -> PyTorch state-dict suffix."""

TORCH_KINDS = frozenset({"weight", "bias", "running_mean", "running_var"})
SourceKind = Literal["auto", "keras_h5", "keras_pkl", "fnc_v2"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle"})
TORCH_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".ckpt"})

KerasWeights = Sequence[tuple[str, np.ndarray]] | Mapping[str, np.ndarray]


class ConversionError(ValueError):
    """The source weights do not fit our c-ResUnet; the message names the layer."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than numpy arrays in a dict."""


# --------------------------------------------------------------------------- target


def _is_counter(key: str) -> bool:
    """BatchNorm ``num_batches_tracked``: absent from Keras, unused with a fixed momentum."""
    return key.endswith("num_batches_tracked")


def target_state_dict(n_features_start: int = 16) -> OrderedDict[str, torch.Tensor]:
    """Our c-ResUnet state dict (random init), in registration order, counters included."""
    return OrderedDict(build_net(ARCH, n_features_start=n_features_start).state_dict())


@dataclass(frozen=True)
class _SourceEntry:
    """One source array, already in PyTorch layout."""

    name: str
    tensor: torch.Tensor
    kind: str | None  # weight/bias/running_mean/running_var, None when the name says nothing
    source_shape: tuple[int, ...]  # as stored in the file (Keras layout for Keras sources)


def infer_n_features_start(tensors: Iterable[torch.Tensor]) -> int:
    """Width of block 1 = output channels of the first 3x3 conv (colorspace is 1x1).

    ``tensors`` are in PyTorch layout and registration order (ours or the authors').
    """
    for tensor in tensors:
        if tensor.ndim == 4 and tuple(tensor.shape[-2:]) == (3, 3):
            return int(tensor.shape[0])
    raise ConversionError(
        "found no 3x3 convolution kernel in the source, so it is not a c-ResUnet; "
        "check the file (or pass n_features_start explicitly)"
    )


def _describe(entry: _SourceEntry, index: int) -> str:
    shape = tuple(entry.tensor.shape)
    permuted = f", {shape} in PyTorch layout" if shape != entry.source_shape else ""
    return f"source entry #{index} {entry.name!r} (shape {entry.source_shape}{permuted})"


def _check_entry(entry: _SourceEntry, index: int, key: str, ref: torch.Tensor, n: int) -> None:
    """Raise a ConversionError unless ``entry`` can fill our parameter ``key``."""
    expected_kind = key.rsplit(".", 1)[-1]
    where = f"our parameter {key!r} (shape {tuple(ref.shape)}) of c_resunet(n_features_start={n})"
    if entry.kind is not None and entry.kind != expected_kind:
        raise ConversionError(
            f"{_describe(entry, index)} is a {entry.kind!r} but {where} is a "
            f"{expected_kind!r}: the source layers are not in c-ResUnet (Keras) order"
        )
    if tuple(entry.tensor.shape) != tuple(ref.shape):
        raise ConversionError(
            f"shape mismatch at {_describe(entry, index)} -> {where}; "
            "the source is not a c-ResUnet of this width or its layers are in another order"
        )
    if not entry.tensor.is_floating_point():
        raise ConversionError(f"{_describe(entry, index)} has dtype {entry.tensor.dtype}")


def _count_error(entries: Sequence[_SourceEntry], params: Sequence[str]) -> str:
    if len(entries) > len(params):
        extra = _describe(entries[len(params)], len(params))
        return f"the source has {len(entries) - len(params)} more entries, first extra: {extra}"
    return f"the source ends before our parameter {params[len(entries)]!r}"


def _assign(
    entries: Sequence[_SourceEntry], n_features_start: int | None
) -> dict[str, torch.Tensor]:
    """Zip source entries with our parameters/buffers in order, checking each step."""
    if n_features_start is None:
        n_features_start = infer_n_features_start(entry.tensor for entry in entries)
    n = n_features_start
    target = target_state_dict(n)
    params = [key for key in target if not _is_counter(key)]
    converted: dict[str, torch.Tensor] = {}
    # Not strict: a length mismatch is reported below, after the first misfit layer.
    for index, (entry, key) in enumerate(zip(entries, params, strict=False)):
        _check_entry(entry, index, key, target[key], n)
        converted[key] = entry.tensor.detach().to(dtype=target[key].dtype, copy=True)
    if len(entries) != len(params):
        raise ConversionError(
            f"the source has {len(entries)} weight entries but c_resunet(n_features_start={n}) "
            f"has {len(params)}: {_count_error(entries, params)}"
        )
    # Counters start at 0: with a fixed BN momentum PyTorch never reads them.
    return {
        key: converted[key] if key in converted else torch.zeros_like(ref)
        for key, ref in target.items()
    }


# --------------------------------------------------------------------------- FNC v2


def _torch_kind(key: str) -> str | None:
    suffix = key.rsplit(".", 1)[-1]
    return suffix if suffix in TORCH_KINDS else None


def from_fnc_v2_state_dict(
    state: Mapping[str, torch.Tensor], n_features_start: int | None = None
) -> dict[str, torch.Tensor]:
    """Map the authors' PyTorch c-ResUnet state dict onto our ``c_resunet`` keys.

    Assumed source layout (FNC v2 ``fluocells.models.cResUnet``; the cell_counting_torch
    port differs only in the head, ``head.conv2d``), in registration order, each BN
    giving ``weight, bias, running_mean, running_var[, num_batches_tracked]`` and each
    conv ``weight, bias``. ``CB(p)`` = ``p.conv_block.{batchnorm2d_0, conv2d_2,
    batchnorm2d_3, conv2d_5}`` (BN, ELU, conv, BN, ELU, conv).

    ========================================  =================================  ============
    their key prefix                          ours                               tensor
    ========================================  =================================  ============
    encoder.colorspace                        colorspace.0                       conv 3->1
    CB(encoder.conv_block)                    colorspace.1, enc1.{0,1,3}         BN(1), ...
    CB(encoder.residual_block1.conv_path)     enc2.main.{0,1}.{0,2}              pre-act x2
    encoder.residual_block1.id_path.conv2d_1  enc2.shortcut                      1x1 conv
    ...residual_block2                        enc3                               same
    encoder.bottleneck.residual_block1        bridge.0 (+ id_path.conv2d_1)      5x5
    encoder.bottleneck.residual_block2        bridge.1 (identity shortcut)       5x5
    decoder.upconv_blockK.id_path.up_conv     dec{4-K}.up                        ConvT 2x2
    CB(decoder.upconv_blockK.conv_path)       dec{4-K}.main                      pre-act x2
    head.heatmap.conv2d                       head                               conv 16->1
    ========================================  =================================  ============

    Their ``conv_block`` starts with BN(1)+ELU, which in our net closes the colorspace
    stage: the flattened sequence is identical. The head conv maps directly: their
    ``Heatmap2d(n_out=2)`` outputs ``cat([1-p, p])`` from ONE 16->1 conv, so
    channel 1 of theirs equals ``sigmoid(our logits)``.

    Matching is positional (``num_batches_tracked`` dropped) with a kind and shape
    check per entry, so key names do not matter. Args: ``state`` maps names to
    float tensors; ``n_features_start`` is inferred from the first 3x3 conv when None.
    Returns our net's full state dict (float32 CPU tensors, counters zeroed),
    loadable with ``net.load_state_dict(..., strict=True)``.
    """
    entries = []
    for key, value in state.items():
        if _is_counter(key):
            continue
        if not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"state dict entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        tensor = value.detach().cpu()
        entries.append(_SourceEntry(key, tensor, _torch_kind(key), tuple(tensor.shape)))
    return _assign(entries, n_features_start)


# --------------------------------------------------------------------------- Keras


def _keras_kind(name: str) -> str | None:
    """``'conv2d_1/kernel:0'`` -> ``'weight'``; None for names we cannot interpret."""
    leaf = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return KERAS_TO_TORCH_KIND.get(leaf)


def _keras_to_torch(name: str, array: np.ndarray) -> torch.Tensor:
    """Permute 4-D kernels to the PyTorch layout; 1-D vectors pass through."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise ConversionError(f"Keras weight {name!r} has dtype {array.dtype}, expected floats")
    if array.ndim == 4:
        array = array.transpose(KERAS_KERNEL_PERMUTATION)
    elif array.ndim != 1:
        raise ConversionError(
            f"Keras weight {name!r} has shape {array.shape}: expected a 4-D conv kernel "
            "or a 1-D bias/BatchNorm vector (Dense layers do not belong to c-ResUnet)"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def from_keras_weights(
    weights: KerasWeights, n_features_start: int | None = None
) -> dict[str, torch.Tensor]:
    """Map Keras c-ResUnet weights, in Keras layer order, onto our ``c_resunet`` keys.

    ``weights``: ``(name, array)`` pairs or an ordered mapping, e.g. from
    :func:`read_keras_h5` or :func:`read_pickled_keras_dict`. Conv kernels
    ``(kh, kw, in, out)`` and Conv2DTranspose kernels ``(kh, kw, out, in)`` are
    permuted with :data:`KERAS_KERNEL_PERMUTATION`; BatchNorm ``gamma, beta,
    moving_mean, moving_variance`` become ``weight, bias, running_mean, running_var``.
    Names are only used for the kind check and error messages.

    Returns our net's full state dict (float32, counters zeroed). Raises
    :class:`ConversionError` naming the first layer that does not fit.
    """
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    entries = [
        _SourceEntry(
            str(name),
            _keras_to_torch(str(name), array),
            _keras_kind(str(name)),
            tuple(np.shape(array)),
        )
        for name, array in items
    ]
    return _assign(entries, n_features_start)


def _decode_names(raw: Iterable[Any]) -> list[str]:
    """h5 name attributes hold bytes (Keras 2) or str."""
    return [item.decode("utf8") if isinstance(item, bytes) else str(item) for item in raw]


def read_keras_h5(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Read the weights of a Keras 2 HDF5 model or weights file, in layer order.

    Uses the ``model_weights`` group when present (full model files), else the root
    (``save_weights`` files). Layers come in the order of the ``layer_names``
    attribute (= ``model.layers``, NOT alphabetical: the 1x1 shortcut conv of a
    residual block follows the main path there), weights in each layer's
    ``weight_names`` order. Returns ``[(weight_name, array), ...]`` with arrays in
    Keras layout (float32).
    """
    try:
        import h5py
    except ImportError as err:
        raise ImportError("reading Keras .h5 files needs h5py: pip install h5py") from err
    path = Path(path)
    out: list[tuple[str, np.ndarray]] = []
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        if "layer_names" not in root.attrs:
            raise ConversionError(
                f"{path}: no 'layer_names' attribute, so this is not a Keras 2 HDF5 model/"
                "weights file (Keras 3 '.weights.h5' is not supported: load the model in "
                "Keras and save it with model.save('model.h5'), or dump its weights to a "
                "pickled {name: array} dict)"
            )
        for layer_name in _decode_names(root.attrs["layer_names"]):
            group = root[layer_name]
            for weight_name in _decode_names(group.attrs.get("weight_names", [])):
                out.append((weight_name, np.asarray(group[weight_name])))
    return out


# --------------------------------------------------------------------------- safe pickle


def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy >= 1.26), else the old ``numpy.core`` path."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # pragma: no cover - numpy < 1.26
        return importlib.import_module(f"numpy.core.{submodule}")


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a weights pickle needs: containers and ndarray reconstruction."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "dict"): dict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Protocol-2 pickles made by Python 3 store bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }
    # Pickles from numpy 1.x name numpy.core, from numpy 2.x numpy._core.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in :func:`_allowed_globals`."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to unpickle '{module}.{name}': a weights pickle "
                "may only hold a dict of numpy arrays, and anything else can run code. "
                "Use the authors' c-ResUnet_state_dict.pkl, or the .h5 file with kind "
                "'keras_h5'."
            ) from None


def read_pickled_keras_dict(path: str | Path) -> OrderedDict[str, np.ndarray]:
    """Safely read the authors' ``c-ResUnet_state_dict.pkl``: ``{keras_name: ndarray}``.

    Only ``dict``/``OrderedDict`` and numpy array reconstruction are allowed; any other
    global (``os.system``, arbitrary classes) raises :class:`UnsafePickleError`
    before anything is called. Returns the arrays in stored order (Keras layout).
    """
    path = Path(path)
    with path.open("rb") as f:
        obj = _ArraysOnlyUnpickler(f, path).load()
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a pickled dict name -> array, got {type(obj)}")
    result: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ConversionError(f"{path}: entry {name!r} is not a float array ({type(value)})")
        result[str(name)] = value
    return result


# --------------------------------------------------------------------------- torch files


def _unwrap_state_dict(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    """A bare state dict, or the one under fastai's "model" / Lightning's "state_dict"."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        if all(isinstance(value, torch.Tensor) for value in obj.values()):
            return obj
    raise ConversionError(
        f"{path}: expected a state dict (or a dict with a 'model'/'state_dict' entry), "
        f"got {type(obj).__name__}; re-save the weights with torch.save(model.state_dict(), path)"
    )


def read_torch_state_dict(path: str | Path) -> Mapping[str, torch.Tensor]:
    """Load a PyTorch weights file without executing code (``weights_only=True``)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConversionError(
            f"{path}: not a plain weights file ({err}). A pickled model or fastai Learner "
            "cannot be loaded safely: in the authors' environment run "
            "torch.save(model.state_dict(), 'weights.pth') and convert that."
        ) from err
    return _unwrap_state_dict(obj, path)


# --------------------------------------------------------------------------- convert


def detect_kind(path: Path) -> str:
    """Guess the source format from the file content, then from its suffix."""
    with path.open("rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE:
        return "keras_h5"
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return "keras_pkl"
    if zipfile.is_zipfile(path) or suffix in TORCH_SUFFIXES:
        return "fnc_v2"
    raise ConversionError(
        f"{path}: cannot tell the weight format; pass kind='keras_h5', 'keras_pkl' or 'fnc_v2'"
    )


def load_source_weights(
    source: str | Path, kind: str = "auto", n_features_start: int | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Read ``source`` and map it onto our net: returns (our net state dict, resolved kind)."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such weights file")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(SOURCE_KINDS)}")
    resolved = detect_kind(source) if kind == "auto" else kind
    if resolved == "keras_h5":
        state = from_keras_weights(read_keras_h5(source), n_features_start)
    elif resolved == "keras_pkl":
        state = from_keras_weights(read_pickled_keras_dict(source), n_features_start)
    else:
        state = from_fnc_v2_state_dict(read_torch_state_dict(source), n_features_start)
    return state, resolved


def _plain(value: Any) -> Any:
    """Hyperparameters as JSON-plain Python values (weights_only-loadable)."""
    return json.loads(json.dumps(value))


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")


def build_checkpoint(net_state: Mapping[str, torch.Tensor], threshold: float) -> dict[str, Any]:
    """Lightning-style checkpoint dict for a ``c_resunet`` CellSegModule.

    ``net_state`` is our net's state dict (keys without the ``net.`` prefix).
    The ``threshold`` (probability, in (0, 1)) is stored as the module buffer and
    as a hyperparameter.
    """
    _check_threshold(threshold)
    n = infer_n_features_start(net_state.values())
    # The authors divided images by the dtype maximum: record it, so counting does too.
    module = CellSegModule(arch=ARCH, arch_kwargs={"n_features_start": n}, threshold=threshold,
                           normalization=PAPER_NORMALIZATION.as_dict())  # fmt: skip
    module.net.load_state_dict(net_state, strict=True)
    checkpoint = checkpoint_dict(module)
    checkpoint["hyper_parameters"] = _plain(checkpoint["hyper_parameters"])
    return checkpoint


def convert(
    source: str | Path,
    kind: str = "auto",
    out: str | Path | None = None,
    threshold: float = 0.5,
    n_features_start: int | None = None,
) -> Path:
    """Convert released weights into a checkpoint for ``CellSegModule.load_from_checkpoint``.

    Args:
        source: the weights file (``.h5``, ``.pkl``, or a PyTorch ``.pth``).
        kind: "auto" (HDF5 signature, then suffix), "keras_h5", "keras_pkl" or "fnc_v2".
        out: checkpoint to write; default ``source`` with suffix ``.ckpt``.
        threshold: detection threshold stored in the checkpoint, in (0, 1).
        n_features_start: width of block 1; inferred from the weights when None.

    Returns the written path. The file also records the source name, kind and
    SHA-256 under ``"cellcount_conversion"`` (ignored by Lightning).
    """
    source = Path(source)
    out = source.with_suffix(".ckpt") if out is None else Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"{out}: the output would overwrite the source; pick another --out")
    _check_threshold(threshold)  # fail before reading a large file
    state, resolved = load_source_weights(source, kind, n_features_start)
    checkpoint = build_checkpoint(state, threshold)
    checkpoint["cellcount_conversion"] = {
        "source": source.name,
        "kind": resolved,
        "sha256": file_sha256(source),
    }
    return save_checkpoint(checkpoint, out)
