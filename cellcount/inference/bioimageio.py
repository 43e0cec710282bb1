"""Export a checkpoint as a BioImage Model Zoo package (``cellcount export --format bioimageio``).

The package (a zip, bioimage.io model spec 0.5) holds: TorchScript weights of the net
(RGB (1, 3, H, W) in, logits out), the intensity normalisation as pre-processing
(``scale_range`` over the percentiles the model was trained with, then ``clip`` to
[0, 1]; or a linear scale for the paper's divide-by-dtype-maximum), a sigmoid as
post-processing (the output is the cell probability; the thresholds and the
size-dependent watershed are cellcount's and are recorded in ``config.cellcount``),
a test input and output from a shipped sample, a cover image, documentation with the
paper's citation and the model card's scores, and the cellcount checkpoint itself as
an attachment, so ``cellcount count --model package.zip`` counts with it.

Needs the ``bioimageio`` extra (``pip install 'cellcount[bioimageio]'``).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellcount.data.errors import DataError
from cellcount.inference.checkpoints import load_module
from cellcount.runtime.files import atomic_path
from cellcount.training.module import CellSegModule

CHECKPOINT_NAME = "cellcount.ckpt"
PAPER_DOI = "10.1038/s41598-021-01929-5"
TEST_SIZE = 256


def export_bioimageio(
    ckpt: str | Path, out: str | Path, card: dict[str, Any] | None = None
) -> Path:
    """Write the package zip ``out`` for checkpoint ``ckpt``; returns ``out``.

    Args:
        card: model card fields (name, description, scores) for the documentation.
    """
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError:
        raise DataError("the BioImage Model Zoo export needs the bioimageio extra: "
                        "pip install 'cellcount[bioimageio]'") from None  # fmt: skip
    module = load_module(ckpt)
    out = Path(out)
    with tempfile.TemporaryDirectory() as scratch:
        files = _package_files(module, Path(ckpt), Path(scratch), card or {})
        description = _description(module, files, card or {})
        out.parent.mkdir(parents=True, exist_ok=True)
        save_bioimageio_package(description, output_path=out)
    return out


def _package_files(
    module: CellSegModule, ckpt: Path, folder: Path, card: dict[str, Any]
) -> dict[str, Path]:
    """Weights, test tensors, cover, documentation and the checkpoint, in ``folder``."""
    from cellcount import samples
    from cellcount.counter import Counter
    from cellcount.data.io import read_raw
    from cellcount.evaluation.overlays import render_overlay, save_png

    raw = read_raw(samples.images("dsb2018")[0]).array[:TEST_SIZE, :TEST_SIZE]
    raw = np.repeat(raw[..., None], 3, -1) if raw.ndim == 2 else raw[..., :3]
    counter = Counter(module)
    normalized = counter.normalize(raw)
    logits = LogitsModel(module.net.to(memory_format=torch.contiguous_format)).eval()
    batch = torch.from_numpy(normalized.image.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        traced = torch.jit.trace(logits, batch)
        probability = torch.sigmoid(traced(batch)).numpy().astype(np.float32)
    names = {"weights": "weights.pt", "test_input": "test_input.npy", "test_output":
             "test_output.npy", "cover": "cover.png", "documentation": "README.md"}  # fmt: skip
    files = {key: folder / name for key, name in names.items()}
    traced.save(str(files["weights"]))
    np.save(files["test_input"], raw.transpose(2, 0, 1)[None].astype(np.float32))
    np.save(files["test_output"], probability)
    result = counter.count(raw)
    save_png(render_overlay(result.image, result.labels), files["cover"])
    files["documentation"].write_text(_documentation(module, card, result.count))
    files["checkpoint"] = folder / CHECKPOINT_NAME
    files["checkpoint"].write_bytes(ckpt.read_bytes())
    return files


class LogitsModel(torch.nn.Module):
    """A net's logits, ``(N, 3, H, W)`` -> ``(N, 1, H, W)``, through ``forward_logits``
    when it has one (the Python input checks of ``forward`` do not trace)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, "forward_logits", self.net)(image)


def _preprocessing(module: CellSegModule) -> list[Any]:
    import bioimageio.spec.model.v0_5 as spec

    norm = module.normalization
    steps: list[Any] = [spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))]
    if norm.method == "percentile":
        axes = [spec.AxisId("channel"), spec.AxisId("y"), spec.AxisId("x")]
        steps.append(spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
            axes=axes, min_percentile=norm.low, max_percentile=norm.high)))  # fmt: skip
        steps.append(spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)))
    else:  # dtype maximum of 8-bit data, the paper's images
        steps.append(spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / 255)))
    return steps


