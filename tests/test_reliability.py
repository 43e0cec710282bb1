"""Reliability: NaN losses, unsafe checkpoints, exact resume, reproducibility, odd data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import cellcount.training.module
from cellcount.data.datamodule import CellDataModule
from cellcount.data.io import DataError
from cellcount.data.options import DataOptions
from cellcount.inference.checkpoints import load_module
from tests.conftest import TINY_TRAIN_OVERRIDES, Composer

ROOT = Path(__file__).resolve().parents[1]


def _train(output_dir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cellcount.train", *TINY_TRAIN_OVERRIDES,
               f"paths.output_dir={output_dir}", *overrides]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    compose_train: Composer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellcount.training.train import train

    real = cellcount.training.module.weighted_bce
    calls = {"train": 0}

    def nan_in_second_epoch(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = real(*args, **kwargs)
        if torch.is_grad_enabled():  # training steps only (validation runs without grad)
            calls["train"] += 1
            if calls["train"] > 2:  # epoch 0 has two training batches
                return loss * float("nan")
        return loss

    monkeypatch.setattr(cellcount.training.module, "weighted_bce", nan_in_second_epoch)
    cfg = compose_train(
        *TINY_TRAIN_OVERRIDES, "trainer.max_epochs=3", "trainer.enable_progress_bar=false"
    )
    with pytest.raises(FloatingPointError, match=r"train loss is nan at epoch 1.*lower the learn"):
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = _state(last)
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > pwned.txt",))


def test_foreign_pickles_are_refused(tiny_run: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = _Payload()
    torch.save(checkpoint, tmp_path / "tampered.ckpt")
    with pytest.raises(ValueError, match=r"refusing to load .*tampered\.ckpt"):
        load_module(tmp_path / "tampered.ckpt")
    assert not (tmp_path / "pwned.txt").exists()
    # Every entry point that reads a checkpoint goes through the same loader.
    from cellcount.cli.count import main as count_main
    from cellcount.cli.export import main as export_main

    assert export_main(["--ckpt", str(tmp_path / "tampered.ckpt"), "--format", "onnx"]) == 1
    from cellcount import samples

    image = str(samples.images("dsb2018")[0])
    assert count_main([image, "--model", str(tmp_path / "tampered.ckpt"), "--out",
                       str(tmp_path / "o"), "--quiet"]) == 2  # fmt: skip
    assert not (tmp_path / "o" / "counts.csv").exists()
    assert not (tmp_path / "pwned.txt").exists()
    # Random, text and truncated files are corrupt, not dangerous.
    whole = (tiny_run / "checkpoints" / "best.ckpt").read_bytes()
    rng = np.random.default_rng(0)  # some random blobs make the unpickler raise IndexError
    blobs = [(f"random{i}", rng.bytes(4096)) for i in range(64)]
    for name, content in [("junk", b"not a checkpoint"), *blobs,
                          ("truncated", whole[: len(whole) // 2])]:  # fmt: skip
        (tmp_path / f"{name}.ckpt").write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}\.ckpt is corrupt or not a PyTorch"):
            load_module(tmp_path / f"{name}.ckpt")


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    def run(folder: str, epochs: int, *extra: str) -> subprocess.CompletedProcess[str]:
        return _train(tmp_path, f"trainer.max_epochs={epochs}",
                      f"hydra.run.dir={tmp_path / folder}", "test=false", *extra)  # fmt: skip

    assert run("a", 3).returncode == 0
    assert run("b", 1).returncode == 0  # "killed" after epoch 1...
    resumed = run("b", 3, "skip_finished=false")  # ...and the command run again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    a = _state(tmp_path / "a" / "checkpoints" / "last.ckpt")
    b = _state(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"


def test_same_seed_gives_identical_results(tmp_path: Path) -> None:
    runs = []
    for name in ("x", "y"):
        result = _train(tmp_path, f"hydra.run.dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    for key in ("val_loss", "threshold", "val", "test"):
        assert runs[0][key] == runs[1][key]


def _write(root: Path, name: str, mask: np.ndarray) -> None:
    image = np.zeros((*mask.shape, 3), np.uint8)
    image[mask > 0] = (200, 180, 20)
    for sub, array in (("images", image), ("masks", mask)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / sub / f"{name}.png")


def test_empty_and_full_masks_and_small_images_train(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    _write(root, "empty", np.zeros((40, 48), np.uint8))
    _write(root, "full", np.full((64, 64), 255, np.uint8))
    _write(root, "cells", np.pad(np.full((20, 20), 255, np.uint8), 22))
    dm = CellDataModule(DataOptions(
        str(root), crop_size=64, crop_step=64, num_workers=0, batch_size=3,
        val_fraction=0.4, test_fraction=0, cache_dir=str(tmp_path / "c"),
    ))  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    items = [
        dm.datasets[part][i] for part in ("train", "val") for i in range(len(dm.datasets[part]))
    ]
    assert len(items) == 3  # one crop each; the 40x48 image was padded to 64x64
    for item in items:
        assert item["image"].shape == (3, 64, 64)
        assert torch.isfinite(item["weight"]).all() and item["weight"].min() >= 1


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"images holds no images \(\.png"):
        CellDataModule(DataOptions(str(tmp_path))).samples()


def test_hydra_entry_points_report_fixable_errors_in_one_line(tmp_path: Path) -> None:
    """Bad data or options: one line naming the key and the fix, exit status 2; the
    traceback only with HYDRA_FULL_ERROR=1."""
    cases = [
        (["train", "data.crop_size=-5", "trainer=debug", "logger=csv"], "data.crop_size=-5"),
        (["train", "trainer.max_epochs=-2", "logger=csv"], "trainer: `max_epochs`"),
        (["evaluate"], "ckpt=PATH.ckpt or ckpt=pretrained"),
    ]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    for args, expected in cases:
        result = subprocess.run([sys.executable, "-m", "cellcount", *args,
                                 f"paths.output_dir={tmp_path}"], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=300)  # fmt: skip
        assert result.returncode == 2, result.stderr[-500:]
        lines = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(lines) == 1 and expected in lines[0], result.stderr[-500:]
        assert "Traceback" not in result.stderr
    failed = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/results.json")]
    assert len(failed) == 2 and all(r["status"] == "failed" and r["error"] for r in failed)


def test_a_checkpoint_without_a_cell_size_says_so() -> None:
    from cellcount.training.module import CellSegModule

    with pytest.raises(ValueError, match="cell_diameter=0 is not a cell size"):
        CellSegModule(arch_kwargs={"n_features_start": 4}, cell_diameter=0)


def test_a_stack_reports_its_planes(tmp_path: Path) -> None:
    import tifffile

    from cellcount.data.io import read_image

    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 3, 4, 32, 48), np.uint16))
    with pytest.raises(DataError, match=r"stack of 2x3x4 planes of 48x32 px.*Z Project"):
        read_image(tmp_path / "s.tif")


def test_config_typos_name_the_key(compose_train: Composer) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="crop_sise"):
        compose_train("data.crop_sise=256")
    with pytest.raises(ConfigCompositionException, match="no_wn"):
        compose_train("ablation=no_wn")


def test_resume_refuses_an_unsafe_last_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    from cellcount.inference.checkpoints import CheckpointError
    from cellcount.training.fit import resume_path

    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = _Payload()
    (tmp_path / "checkpoints").mkdir()
    torch.save(checkpoint, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"refusing to load .*last\.ckpt"):
        resume_path(None, tmp_path)
    assert resume_path(None, tmp_path / "fresh") is None
    with pytest.raises(FileNotFoundError, match="ckpt_path=last"):
        resume_path("last", tmp_path / "fresh")


def test_a_folder_given_as_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        load_module(tmp_path)


def test_caches_live_under_the_output_folder_not_in_the_data(
    compose_train: Composer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cellcount.data.datamodule import cache_folder
    from cellcount.data.options import DataOptions

    cfg = compose_train("data=folder", f"data.root={tmp_path / 'share'}")
    assert Path(cfg.data.cache_dir) == tmp_path / "outputs" / "data" / "cache"
    # API use without a cache_dir on data that cannot be written: a temporary folder.
    (tmp_path / "file").write_text("x")
    unwritable = DataOptions(root=str(tmp_path / "file" / "data"))
    with caplog.at_level("WARNING"):
        folder = cache_folder(unwritable)
    assert not folder.is_relative_to(tmp_path) and "cannot write" in caplog.text
    assert cache_folder(DataOptions(root=str(tmp_path))) == tmp_path / ".cellcount_cache"


def test_degenerate_data_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Empty masks everywhere, and crops larger than the images: warnings, not silence."""
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        grey = (rng.random((48, 64)) * 255).astype(np.uint8)
        Image.fromarray(grey).save(tmp_path / "images" / f"i{index}.png")
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "masks" / f"i{index}.png")
    options = DataOptions(str(tmp_path), crop_size=128, crop_step=128, num_workers=0,
                          val_fraction=0.25, test_fraction=0.25)  # fmt: skip
    with caplog.at_level("WARNING"):
        CellDataModule(options).setup("fit")
    assert "hold no cells (every mask is empty)" in caplog.text
    assert "data.crop_size=128 is larger than" in caplog.text and "48" in caplog.text


def test_temporaries_of_a_killed_write_are_cleaned(tmp_path: Path) -> None:
    from cellcount.runtime.files import clean_stale_temporaries

    old, fresh = tmp_path / "sub" / ".counts.x1.tmp.csv", tmp_path / ".labels.x2.tmp.tif"
    old.parent.mkdir()
    for path in (old, fresh):
        path.write_text("half")
    os.utime(old, (1, 1))
    keep = tmp_path / "counts.csv"
    keep.write_text("ok")
    assert clean_stale_temporaries(tmp_path) == 1
    assert not old.exists() and fresh.exists() and keep.exists()
