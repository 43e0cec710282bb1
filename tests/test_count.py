"""The counting product: Python API and `cellcount count` end to end."""

from __future__ import annotations

import csv
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from roifile import roiread
from skimage.draw import disk
from skimage.measure import regionprops_table

from cellcount import samples
from cellcount.cli.count import COUNT_COLUMNS, build_parser, collect_inputs, main
from cellcount.counter import CELL_COLUMNS, DEFAULT_TILE_SIZE, Counter, cell_table
from cellcount.data.io import DataError, read_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two real DSB sample images (shipped), plus one broken file."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in samples.images("dsb2018")[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_counter_is_the_package_api() -> None:
    import cellcount

    assert cellcount.Counter is Counter


def test_counter_api_returns_consistent_results(tiny_run: Path, tiny_synthetic: Path) -> None:
    counter = Counter.from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", "cpu",
                                      threshold=0.3)  # fmt: skip
    result = counter.count(tiny_synthetic / "images" / "synth_0000.png")
    assert result.count == result.labels.max() == len(result.cells)
    assert result.labels.shape == (128, 128) and result.threshold == 0.3
    for cell in result.cells:
        assert set(cell) == set(CELL_COLUMNS)
        assert cell["area"] == (result.labels == cell["id"]).sum()
    tta = Counter.from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", "cpu", tta=True)
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    prob = tta.probabilities(image)
    flipped = tta.probabilities(np.ascontiguousarray(image[::-1]))
    assert np.allclose(prob[::-1], flipped, atol=1e-5)  # flip averaging is flip-invariant


def test_count_cli_writes_every_output(tiny_run: Path, images: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "out"
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    args = [str(images), "--ckpt", str(ckpt), "--out", str(out), "--per-cell", "--rois",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 1  # one broken file
    assert "broken.png" in capsys.readouterr().err
    rows = _read_csv(out / "counts.csv")
    assert list(rows[0]) == list(COUNT_COLUMNS)
    good = [r for r in rows if not r["error"]]
    assert len(good) == len(rows) - 1 and next(r for r in rows if r["error"])["name"] == "broken"
    for row in good:
        labels = tifffile.imread(out / "labels" / f"{row['name']}.tif")
        assert labels.dtype == np.uint16 and int(row["count"]) == labels.max()
        assert (out / "overlays" / f"{row['name']}.png").stat().st_size > 0
        cells = _read_csv(out / "cells" / f"{row['name']}.csv")
        assert len(cells) == int(row["count"])
        if int(row["count"]):
            assert len(roiread(out / "rois" / f"{row['name']}.zip")) == int(row["count"])
        assert row["checkpoint_sha256"] and row["model"] == "c_resunet"
    # Re-running resumes: counted images are not processed again.
    stamp = (out / "labels" / f"{good[0]['name']}.tif").stat().st_mtime_ns
    assert main(args) == 1
    assert (out / "labels" / f"{good[0]['name']}.tif").stat().st_mtime_ns == stamp
    assert _read_csv(out / "counts.csv") == rows


def test_console_script_and_missing_inputs(tiny_run: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cellcount.cli.main", "count", str(tmp_path / "nothing"),
         "--ckpt", str(tiny_run / "checkpoints" / "best.ckpt"), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "matches no image file" in result.stderr
    assert not (tmp_path / "o" / "counts.csv").exists()


def test_collect_inputs_names_and_channels(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stack = np.zeros((3, 32, 32), np.uint16)
    stack[1, 8:16, 8:16] = 1000
    for folder in ("a", "b"):
        tifffile.imwrite(tmp_path / folder / "x.tif", stack, photometric="minisblack")
    pairs = collect_inputs([str(tmp_path)], recursive=True)
    assert [name for _, name in pairs] == ["a__x", "b__x"]
    with pytest.raises(DataError, match="--recursive"):
        collect_inputs([str(tmp_path)])
    with pytest.raises(DataError, match=r"3 channels.*--channel 0\.\.2"):
        read_image(tmp_path / "a" / "x.tif")
    grey = read_image(tmp_path / "a" / "x.tif", channel=1)
    assert grey.shape == (32, 32, 3) and grey[10, 10, 0] == pytest.approx(1.0)  # stretched
    assert grey[0, 0, 0] == 0.0


def test_cell_table_equals_regionprops_on_the_grey_image() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((200, 260), np.int32)
    for label in range(1, 30):
        centre = (rng.integers(0, 200), rng.integers(0, 260))
        labels[disk(centre, rng.integers(2, 18), shape=labels.shape)] = label
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    image = rng.random((200, 260, 3), dtype=np.float32)
    keys = ("label", "centroid-0", "centroid-1", "area", "intensity_mean")
    properties = ("label", "centroid", "area", "intensity_mean")
    props = regionprops_table(labels, intensity_image=image.mean(axis=-1), properties=properties)
    columns = [c for c in CELL_COLUMNS if c != "area_um2"]
    expected = [dict(zip(columns, map(float, row), strict=True))
                for row in zip(*(props[key] for key in keys), strict=True)]  # fmt: skip
    table = cell_table(labels, image)
    assert [{k: v for k, v in row.items() if k != "area_um2"} for row in table] == expected
    assert all(np.isnan(row["area_um2"]) for row in table)  # no pixel size known
    sized = cell_table(labels, image, pixel_size_um=0.5)
    assert [row["area_um2"] for row in sized] == [row["area"] * 0.25 for row in expected]
    assert cell_table(np.zeros((5, 5), np.int32), image[:5, :5]) == []


def test_cli_and_api_share_the_default_tile_size() -> None:
    assert build_parser().get_default("tile_size") == DEFAULT_TILE_SIZE
    assert inspect.signature(Counter).parameters["tile_size"].default == DEFAULT_TILE_SIZE


@pytest.mark.parametrize("diameter", ["auto", 25.0])
def test_count_many_batches_equal_images_and_counts_like_one_by_one(
    tiny_run: Path, diameter: float | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cellcount.counter as counter_module

    counter = Counter.from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", "cpu",
                                      cell_diameter=diameter, batch_images=2)  # fmt: skip
    paths = [p for p in samples.images("dsb2018") if read_image(p).shape[:2] == (520, 696)]
    images = [counter.normalize(path) for path in [*paths, paths[0]]]  # 5 images of one shape
    batches: list[int] = []
    real_batch = counter_module.predict_batch

    def spy(net: object, batch: list[np.ndarray], precision: str = "fp32") -> list[np.ndarray]:
        batches.append(len(batch))
        return real_batch(net, batch, precision)  # type: ignore[arg-type]

    monkeypatch.setattr(counter_module, "predict_batch", spy)
    many = list(counter.count_many(images, [*paths, paths[0]]))
    # Given a size, five images go in batches of two and one alone; with auto, each image
    # has its own first guess but the last one, the first again, which shares its batch.
    assert batches == ([2] if diameter == "auto" else [2, 2])
    for normalized, result in zip(images, many, strict=True):
        assert isinstance(result, counter_module.CountResult)
        alone = counter.count_normalized(normalized)
        assert result.count == alone.count and result.cell_diameter == alone.cell_diameter
        assert (result.labels != alone.labels).mean() < 1e-4
