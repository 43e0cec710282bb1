"""BioImage Model Zoo export: a package that bioimageio.spec validates and whose model
test bioimageio.core passes, and that cellcount counts with."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from cellcount import samples
from cellcount.cli.count import main as count_main
from cellcount.cli.export import main as export_main

pytest.importorskip("bioimageio.core", reason="the bioimageio extra")


@pytest.fixture(scope="module")
def package(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "tiny.bioimageio.zip"
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    assert export_main(["--ckpt", str(ckpt), "--format", "bioimageio", "--out", str(out)]) == 0
    return out


def test_the_package_validates_and_passes_the_model_test(package: Path) -> None:
    from bioimageio.spec import load_description

    from cellcount.inference.bioimageio import test_package

    description = load_description(str(package))
    assert description.validation_summary.status in ("valid-format", "passed")
    config = description.config.model_dump()["cellcount"]
    assert config["normalization"]["method"] == "percentile" and 0 < config["count_threshold"] < 1
    preprocessing = [step.id for step in description.inputs[0].preprocessing]
    assert "scale_range" in preprocessing and "clip" in preprocessing
    assert description.outputs[0].postprocessing[0].id == "sigmoid"
    assert test_package(package)[0] == "passed"
    names = zipfile.ZipFile(package).namelist()
    assert {"rdf.yaml", "README.md", "cover.png", "cellcount.ckpt"} <= set(names)
    assert "Morelli" in zipfile.ZipFile(package).read("README.md").decode()


def test_cellcount_counts_with_a_package(package: Path, tiny_run: Path, tmp_path: Path) -> None:
    image = str(samples.images("dsb2018")[0])
    counts = {}
    for label, model in (
        ("package", package),
        ("checkpoint", tiny_run / "checkpoints" / "best.ckpt"),
    ):
        out = tmp_path / label
        assert count_main([image, "--model", str(model), "--out", str(out), "--quiet",
                           "--cell-diameter", "25", "--no-overlays"]) == 0  # fmt: skip
        with (out / "counts.csv").open() as handle:
            counts[label] = next(csv.DictReader(handle))["count"]
    assert counts["package"] == counts["checkpoint"]
    (tmp_path / "foreign.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    assert count_main([image, "--model", str(tmp_path / "foreign.zip"), "--out",
                       str(tmp_path / "o"), "--quiet"]) == 2  # fmt: skip
