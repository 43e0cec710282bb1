"""Reading images/masks and pairing them: formats, normalisation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcount import samples
from cellcount.data.io import DataError, find_samples, load_pair, read_image, read_mask
from cellcount.data.normalize import PAPER_NORMALIZATION


def _write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def _ramp(array: np.ndarray) -> np.ndarray:
    """``array``'s value fading from 0 (first pixel) to full (last pixel)."""
    fade = np.linspace(0, 1, array.shape[0] * array.shape[1]).reshape(array.shape[:2])
    fade = fade[..., None] if array.ndim == 3 else fade
    return (array * fade).astype(array.dtype)


@pytest.mark.parametrize(
    ("array", "paper_max"),
    [
        (np.full((40, 50), 255, np.uint8), 1.0),
        (np.full((40, 50), 32768, np.uint16), 32768 / 65535),
        (np.full((40, 50, 3), 51, np.uint8), 0.2),
        (np.full((40, 50, 3), 0.25, np.float32), 0.25),
    ],
)
def test_read_image_normalises_to_rgb_unit_range(
    tmp_path: Path, array: np.ndarray, paper_max: float
) -> None:
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, _ramp(array), photometric="rgb" if array.ndim == 3 else None)
    image = read_image(path)  # percentile normalisation: the bright value becomes 1
    assert image.shape == (40, 50, 3) and image.dtype == np.float32
    assert image.max() == pytest.approx(1.0) and image.min() == 0.0
    paper = read_image(path, normalization=PAPER_NORMALIZATION)  # the paper's: / dtype max
    assert paper.max() == pytest.approx(paper_max, rel=1e-6)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        read_image(path)


def test_float_image_out_of_range_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.array([[0.5, np.nan]], np.float32))
    with pytest.raises(DataError, match="NaN"):
        read_image(path)


@pytest.mark.parametrize("top", [1, 255])
def test_binary_masks_in_both_encodings(tmp_path: Path, top: int) -> None:
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4, 2:4] = top
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == 4


def test_non_binary_mask_is_an_error(tmp_path: Path) -> None:
    Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6)).save(tmp_path / "labels.png")
    with pytest.raises(DataError, match=r"labels\.png is not binary"):
        read_mask(tmp_path / "labels.png")


def test_missing_mask_is_named_unless_skipped(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    _write_pair(tmp_path, "a", image, mask)
    _write_pair(tmp_path, "b", image, mask)
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png has no mask"):
        find_samples(tmp_path)
    assert [s.name for s in find_samples(tmp_path, skip_unpaired=True)] == ["a"]


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8))
    (sample,) = find_samples(tmp_path)
    with pytest.raises(DataError, match=r"a\.png is 9x8 but image .*a\.png is 8x8"):
        load_pair(sample)


def test_unknown_layout_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="valid layouts: folder, instances, points, fnc_v1, fnc_v2"):
        find_samples(tmp_path, layout="fnc_v3")


def test_fnc_v2_layout_marks_test_group(tmp_path: Path) -> None:
    for group in ("trainval", "test"):
        part = tmp_path / "yellow" / group
        (part / "images").mkdir(parents=True)
        (part / "ground_truths" / "masks").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(part / "images" / f"{group}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(
            part / "ground_truths" / "masks" / f"{group}.png"
        )
    found = find_samples(tmp_path, layout="fnc_v2")
    assert {(s.name, s.group) for s in found} == {("trainval", "trainval"), ("test", "test")}


def test_real_fnc_samples_load() -> None:
    found = find_samples(samples.path("fnc_yellow"))
    assert len(found) == 4
    image, mask = load_pair(found[0])
    assert image.shape == (1200, 1600, 3) and mask.shape == (1200, 1600)
    assert 0 < mask.mean() < 0.1


def _write_instances(root: Path, name: str, labels: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(((labels > 0) * 200).astype(np.uint8)).save(root / "images" / f"{name}.png")
    Image.fromarray(labels.astype(np.uint16)).save(root / "labels" / f"{name}.png")


def _touching_pair() -> np.ndarray:
    """Two 6x6 cells sharing an edge (ids 3 and 7), and a lone cell (id 1)."""
    labels = np.zeros((12, 20), np.uint16)
    labels[2:8, 2:8] = 3
    labels[2:8, 8:14] = 7
    labels[9:11, 16:19] = 1
    return labels


def test_instances_layout_keeps_labels_and_separates_touching_cells(tmp_path: Path) -> None:
    from scipy import ndimage as ndi

    from cellcount.data.io import training_mask

    labels = _touching_pair()
    _write_instances(tmp_path, "a", labels)
    [sample] = find_samples(tmp_path, "instances")
    image, truth = load_pair(sample)
    assert image.shape == (12, 20, 3) and np.allclose(image[..., 0], image[..., 2])  # grey -> RGB
    assert truth.dtype == np.int32 and set(np.unique(truth)) == {0, 1, 3, 7}
    mask = training_mask(truth)
    assert ndi.label(mask)[1] == 3  # merged by a plain binarisation, 3 objects here
    assert (mask == (labels > 0)).sum() >= labels.size - 6  # only the 6-px seam is lost
    assert ndi.label(labels > 0)[1] == 2


def test_binary_label_file_counts_components(tmp_path: Path) -> None:
    from cellcount.data.io import read_labels

    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:3] = 255
    mask[5:7, 5:7] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_labels(tmp_path / "m.png").max() == 2


def test_rgb_label_file_is_rejected_with_its_name(tmp_path: Path) -> None:
    from cellcount.data.io import read_labels

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png.*single-plane"):
        read_labels(tmp_path / "rgb.png")


def test_training_target_of_labels_keeps_seams_after_hole_filling(tmp_path: Path) -> None:
    from scipy import ndimage as ndi

    from cellcount.data.targets import TargetOptions, load_record

    # A ring of four touching cells: the seams between them enclose no hole,
    # but filling small background holes must not re-join the cells.
    labels = np.zeros((24, 24), np.uint16)
    labels[4:12, 4:12], labels[4:12, 12:20] = 1, 2
    labels[12:20, 4:12], labels[12:20, 12:20] = 3, 4
    _write_instances(tmp_path, "ring", labels)
    [sample] = find_samples(tmp_path, "instances")
    record = load_record(sample, TargetOptions(min_cell_area=4, max_hole_area=50), tmp_path / "c")
    assert ndi.label(record.target)[1] == 4


def test_dsb_samples_read_as_instances_with_their_published_counts() -> None:
    import csv

    root = samples.path("dsb2018")
    found = find_samples(root, "instances")
    assert len(found) == 12
    with (root / "counts.csv").open() as handle:
        published = {row["image"]: int(row["n_nuclei"]) for row in csv.DictReader(handle)}
    for sample in found:
        _, truth = load_pair(sample)
        assert len(np.unique(truth[truth > 0])) == published[sample.name]
