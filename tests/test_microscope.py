"""Microscope files through bioio: OME-TIFF and OME-Zarr written by bioio's own writers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cellcount import samples
from cellcount.cli.count import main
from cellcount.data.errors import DataError
from cellcount.data.io import read_image
from cellcount.data.microscope import PlaneChoice, read_plane

pytest.importorskip("bioio", reason="the formats extra (pip install 'cellcount[formats]')")
from bioio_base.types import PhysicalPixelSizes
from bioio_ome_tiff.writers import OmeTiffWriter

PIXEL_UM = 0.5


def _nuclei() -> np.ndarray:
    """A real nuclei image (shipped DSB sample) as uint16 (H, W)."""
    grey = read_image(samples.images("dsb2018")[0]).mean(axis=-1)
    return (grey * 4000).astype(np.uint16)


@pytest.fixture(scope="module")
def ome_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """T=2, C=3 (DAPI holds the nuclei), Z=3 (the middle plane sharp), 0.5 µm pixels."""
    nuclei = _nuclei()
    data = np.zeros((2, 3, 3, *nuclei.shape), np.uint16)
    data[:, 0, 1] = nuclei
    data[:, 0, 0] = data[:, 0, 2] = nuclei // 4
    data[:, 1] = 100  # an empty channel
    path = tmp_path_factory.mktemp("ome") / "stack.ome.tiff"
    sizes = PhysicalPixelSizes(2.0, PIXEL_UM, PIXEL_UM)
    OmeTiffWriter.save(data, path, dim_order="TCZYX", channel_names=["DAPI", "GFP", "RFP"],
                       physical_pixel_sizes=sizes)  # fmt: skip
    return path


def test_planes_by_name_index_and_projection(ome_tiff: Path) -> None:
    nuclei = _nuclei()
    plane = read_plane(ome_tiff, PlaneChoice(channel="DAPI", z=1, time=1))
    assert plane.pixel_size_um == PIXEL_UM and np.array_equal(plane.data, nuclei)
    assert np.array_equal(read_plane(ome_tiff, PlaneChoice(channel=0, z=1)).data, nuclei)
    projected = read_plane(ome_tiff, PlaneChoice(channel="0", z_project="max")).data
    assert np.array_equal(projected, nuclei)


@pytest.mark.parametrize(
    ("choice", "message"),
    [(PlaneChoice(z=1), r"3 channels: 0 \(DAPI\), 1 \(GFP\), 2 \(RFP\); choose one with --channel"),
     (PlaneChoice(channel="DAPI"), "3 z-planes; choose one with --z"),
     (PlaneChoice(channel="Cy5", z=1), "no channel named 'Cy5'"),
     (PlaneChoice(channel="DAPI", z=5), r"--z 5 is out of range; valid: 0..2"),
     (PlaneChoice(channel="DAPI", z=1, time=2), "--time 2 is out of range"),
     (PlaneChoice(channel="DAPI", z=1, scene=3), "--scene 3 is out of range")],
)  # fmt: skip
def test_choices_that_do_not_fit_name_the_option(ome_tiff: Path, choice: PlaneChoice,
                                                 message: str) -> None:  # fmt: skip
    with pytest.raises(DataError, match=message):
        read_plane(ome_tiff, choice)


def test_count_a_microscope_file_in_micrometres(ome_tiff: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(ome_tiff), "--model", "pretrained", "--out", str(out), "--quiet",
            "--channel", "DAPI", "--z", "1", "--cell-diameter-um", "8", "--per-cell"]  # fmt: skip
    assert main(args) == 0
    with (out / "counts.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["name"] == "stack" and int(row["count"]) > 5 and not row["error"]
    assert float(row["pixel_size_um"]) == PIXEL_UM
    assert float(row["cell_diameter"]) == 16.0 and row["diameter_source"] == "given_um"
    with (out / "cells" / "stack.csv").open() as handle:
        cells = list(csv.DictReader(handle))
    assert float(cells[0]["area_um2"]) == pytest.approx(float(cells[0]["area"]) * PIXEL_UM**2)
    projected = tmp_path / "projected"
    assert main([str(ome_tiff), "--model", "pretrained", "--out", str(projected), "--quiet",
                 "--channel", "DAPI", "--z-project", "max"]) == 0  # fmt: skip


def test_micrometres_need_a_pixel_size(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(samples.images("dsb2018")[0].read_bytes())
    out = tmp_path / "out"
    assert main([str(plain), "--model", "pretrained", "--out", str(out), "--quiet",
                 "--cell-diameter-um", "8"]) == 1  # fmt: skip
    with (out / "counts.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert "records no pixel size" in row["error"] and "--cell-diameter in px" in row["error"]


def test_ome_zarr_is_read(tmp_path: Path) -> None:
    from bioio_ome_zarr.writers import OMEZarrWriter

    nuclei = _nuclei()
    data = np.stack([nuclei // 8, nuclei])[None, :, None]  # T, C, Z, Y, X
    path = tmp_path / "plate.ome.zarr"
    writer = OMEZarrWriter(path, level_shapes=[data.shape], dtype=data.dtype,
                           axes_names=["t", "c", "z", "y", "x"],
                           axes_types=["time", "channel", "space", "space", "space"],
                           physical_pixel_size=[1.0, 1.0, 1.0, 0.65, 0.65])  # fmt: skip
    writer.write_full_volume(data)
    plane = read_plane(path, PlaneChoice(channel=1))
    assert np.array_equal(plane.data, nuclei) and plane.pixel_size_um == pytest.approx(0.65)
    out = tmp_path / "out"
    assert main([str(tmp_path), "--model", "pretrained", "--out", str(out), "--quiet",
                 "--channel", "1"]) == 0  # fmt: skip
    with (out / "counts.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["name"] == "plate" and int(row["count"]) > 5


def test_a_format_without_its_plugin_names_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "scan.czi"
    path.write_bytes(b"not really a CZI file")
    with pytest.raises(DataError, match=r"install bioio-czi"):
        read_plane(path)
