"""Deployment export: ONNX / TorchScript parity at a non-export size, metadata, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cellcount.cli.export import main
from cellcount.inference.checkpoints import save_checkpoint
from cellcount.inference.export import (
    PARITY_TOLERANCE,
    ParityError,
    check_parity,
    export_model,
    read_export_metadata,
    run_exported,
)
from cellcount.training.module import CellSegModule

THRESHOLD = 0.625
EXPORT_SIZE = (32, 48)

needs_onnx = pytest.mark.skipif(
    any(
        __import__("importlib").util.find_spec(m) is None
        for m in ("onnx", "onnxscript", "onnxruntime")
    ),
    reason="ONNX export needs onnx, onnxscript and onnxruntime",
)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-feature c_resunet checkpoint with random BN statistics, saved without a Trainer."""
    torch.manual_seed(0)
    module = CellSegModule(
        arch="c_resunet", arch_kwargs={"n_features_start": 4}, threshold=THRESHOLD
    )
    with torch.no_grad():
        for name, buffer in module.net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    return save_checkpoint(module, path)


@pytest.fixture(scope="module")
def onnx_file(tiny_ckpt: Path) -> Path:
    return export_model(tiny_ckpt, "onnx", tiny_ckpt.with_name("tiny.onnx"), *EXPORT_SIZE)


@pytest.fixture(scope="module")
def torchscript_file(tiny_ckpt: Path) -> Path:
    return export_model(tiny_ckpt, "torchscript", tiny_ckpt.with_name("tiny.ts.pt"), *EXPORT_SIZE)


def _check_exported(tiny_ckpt: Path, exported: Path) -> None:
    meta = read_export_metadata(exported)
    assert float(meta["threshold"]) == pytest.approx(THRESHOLD)
    assert meta["arch"] == "c_resunet"
    assert meta["input_multiple"] == "8"
    assert meta["export_size"] == "32x48"
    assert float(meta["cell_diameter"]) == pytest.approx(40.0)
    # Default parity size differs from the export size; then an explicit batch/size change.
    assert check_parity(tiny_ckpt, exported) < PARITY_TOLERANCE
    assert check_parity(tiny_ckpt, exported, n=3, height=64, width=24) < PARITY_TOLERANCE
    probabilities = run_exported(exported, torch.rand(1, 3, 16, 16))
    assert probabilities.shape == (1, 1, 16, 16)
    assert probabilities.dtype == np.float32
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0


@needs_onnx
def test_onnx_export_parity_and_metadata(tiny_ckpt: Path, onnx_file: Path) -> None:
    _check_exported(tiny_ckpt, onnx_file)
    import onnx

    model = onnx.load(str(onnx_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1] == 3
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # batch, H, W symbolic


def test_torchscript_export_parity_and_metadata(tiny_ckpt: Path, torchscript_file: Path) -> None:
    _check_exported(tiny_ckpt, torchscript_file)
    with pytest.warns(FutureWarning):  # torch.jit is deprecated upstream
        loaded = torch.jit.load(str(torchscript_file))
    assert float(loaded.threshold) == pytest.approx(THRESHOLD)


def test_parity_failure_is_reported(
    tiny_ckpt: Path, torchscript_file: Path, tmp_path: Path
) -> None:
    other = CellSegModule(
        arch="c_resunet", arch_kwargs={"n_features_start": 4}, threshold=THRESHOLD
    )
    other_ckpt = tmp_path / "other.ckpt"
    torch.save(
        {
            "state_dict": other.state_dict(),
            "hyper_parameters": dict(other.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        other_ckpt,
    )
    with pytest.raises(ParityError, match="max"):
        check_parity(other_ckpt, torchscript_file)


def test_export_size_must_be_a_multiple(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        export_model(tiny_ckpt, "torchscript", tmp_path / "x.pt", height=30, width=32)


@pytest.mark.parametrize(
    "fmt",
    [pytest.param("onnx", marks=needs_onnx), "torchscript"],
)
def test_cli(tiny_ckpt: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"cli.{fmt}"
    argv = [
        "--ckpt",
        str(tiny_ckpt),
        "--format",
        fmt,
        "--out",
        str(out),
        "--height",
        "32",
        "--width",
        "32",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and str(out) in printed and "parity" in printed


def test_cli_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ckpt", str(tmp_path / "none.ckpt"), "--format", "torchscript"]) == 1
    assert "none.ckpt" in capsys.readouterr().err
