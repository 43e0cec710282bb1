"""The data module end to end on a tiny synthetic set: split, cache, loaders, switches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount import samples
from cellcount.data import targets
from cellcount.data.datamodule import CellDataModule
from cellcount.data.io import DataError
from cellcount.data.options import DataOptions
from cellcount.data.splits import Split
from tests.conftest import Composer


def _module(root: Path, tmp_path: Path, **kwargs: object) -> CellDataModule:
    options: dict[str, object] = {
        "root": str(root),
        "split_file": str(tmp_path / "split.json"),
        "cache_dir": str(tmp_path / "cache"),
        "crop_size": 64,
        "crop_step": 64,
        "batch_size": 2,
        "num_workers": 0,
        "aug_factor": 2,
    }
    options.update(kwargs)
    return CellDataModule(DataOptions(**options))  # type: ignore[arg-type]


def test_fit_setup_gives_weighted_crops(tiny_synthetic: Path, tmp_path: Path) -> None:
    dm = _module(tiny_synthetic, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    split = Split.load(tmp_path / "split.json")
    assert set(split.train) == {r.name for r in dm.records["train"]}
    train = dm.datasets["train"]
    assert len(train) == len(split.train) * 4  # 128x128 images, 64 px crops
    assert train.epoch_size() == 3 * len(train)  # 1 + aug_factor draws per crop
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["weight"].min() >= 1 and batch["weight"].max() <= 3.8177538 + 1e-3
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    cells = batch["mask"] > 0
    if cells.any():
        assert torch.allclose(batch["weight"][cells], torch.tensor(1.5, dtype=torch.float32))


def test_weight_maps_are_cached_once(
    tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module(tiny_synthetic, tmp_path).prepare_data()
    assert len(list((tmp_path / "cache" / "weight_maps").glob("*.npy"))) == 8

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("weight map recomputed although it is cached")

    monkeypatch.setattr(targets, "weight_map", fail)
    dm = _module(tiny_synthetic, tmp_path)
    dm.prepare_data()
    dm.setup("fit")


@pytest.mark.parametrize("damage", ["garbage", "bit flip"])
def test_corrupt_cache_entry_is_rebuilt(tiny_synthetic: Path, tmp_path: Path, damage: str) -> None:
    _module(tiny_synthetic, tmp_path).prepare_data()
    entry = sorted((tmp_path / "cache" / "weight_maps").glob("*.npy"))[0]
    good = np.load(entry)
    if damage == "garbage":
        entry.write_bytes(b"garbage")
    else:  # still a valid .npy of the right shape: only the hash can tell
        flipped = good.copy()
        flipped.flat[0] = 3.0
        np.save(entry, flipped)
    _module(tiny_synthetic, tmp_path).prepare_data()
    assert np.array_equal(np.load(entry), good)


def test_no_wm_ablation_uses_unit_maps(tiny_synthetic: Path, tmp_path: Path) -> None:
    dm = _module(tiny_synthetic, tmp_path, weight_maps=False)
    dm.prepare_data()
    dm.setup("fit")
    assert not (tmp_path / "cache").exists()
    assert all((r.weight == 1).all() for r in dm.records["train"])


def test_artifact_oversampling_switch(tiny_synthetic: Path, tmp_path: Path) -> None:
    crops = [{"image": f"synth_{i:04d}", "y": 10, "x": 10} for i in range(8)]
    on = _module(tiny_synthetic, tmp_path, artifact_crops=crops, artifact_copies=50)
    on.setup("fit")
    n_train = len(on.records["train"])
    assert on.datasets["train"].epoch_size() == 3 * 4 * n_train + 51 * n_train
    off = _module(tiny_synthetic, tmp_path, artifact_crops=crops, oversample_artifacts=False)
    off.setup("fit")
    assert off.datasets["train"].epoch_size() == 3 * 4 * n_train


def test_split_file_is_reused_and_checked(tiny_synthetic: Path, tmp_path: Path) -> None:
    Split(train=["synth_0001"], val=["synth_0002"], test=["synth_0003"]).save(
        tmp_path / "split.json"
    )
    dm = _module(tiny_synthetic, tmp_path)
    dm.setup("test")
    assert [r.name for r in dm.records["test"]] == ["synth_0003"]
    Split(train=["elsewhere"], val=[], test=[]).save(tmp_path / "split.json")
    with pytest.raises(DataError, match="names images not in"):
        _module(tiny_synthetic, tmp_path).setup("fit")


def test_real_fnc_samples_load_through_the_module(tmp_path: Path) -> None:
    root = samples.path("fnc_yellow")  # read only: split and cache go to tmp_path
    dm = _module(
        root, tmp_path, crop_size=512, crop_step=400, val_fraction=0.25, test_fraction=0.25
    )
    dm.setup("validate")
    (record,) = dm.records["val"]
    assert record.image.shape == (1200, 1600, 3)
    assert len(dm.datasets["val"]) == 12


def test_bad_files_fail_clearly_or_are_skipped(tiny_synthetic: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic / "images", root / "images")
    shutil.copytree(tiny_synthetic / "masks", root / "masks")
    (root / "images" / "synth_0002.png").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"synth_0002\.png"):
        dm = _module(root, tmp_path, test_fraction=0.0, val_fraction=0.0)
        dm.setup("fit")
    dm = _module(root, tmp_path / "skip", skip_bad_files=True)
    assert "synth_0002" not in {s.name for s in dm.samples()}
    assert len(dm.samples()) == 7


def _instance_set(root: Path, names: list[str]) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    labels = np.zeros((128, 128), np.uint16)
    labels[20:40, 20:40], labels[20:40, 40:60] = 1, 2  # two touching nuclei
    for name in names:
        Image.fromarray((labels > 0).astype(np.uint8) * 180).save(root / "images" / f"{name}.png")
        Image.fromarray(labels).save(root / "labels" / f"{name}.png")
    return root


def test_extra_sources_pool_datasets_and_keep_instance_truth(
    tiny_synthetic: Path, tmp_path: Path
) -> None:
    nuclei = _instance_set(tmp_path / "nuclei", ["n0", "n1", "n2"])
    dm = _module(tiny_synthetic, tmp_path, extra_sources=[{"root": str(nuclei),
                                                           "layout": "instances"}])  # fmt: skip
    names = {s.name for s in dm.samples()}
    assert {"n0", "n1", "n2"} < names and len(names) == 8 + 3
    dm.prepare_data()
    split = dm.make_split(dm.samples())
    part = next(p for p in ("train", "val", "test") if set(getattr(split, p)) & {"n0", "n1", "n2"})
    truths = {name: truth for name, _, truth in dm.full_images(part)}
    nucleus = next(truths[n] for n in ("n0", "n1", "n2") if n in truths)
    assert nucleus.dtype == np.int32 and nucleus.max() == 2  # instance labels, not a bool mask


def test_extra_source_with_clashing_names_is_an_error(tiny_synthetic: Path, tmp_path: Path) -> None:
    clash = _instance_set(tmp_path / "clash", ["synth_0000"])
    dm = _module(tiny_synthetic, tmp_path, extra_sources=[{"root": str(clash),
                                                           "layout": "instances"}])  # fmt: skip
    with pytest.raises(DataError, match=r"synth_0000.*rename"):
        dm.samples()


def test_real_data_configs_need_a_root(compose_train: Composer) -> None:
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    for data in ("folder", "fnc", "dsb"):
        cfg = compose_train(f"data={data}")
        with pytest.raises(MissingMandatoryValue, match=r"data\.root"):
            instantiate(cfg.data)


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [("crop_size", 0, "a positive integer"), ("val_fraction", 1.0, r"a value in \[0, 1\)"),
     ("layout", "tiff", "one of folder"), ("cell_diameter", -3.0, "a positive value")],
)  # fmt: skip
def test_data_options_name_the_bad_key(key: str, value: object, valid: str) -> None:
    with pytest.raises(DataError, match=rf"data\.{key}={value!r} is not valid; use {valid}"):
        DataOptions(root="somewhere", **{key: value})  # type: ignore[arg-type]
