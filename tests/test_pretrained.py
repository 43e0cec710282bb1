"""Shipped models: names resolve to files in the package, float16 files load and count."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.cli.count import main
from cellcount.counter import Counter
from cellcount.inference.checkpoints import load_module, save_checkpoint
from cellcount.inference.predict import predict_probabilities
from cellcount.inference.pretrained import PRETRAINED, pretrained_path, resolve_model


def test_names_resolve_to_shipped_files_and_paths_pass_through() -> None:
    path = resolve_model("pretrained")
    assert path == pretrained_path("pretrained") and path.is_file()
    assert path.stat().st_size < 8e6  # "a few MB"
    assert resolve_model("runs/x/best.ckpt") == Path("runs/x/best.ckpt")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="available: " + ", ".join(PRETRAINED)):
        pretrained_path("resnet-imagenet")


def test_float16_file_is_half_the_size_and_predicts_the_same(tiny_run: Path,
                                                             tmp_path: Path) -> None:  # fmt: skip
    original = tiny_run / "checkpoints" / "best.ckpt"
    module = load_module(original)
    shipped = save_checkpoint(module, tmp_path / "model.ckpt", half=True)
    state = torch.load(shipped, weights_only=True)["state_dict"]
    assert all(v.dtype != torch.float32 for k, v in state.items() if v.ndim > 0)
    reloaded = load_module(shipped)
    assert float(reloaded.threshold) == float(module.threshold)
    image = np.random.default_rng(1).random((64, 96, 3), dtype=np.float32)
    with torch.inference_mode():
        expected = predict_probabilities(module, image)
        got = predict_probabilities(reloaded, image)
    assert np.abs(got - expected).max() < 5e-3


def test_cell_diameter_rescales_the_image_to_the_model_cell_size(tiny_run: Path) -> None:
    counter = Counter.from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", "cpu",
                                      cell_diameter=50.0)  # model: 25 px cells  # fmt: skip
    seen: list[tuple[int, ...]] = []
    counter.module.net.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape))
    result = counter.count(np.random.default_rng(2).random((128, 192, 3), dtype=np.float32))
    assert seen[0][-2:] == (64, 96)  # predicted at half size
    assert result.labels.shape == (128, 192)  # counted at full size
    assert result.cell_diameter == counter.cell_diameter == 50.0


def test_count_cli_with_the_pretrained_model(tmp_path: Path) -> None:
    """The shipped DSB samples (sources the model never saw): sizes estimated within
    25 % of the true median diameter on most images, counts close to the truth."""
    from cellcount import samples
    from cellcount.data.io import read_labels
    from cellcount.data.sizes import median_diameter

    folder = samples.path("dsb2018") / "images"
    out = tmp_path / "out"
    assert main([str(folder), "--model", "pretrained", "--out", str(out), "--quiet"]) == 0
    with (out / "counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(r["model"] == "c_resunet" and not r["error"] for r in rows)
    errors, counts, truths = [], [], []
    for row in rows:
        truth = read_labels(samples.truth_path("dsb2018", Path(row["file"])))
        true_d = median_diameter(truth)
        assert row["diameter_source"] == "auto" and true_d is not None
        errors.append(abs(float(row["cell_diameter"]) / true_d - 1))
        counts.append(int(row["count"]))
        truths.append(int(truth.max()))
    assert sum(e <= 0.25 for e in errors) >= 9, errors
    assert abs(sum(counts) / sum(truths) - 1) < 0.25, (counts, truths)
    assert (out / "overlays" / f"{rows[0]['name']}.png").exists()
    image = folder / f"{rows[0]['name']}.png"
    given = tmp_path / "given"
    assert main([str(image), "--model", "pretrained", "--out", str(given), "--quiet",
                 "--cell-diameter", "25"]) == 0  # fmt: skip
    with (given / "counts.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["diameter_source"] == "given" and float(row["cell_diameter"]) == 25.0
