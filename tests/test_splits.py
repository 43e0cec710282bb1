"""Splits are by image, seeded, disjoint, and reproducible from split.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellcount.data.io import DataError, Sample
from cellcount.data.splits import Split, make_split, read_name_list


def _samples(n: int, test_group: int = 0) -> list[Sample]:
    return [
        Sample(f"img{i:02d}", Path(), Path(), "test" if i < test_group else "trainval")
        for i in range(n)
    ]


def test_split_is_disjoint_complete_and_seeded() -> None:
    split = make_split(_samples(20), val_fraction=0.3, test_fraction=0.2, seed=1)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == 20 and len(set.union(*parts)) == 20
    assert (len(split.test), len(split.val), len(split.train)) == (4, 5, 11)
    assert make_split(_samples(20), seed=1) == make_split(_samples(20), seed=1)
    assert make_split(_samples(20), seed=1) != make_split(_samples(20), seed=2)


def test_fixed_test_names_and_v2_test_group() -> None:
    split = make_split(_samples(10), test_names=["img03", "img07", "not_here"])
    assert split.test == ["img03", "img07"]
    split = make_split(_samples(10, test_group=2))
    assert split.test == ["img00", "img01"]


def test_test_names_matching_nothing_is_an_error() -> None:
    with pytest.raises(DataError, match="none of the 1 listed test images"):
        make_split(_samples(5), test_names=["other"])


def test_no_training_images_left_is_an_error() -> None:
    with pytest.raises(DataError, match="no training images"):
        make_split(_samples(2), val_fraction=0.9, test_fraction=0.5)


def test_split_round_trip_and_name_list(tmp_path: Path) -> None:
    split = Split(train=["a"], val=["b"], test=["c"])
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
    (tmp_path / "names.txt").write_text("# paper test set\nx_y.png\n\ny.png\n")
    assert read_name_list(tmp_path / "names.txt") == ["x_y", "y"]


def test_paper_test_list_ships_with_the_package() -> None:
    from cellcount.training.resolvers import resource_path

    names = read_name_list(resource_path("fnc_v1_test_names.txt"))
    assert len(names) == 70 and "39_y" in names
