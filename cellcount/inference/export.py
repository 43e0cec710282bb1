"""Export a trained checkpoint for deployment: ONNX or TorchScript.

The exported model is the net followed by a sigmoid:

* input ``image``: float32 ``(N, 3, H, W)``, RGB in [0, 1], H and W multiples of
  ``input_multiple`` (8 for the paper nets; pad and crop back otherwise);
* output ``probability``: float32 ``(N, 1, H, W)`` in [0, 1], cell probability.

Batch, height and width are dynamic. The model's detection threshold and
architecture travel with the file (:func:`read_export_metadata`), so a deployment
needs only the exported file: ``mask = probability > float(meta["threshold"])``.

Backends (checked with torch 2.15, onnx 1.23, onnxscript 0.7, onnxruntime 1.32):

* ONNX uses the ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``,
  needs ``onnxscript``) at opset :data:`ONNX_OPSET`, its native opset range, so no
  version conversion runs. Height and width are declared as ``8*k`` symbolic sizes.
  Metadata are ONNX ``metadata_props``. Everything runs offline.
* TorchScript uses ``torch.jit.trace`` (the nets' Python-side input checks do not
  script); the trace is shape-generic for these conv/pool/ConvT/cat graphs, which
  :func:`check_parity` verifies at another size. Metadata are the extra file
  :data:`TORCHSCRIPT_METADATA_FILE` plus a ``threshold`` buffer. ``torch.jit`` is
  deprecated upstream (FutureWarning, silenced here); prefer ONNX for new deployments.

CLI::

    cellcount export --ckpt model.ckpt --format onnx [--out model.onnx]
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from cellcount.inference.checkpoints import load_module
from cellcount.nets.base import round_up
from cellcount.runtime.files import atomic_path
from cellcount.training.module import CellSegModule

ExportFormat = Literal["onnx", "torchscript"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
ONNX_OPSET = 18
PARITY_TOLERANCE = 1e-4
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
TORCHSCRIPT_METADATA_FILE = "cellcount_metadata.json"


class ParityError(RuntimeError):
    """The exported model's probabilities differ from PyTorch's by more than the tolerance."""


class ProbabilityModel(nn.Module):
    """A segmentation net plus a sigmoid, with the detection threshold as a buffer.

    ``(N, 3, H, W)`` float RGB in [0, 1] -> ``(N, 1, H, W)`` probabilities in [0, 1].
    Calls the net's ``forward_logits`` when it has one: the Python input checks of
    ``SegmentationNet.forward`` would be frozen into a trace at the export size.
    """

    def __init__(self, net: nn.Module, threshold: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        body = getattr(self.net, "forward_logits", self.net)
        return torch.sigmoid(body(image))


def probability_model(module: CellSegModule) -> ProbabilityModel:
    """The module's net + sigmoid, CPU, eval mode, standard (contiguous) weight layout.

    The loader keeps weights channels-last for fast CPU inference; the exporters
    trace the plain layout, which every runtime accepts.
    """
    net = module.net.to(memory_format=torch.contiguous_format)
    return ProbabilityModel(net, float(module.threshold)).eval()


def input_multiple(module: CellSegModule) -> int:
    """H and W of an input must be multiples of this (8 for the paper nets)."""
    return int(getattr(module.net, "input_multiple", 1))


def export_metadata(module: CellSegModule, height: int, width: int) -> dict[str, str]:
    """String metadata stored in the exported file (ONNX metadata_props are strings)."""
    multiple = input_multiple(module)
    meta = {
        "threshold": repr(float(module.threshold)),
        "arch": str(module.hparams["arch"]),
        "arch_kwargs": json.dumps(dict(module.hparams.get("arch_kwargs") or {})),
        "input_multiple": str(multiple),
        "input": f"{INPUT_NAME}: float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of "
        f"{multiple}",
        "output": f"{OUTPUT_NAME}: float32 (N, 1, H, W) cell probability in [0, 1]; "
        "cells = probability > threshold",
        "export_size": f"{height}x{width}",
        # How raw images become the [0, 1] input (cellcount.data.normalize).
        "normalization": json.dumps(module.normalization.as_dict()),
        "count_threshold": repr(module.count_threshold),
        # Split profile of counting (cellcount.evaluation.postprocess.SplitProfile).
        "count_split": json.dumps(module.count_split.as_dict()),
    }
    if (
        "cell_diameter" in module.hparams
    ):  # scales the post-processing (cellcount.evaluation.postprocess)
        meta["cell_diameter"] = repr(float(module.hparams["cell_diameter"]))
    return meta


def _check_size(height: int, width: int, multiple: int) -> None:
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"export size {height}x{width} must be positive multiples of {multiple}; "
            f"try {round_up(max(height, 1), multiple)}x{round_up(max(width, 1), multiple)}"
        )


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch.jit still works but warns that it is deprecated on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch\\.jit.*")
        yield


def _export_onnx(
    model: ProbabilityModel, example: torch.Tensor, out: Path, meta: dict[str, str], multiple: int
) -> None:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        from torch.export import Dim
    except ImportError as err:
        raise ImportError(
            "ONNX export needs onnx and onnxscript: pip install onnx onnxscript"
        ) from err
    # H = multiple * k keeps every max-pool exact, so the exporter can prove the
    # decoder's concatenations line up for all sizes.
    height_k = Dim("height_div_" + str(multiple))
    width_k = Dim("width_div_" + str(multiple))
    dynamic = {"image": {0: Dim("batch"), 2: multiple * height_k, 3: multiple * width_k}}
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic,
        opset_version=ONNX_OPSET,
        external_data=False,  # one self-contained file (the nets are far below 2 GB)
        verbose=False,
    )
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    program.model.metadata_props.update(meta)
    with atomic_path(out) as tmp:
        program.save(str(tmp))


def _export_torchscript(
    model: ProbabilityModel, example: torch.Tensor, out: Path, meta: dict[str, str]
) -> None:
    with _quiet_jit(), torch.no_grad():
        traced = torch.jit.trace(model, example)
        extra = {TORCHSCRIPT_METADATA_FILE: json.dumps(meta)}
        with atomic_path(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files=extra)


def export_model(
    ckpt: str | Path,
    fmt: ExportFormat,
    out: str | Path,
    height: int = 512,
    width: int = 512,
) -> Path:
    """Export a checkpoint's net + sigmoid to ONNX or TorchScript; returns ``out``.

    ``height``/``width`` set the example input used for tracing (multiples of the
    net's ``input_multiple``); the exported model accepts any batch and any
    multiple-of-8 size. The threshold and architecture are stored as metadata.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    module = load_module(ckpt)
    multiple = input_multiple(module)
    _check_size(height, width, multiple)
    model = probability_model(module)
    example = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    meta = export_metadata(module, height, width)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        _export_onnx(model, example, out, meta, multiple)
    else:
        _export_torchscript(model, example, out, meta)
    return out


def exported_format(path: str | Path) -> ExportFormat:
    """TorchScript files are zip archives; anything else is taken to be ONNX protobuf."""
    return "torchscript" if zipfile.is_zipfile(path) else "onnx"


def read_export_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored by :func:`export_model` (``threshold``, ``arch``, ...)."""
    path = Path(path)
    if exported_format(path) == "torchscript":
        files = {TORCHSCRIPT_METADATA_FILE: ""}
        with _quiet_jit():
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        raw = files[TORCHSCRIPT_METADATA_FILE]
        return dict(json.loads(raw)) if raw else {}
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}


def run_exported(path: str | Path, images: torch.Tensor) -> np.ndarray:
    """Probabilities ``(N, 1, H, W)`` float32 from an exported model (CPU)."""
    path = Path(path)
    if exported_format(path) == "torchscript":
        with _quiet_jit():
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return np.asarray(loaded(images).numpy())
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("running ONNX models needs onnxruntime: pip install onnxruntime") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images.numpy()}
    return np.asarray(session.run(None, feed)[0])


def _parity_size(meta: dict[str, str], multiple: int) -> tuple[int, int]:
    """A size unlike the export size: proves the exported axes really are dynamic."""
    export_h, export_w = (int(v) for v in meta.get("export_size", "512x512").split("x"))
    height = round_up(max(export_h // 2, 1), multiple)
    width = round_up(max(export_w // 2, 1), multiple) + multiple  # non-square even if export is
    if height == export_h:
        height += multiple
    return height, width


def check_parity(
    ckpt: str | Path,
    exported: str | Path,
    n: int = 2,
    height: int | None = None,
    width: int | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Max abs difference of probabilities, PyTorch vs exported, on random inputs.

    Inputs are ``n`` uniform RGB images in [0, 1] (seeded). The default size differs
    from the export size (read from the metadata) in both height and width.
    Raises :class:`ParityError` if the difference exceeds ``tolerance``.
    """
    module = load_module(ckpt)
    multiple = input_multiple(module)
    default_h, default_w = _parity_size(read_export_metadata(exported), multiple)
    height, width = height or default_h, width or default_w
    _check_size(height, width, multiple)
    images = torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = probability_model(module)(images).numpy()
    got = run_exported(exported, images)
    if got.shape != expected.shape:
        raise ParityError(f"{exported}: output shape {got.shape}, expected {expected.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(
            f"{exported}: max |p_torch - p_exported| = {diff:.3g} > {tolerance:g} on "
            f"{n}x3x{height}x{width} inputs; re-export, or report the torch/onnx versions"
        )
    return diff
