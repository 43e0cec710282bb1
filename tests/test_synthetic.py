"""Synthetic FNC-like data: determinism, image/label agreement, on-disk layout and caching."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from cellcount.data import synthetic
from cellcount.data.io import DataError, read_artifact_boxes
from cellcount.data.synthetic import (
    SyntheticConfig,
    generate_dataset,
    render_scene,
    sample_name,
)

SMALL = SyntheticConfig(height=128, width=160)
# Many cells in clumps, dim cells, filaments and a strip, all forced on.
BUSY = SyntheticConfig(
    height=256,
    width=256,
    n_cells=(8, 8),
    clump_prob=1.0,
    n_dim_cells=(6, 6),
    n_filaments=(4, 4),
    strip_prob=1.0,
    strip_width=(20.0, 30.0),
)


def render_sample(
    rng: np.random.Generator, cfg: SyntheticConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The image (H, W, 3) uint8 and instance labels (H, W) int32 of one scene."""
    scene = render_scene(rng, cfg)
    return scene.image, scene.labels


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64).mean(axis=-1)


# -- rendering ----------------------------------------------------------------------------


def test_render_types_shapes_and_labels() -> None:
    image, labels = render_sample(rng(0, 0), SMALL)
    assert image.shape == (128, 160, 3) and image.dtype == np.uint8
    assert labels.shape == (128, 160) and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and ids.tolist() == list(range(ids.size))  # 0..K, no gaps
    assert labels.max() >= 1


def test_render_is_deterministic_per_seed() -> None:
    first, second = render_sample(rng(5, 1), SMALL), render_sample(rng(5, 1), SMALL)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = render_sample(rng(6, 1), SMALL)
    assert not np.array_equal(first[0], other[0])


def test_cells_are_brighter_than_background() -> None:
    for seed in range(4):
        image, labels = render_sample(rng(seed, 0), SyntheticConfig())
        lum = luminance(image)
        inside, outside = lum[labels > 0].mean(), lum[labels == 0].mean()
        assert inside > 2.5 * outside, (seed, inside, outside)
        assert image[..., 0][labels > 0].mean() > image[..., 2][labels > 0].mean() + 40  # yellow


def test_clumps_touch_and_each_member_is_labelled() -> None:
    merged = 0
    for seed in range(5):
        scene = render_scene(rng(seed, 0), BUSY)
        n_instances = int(scene.labels.max())
        _, n_components = ndi.label(scene.labels > 0, structure=np.ones((3, 3)))
        assert n_components <= n_instances
        merged += n_instances - n_components
        sizes = np.bincount(scene.labels.ravel())[1:]
        assert sizes.min() >= 20  # every instance keeps a real body
    assert merged > 0  # with clump_prob=1 some touching cells merge in the binary mask


def test_dim_cells_and_artifacts_are_not_labelled() -> None:
    for seed in range(3):
        scene = render_scene(rng(seed, 0), BUSY)
        lum = luminance(scene.image)
        cells = scene.labels > 0
        assert scene.dim.any() and scene.artifacts.any()
        assert not (scene.dim & cells).any()
        # dim look-alikes are visible but fainter than labelled cells (away from filaments)
        near_artifact = ndi.binary_dilation(scene.artifacts, iterations=4)
        dim = scene.dim & ~near_artifact
        assert lum[cells].mean() > 2 * lum[dim].mean()
        assert lum[dim].mean() > lum[~cells & ~scene.dim & ~near_artifact].mean()
        # bright artefacts exist outside the mask
        stray = scene.artifacts & ~cells
        assert stray.sum() > 50
        assert np.percentile(scene.image[..., 0][stray], 90) > 60


def test_no_objects_gives_empty_labels() -> None:
    cfg = SyntheticConfig(
        height=64,
        width=64,
        n_cells=(0, 0),
        n_dim_cells=(0, 0),
        n_filaments=(0, 0),
        n_processes=(0, 0),
        strip_prob=0.0,
    )
    image, labels = render_sample(rng(0, 0), cfg)
    assert labels.max() == 0
    assert image.mean() < 20  # dark background only