def _description(module: CellSegModule, files: dict[str, Path], card: dict[str, Any]) -> Any:
    import bioimageio.spec.model.v0_5 as spec
    from bioimageio.spec._internal.version_type import Version

    multiple = int(getattr(module.net, "input_multiple", 8))
    size = spec.ParameterizedSize(min=64, step=multiple)
    space = [spec.SpaceInputAxis(id=spec.AxisId(a), size=size) for a in ("y", "x")]
    image = spec.InputTensorDescr(
        id=spec.TensorId("image"), description="RGB fluorescence image (grey: 3 equal channels)",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=["r", "g", "b"]), *space],
        test_tensor=spec.FileDescr(source=files["test_input"]),
        preprocessing=_preprocessing(module),
    )  # fmt: skip
    out_space = [spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
        tensor_id=spec.TensorId("image"), axis_id=spec.AxisId(a))) for a in ("y", "x")]  # fmt: skip
    probability = spec.OutputTensorDescr(
        id=spec.TensorId("probability"), description="cell probability in [0, 1]",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=["cell"]), *out_space],
        test_tensor=spec.FileDescr(source=files["test_output"]),
        postprocessing=[spec.SigmoidDescr()],
    )  # fmt: skip
    torch_version = Version(torch.__version__.split("+")[0])
    weights = spec.WeightsDescr(torchscript=spec.TorchscriptWeightsDescr(
        source=files["weights"], pytorch_version=torch_version))  # fmt: skip
    return spec.ModelDescr(
        name=str(card.get("name", f"cellcount {module.hparams['arch']}")).replace("_", "-"),
        description=str(card.get("description", "Fluorescent cell counting (c-ResUnet)"))[:500],
        authors=[spec.Author(name="cellcount developers")],
        cite=[spec.CiteEntry(text="Morelli, Clissa et al., Automating cell counting in "
                             "fluorescent microscopy through deep learning with c-ResUnet, "
                             "Sci Rep 2021", doi=spec.Doi(PAPER_DOI))],
        license=spec.LicenseId("CC-BY-SA-4.0"),
        documentation=spec.FileDescr(source=files["documentation"]),
        covers=[spec.FileDescr(source=files["cover"])],
        inputs=[image], outputs=[probability], weights=weights,
        attachments=[spec.FileDescr(source=files["checkpoint"])],
        tags=["fluorescence", "cell-counting", "nuclei", "neurons", "2d", "semantic-segmentation"],
        config=spec.Config.model_validate({"cellcount": _config(module)}),
    )  # fmt: skip


def _config(module: CellSegModule) -> dict[str, Any]:
    """What cellcount needs beyond the probabilities (plain JSON values)."""
    return json.loads(json.dumps({
        "checkpoint": CHECKPOINT_NAME, "arch": module.hparams["arch"],
        "cell_diameter": float(module.hparams["cell_diameter"]),
        "threshold": float(module.threshold), "count_threshold": module.count_threshold,
        "count_split": module.count_split.as_dict(),
        "normalization": module.normalization.as_dict(),
    }))  # fmt: skip


def _documentation(module: CellSegModule, card: dict[str, Any], test_count: int) -> str:
    scores = card.get("val_counting") or card.get("val") or {}
    lines = [
        f"# {card.get('name', 'cellcount model')}\n",
        str(card.get("description", "c-ResUnet for counting fluorescent cells.")) + "\n",
        "Exported by cellcount. The network outputs, per pixel, the probability of belonging "
        "to a cell. Cells are counted by thresholding it and splitting touching cells with "
        "a distance-transform watershed whose sizes follow the typical cell diameter "
        f"({float(module.hparams['cell_diameter']):g} px at the model's scale); cellcount "
        "does this with `cellcount count --model this_package.zip`.\n",
        f"* counting threshold: {module.count_threshold:.3f} (kneedle: "
        f"{float(module.threshold):.3f})",
        f"* normalisation: {module.normalization.as_dict()}",
        f"* cells counted in the test image: {test_count}",
    ]
    if scores:
        shown = [f"{k} {scores[k]:.3f}" for k in ("f1", "precision", "recall") if k in scores]
        lines.append("* validation: " + ", ".join(shown))
    lines.append(f"\nMethod: Morelli, Clissa et al., Sci Rep 2021, doi:{PAPER_DOI}.\n")
    return "\n".join(lines) + "\n"


def test_package(path: str | Path) -> tuple[str, str]:
    """bioimageio.core's model test of a package: its status (``passed`` or not) and,
    when it failed, the errors."""
    from bioimageio.core import test_model

    summary = test_model(str(path))
    errors = [f"{d.name}: {e.msg}" for d in summary.details for e in d.errors]
    return str(summary.status), "; ".join(errors)


def checkpoint_from_package(path: str | Path, folder: str | Path) -> Path:
    """Extract the cellcount checkpoint attached to a package into ``folder``; its path.

    Raises:
        DataError: the zip is not a cellcount bioimage.io package.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if CHECKPOINT_NAME not in names:
                raise DataError(f"{path} is a zip without a cellcount checkpoint "
                                f"({CHECKPOINT_NAME}); export it with cellcount export "
                                f"--format bioimageio")  # fmt: skip
            target = Path(folder) / f"{path.stem}.ckpt"
            with atomic_path(target) as tmp:
                tmp.write_bytes(archive.read(CHECKPOINT_NAME))
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a readable zip file") from None
    return target
