"""The real samples shipped inside the package: complete, paired, licensed, and as documented."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cellcount import samples
from cellcount.data.io import read_image, read_labels, read_mask
from cellcount.evaluation.matching import label_mask


@pytest.mark.parametrize("name", samples.names())
def test_every_image_has_its_truth_of_the_same_size(name: str) -> None:
    images = samples.images(name)
    assert images, name
    for path in images:
        truth = samples.truth_path(name, path)
        assert truth.is_file(), truth
        read = read_mask if samples.get(name).truth == "masks" else read_labels
        assert read(truth).shape == read_image(path).shape[:2]


@pytest.mark.parametrize("name", samples.names())
def test_counts_file_matches_the_truth(name: str) -> None:
    with (samples.path(name) / "counts.csv").open() as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == [p.stem for p in samples.images(name)]
    for path in samples.images(name):
        truth = samples.truth_path(name, path)
        if samples.get(name).truth == "masks":
            count = int(label_mask(read_mask(truth)).max())
            assert count == int(rows[path.stem]["n_cells"])
        else:
            labels = read_labels(truth)
            assert len(np.unique(labels[labels > 0])) == int(rows[path.stem]["n_nuclei"])


def test_unknown_set_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="available: dsb2018, fnc_red, fnc_yellow"):
        samples.path("fnc_green")


def test_licences_and_size_budget() -> None:
    text = samples.licence_text()
    assert "CC BY-SA 4.0" in text and "CC0" in text and "doi:10.1038/s41598-021-01929-5" in text
    total = sum(
        p.stat().st_size for p in samples.path("fnc_yellow").parent.rglob("*") if p.is_file()
    )
    assert total < 12e6  # the samples stay small enough to ship in the wheel