def test_config_validation_and_coercion() -> None:
    cfg = SyntheticConfig(diameter=[10, 20], n_cells=[2.0, 3.0])  # type: ignore[arg-type]
    assert cfg.diameter == (10.0, 20.0) and cfg.n_cells == (2, 3)
    hash(cfg)  # frozen, usable as a key
    with pytest.raises(ValueError, match="n_cells"):
        SyntheticConfig(n_cells=(5, 2))
    with pytest.raises(ValueError, match="diameter"):
        SyntheticConfig(diameter=12.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clump_prob"):
        SyntheticConfig(clump_prob=1.5)


# -- dataset on disk ----------------------------------------------------------------------


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_written_layout_matches_render(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "synth", 3, seed=4, cfg=SMALL)
    assert root == tmp_path / "synth"
    names = [sample_name(i) + ".png" for i in range(3)]
    assert sorted(p.name for p in (root / "images").iterdir()) == names
    assert sorted(p.name for p in (root / "masks").iterdir()) == names
    with open(root / "counts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == [sample_name(i) for i in range(3)]
    for i, row in enumerate(rows):
        image, labels = render_sample(rng(4, i), SMALL)
        with Image.open(root / "images" / names[i]) as img:
            assert img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img), image)
        with Image.open(root / "masks" / names[i]) as msk:
            assert msk.mode == "L"
            mask = np.asarray(msk)
        assert set(np.unique(mask).tolist()) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, labels > 0)
        assert int(row["count"]) == labels.max()
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["seed"] == 4 and manifest["n_images"] == 3
    assert manifest["version"] == synthetic.GENERATOR_VERSION
    assert manifest["config"]["height"] == 128
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temporary folder left


def test_written_bytes_are_reproducible_and_prefix_stable(tmp_path: Path) -> None:
    a = files_of(generate_dataset(tmp_path / "a", 2, seed=9, cfg=SMALL))
    b = files_of(generate_dataset(tmp_path / "b", 2, seed=9, cfg=SMALL))
    assert a == b
    longer = files_of(generate_dataset(tmp_path / "c", 4, seed=9, cfg=SMALL))
    for sub in ("images", "masks"):
        for i in range(2):
            key = f"{sub}/{sample_name(i)}.png"
            assert longer[key] == a[key]
    other = files_of(generate_dataset(tmp_path / "d", 2, seed=10, cfg=SMALL))
    assert other["images/synth_0000.png"] != a["images/synth_0000.png"]


def test_existing_dataset_is_reused(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "synth", 2, seed=1, cfg=SMALL)
    (root / ".cellcount_cache").mkdir()  # caches written next to the data are tolerated
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert generate_dataset(root, 2, seed=1, cfg=SMALL) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps


def test_empty_existing_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "synth").mkdir()
    root = generate_dataset(tmp_path / "synth", 1, seed=0, cfg=SMALL)
    assert (root / "images" / "synth_0000.png").is_file()


@pytest.mark.parametrize(
    "change",
    [{"seed": 2}, {"n_images": 3}, {"cfg": SyntheticConfig(height=128, width=128)}],
)
def test_other_parameters_raise(tmp_path: Path, change: dict[str, object]) -> None:
    root = generate_dataset(tmp_path / "synth", 2, seed=1, cfg=SMALL)
    kwargs: dict[str, object] = {"n_images": 2, "seed": 1, "cfg": SMALL, **change}
    with pytest.raises(DataError, match=str(root)):
        generate_dataset(root, **kwargs)  # type: ignore[arg-type]


def test_foreign_folder_raises(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("not a dataset")
    with pytest.raises(DataError, match="mine"):
        generate_dataset(root, 1, cfg=SMALL)
    assert (root / "notes.txt").read_text() == "not a dataset"


def test_incomplete_dataset_raises(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "synth", 2, seed=1, cfg=SMALL)
    (root / "masks" / "synth_0001.png").unlink()
    with pytest.raises(DataError, match="misses files"):
        generate_dataset(root, 2, seed=1, cfg=SMALL)


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic.render_scene
    calls = {"n": 0}

    def failing(
        generator: np.random.Generator, cfg: SyntheticConfig | None = None
    ) -> synthetic.Scene:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(generator, cfg)

    monkeypatch.setattr(synthetic, "render_scene", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "synth", 3, cfg=SMALL)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synthetic, "render_scene", real)
    assert (generate_dataset(tmp_path / "synth", 3, cfg=SMALL) / "counts.csv").is_file()


def test_n_images_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_images"):
        generate_dataset(tmp_path / "synth", 0, cfg=SMALL)


def test_artifact_boxes_cover_the_drawn_strips(tmp_path: Path) -> None:
    cfg = SyntheticConfig(height=256, width=256, strip_prob=1.0)
    root = generate_dataset(tmp_path / "strips", 2, seed=4, cfg=cfg)
    boxes = read_artifact_boxes(root / "artifacts.csv")
    assert {b["image"] for b in boxes} == {"synth_0000", "synth_0001"}
    for index in range(2):
        scene = synthetic.render_scene(np.random.default_rng([4, index]), cfg)
        covered = np.zeros_like(scene.artifacts)
        for box in (b for b in boxes if b["image"] == f"synth_{index:04d}"):
            covered[box["y"] : box["y"] + box["height"], box["x"] : box["x"] + box["width"]] = True
        assert covered[scene.artifacts].mean() > 0.8  # the big regions (strips) are boxed
