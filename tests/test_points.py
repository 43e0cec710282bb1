"""Point annotations (CSV, Cell Counter XML, ImageJ ROIs) and scoring counts against them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from roifile import ROI_TYPE, ImagejRoi, roiwrite

from cellcount import samples
from cellcount.cli.count import main as count_main
from cellcount.data.errors import DataError
from cellcount.data.io import read_labels
from cellcount.data.points import (
    check_inside,
    find_annotation,
    read_points,
    read_truth_points,
)
from cellcount.evaluation.matching import centres

CELL_COUNTER = """<?xml version="1.0" encoding="UTF-8"?>
<CellCounter_Marker_File>
  <Image_Properties><Image_Filename>a.tif</Image_Filename></Image_Properties>
  <Marker_Data>
    <Current_Type>1</Current_Type>
    <Marker_Type><Type>1</Type><Name>neuron</Name>
      <Marker><MarkerX>10</MarkerX><MarkerY>20</MarkerY><MarkerZ>1</MarkerZ></Marker>
      <Marker><MarkerX>30</MarkerX><MarkerY>5</MarkerY><MarkerZ>1</MarkerZ></Marker>
    </Marker_Type>
    <Marker_Type><Type>2</Type>
      <Marker><MarkerX>7</MarkerX><MarkerY>8</MarkerY><MarkerZ>1</MarkerZ></Marker>
    </Marker_Type>
    <Marker_Type><Type>3</Type><Name>glia</Name></Marker_Type>
  </Marker_Data>
</CellCounter_Marker_File>
"""


def test_csv_tables_in_imagej_and_plain_forms(tmp_path: Path) -> None:
    imagej = tmp_path / "results.csv"  # ImageJ's Results table: unnamed index column, X, Y
    imagej.write_text(" ,X,Y,Slice\n1,10.5,20,1\n2,30,5.25,1\n")
    assert read_points(imagej).tolist() == [[20.0, 10.5], [5.25, 30.0]]
    tab = tmp_path / "points.tsv"
    tab.write_text("x\ty\n3\t4\n")
    assert read_points(tab).tolist() == [[4.0, 3.0]]
    for text in ("", "X,Y\n"):  # an empty file and a header alone both mean 0 cells
        (tmp_path / "empty.csv").write_text(text)
        assert read_points(tmp_path / "empty.csv").shape == (0, 2)


def test_csv_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("col,row\n1,2\n")
    with pytest.raises(DataError, match=r"wrong.csv: needs X and Y columns.*'col', 'row'"):
        read_points(wrong)
    bad = tmp_path / "bad.csv"
    bad.write_text("X,Y\n1,2\nten,3\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 3"):
        read_points(bad)
    with pytest.raises(DataError, match="not found"):
        read_points(tmp_path / "missing.csv")


def test_foreign_suffix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="not a point annotation"):
        read_points(tmp_path / "x.json")


def test_cell_counter_xml_by_type(tmp_path: Path) -> None:
    path = tmp_path / "CellCounter_a.xml"
    path.write_text(CELL_COUNTER)
    with pytest.raises(DataError, match=r"several types.*1 \('neuron': 2 markers\).*--marker-type"):
        read_points(path)
    assert read_points(path, "1").tolist() == [[20.0, 10.0], [5.0, 30.0]]
    assert read_points(path, "neuron").tolist() == read_points(path, "1").tolist()
    assert read_points(path, "Type 2").tolist() == [[8.0, 7.0]]  # unnamed types: "Type N"
    assert read_points(path, "glia").shape == (0, 2)  # a type without markers: 0 cells
    with pytest.raises(DataError, match="no marker type 'astro'"):
        read_points(path, "astro")
    single = tmp_path / "single.xml"
    single.write_text(CELL_COUNTER.replace("<Marker><MarkerX>7</MarkerX><MarkerY>8</MarkerY>"
                                           "<MarkerZ>1</MarkerZ></Marker>", ""))  # fmt: skip
    assert len(read_points(single)) == 2  # one type with markers: no choice needed
    (tmp_path / "broken.xml").write_text("<CellCounter_Marker_File><Marker_Data>")
    with pytest.raises(DataError, match=r"broken\.xml: not a readable Cell Counter XML"):
        read_points(tmp_path / "broken.xml")


def test_imagej_rois_points_and_polygon_centroids(tmp_path: Path) -> None:
    clicks = ImagejRoi.frompoints([[10, 20], [30, 40], [50, 60]])
    clicks.roitype = ROI_TYPE.POINT
    square = ImagejRoi.frompoints([[100, 100], [120, 100], [120, 140], [100, 140]])
    square.roitype = ROI_TYPE.POLYGON
    path = tmp_path / "a.zip"
    roiwrite(path, [clicks, square])
    points = read_points(path)
    assert points[:3].tolist() == [[20.0, 10.0], [40.0, 30.0], [60.0, 50.0]]  # (row, col)
    assert points[3] == pytest.approx([120.0, 110.0])  # the square's centre
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match=r"junk\.zip: not a readable ImageJ ROI"):
        read_points(tmp_path / "junk.zip")


def test_points_outside_the_image_are_an_error() -> None:
    inside = np.array([[0.0, 0.0], [99.4, 49.4]])
    assert check_inside(inside, (100, 50), "a.csv") is inside
    with pytest.raises(DataError, match=r"a.csv: 1 point\(s\) outside the 50x100 image.*µm"):
        check_inside(np.array([[10.0, 60.0]]), (100, 50), "a.csv")


def test_truth_folder_lookup_and_masks(tmp_path: Path) -> None:
    assert find_annotation(tmp_path, "a") is None
    label_path = samples.truth_path("dsb2018", samples.images("dsb2018")[0])
    shutil.copy(label_path, tmp_path / "a.png")
    assert find_annotation(tmp_path, "a") == tmp_path / "a.png"
    (tmp_path / "CellCounter_a.xml").write_text(CELL_COUNTER)
    assert find_annotation(tmp_path, "a") == tmp_path / "CellCounter_a.xml"  # points first
    labels = read_labels(label_path)
    points = read_truth_points(tmp_path / "a.png", labels.shape)
    assert np.allclose(points, centres(labels, "centroid"))
    with pytest.raises(DataError, match="mask of another image"):
        read_truth_points(tmp_path / "a.png", (5, 5))


def test_count_scores_against_clicked_points(tmp_path: Path) -> None:
    """Two shipped DSB images, their labels reduced to centroid clicks (one as CSV, one
    as Cell Counter XML), a third image without annotation."""
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir(), truth.mkdir()
    files = samples.images("dsb2018")[:3]
    names = [path.stem for path in files]
    for path in files:
        shutil.copy(path, images)
    true_points = []
    for index, (name, path) in enumerate(zip(names[:2], files, strict=False)):
        points = centres(read_labels(samples.truth_path("dsb2018", path)), "centroid")
        true_points.append(points)
        if index == 0:
            rows = "".join(f"{c},{r}\n" for r, c in points)
            (truth / f"{name}.csv").write_text("X,Y\n" + rows)
        else:
            markers = "".join(f"<Marker><MarkerX>{c}</MarkerX><MarkerY>{r}</MarkerY></Marker>"
                              for r, c in points)  # fmt: skip
            xml = ("<CellCounter_Marker_File><Marker_Data><Marker_Type><Type>1</Type>"
                   f"{markers}</Marker_Type></Marker_Data></CellCounter_Marker_File>")  # fmt: skip
            (truth / f"CellCounter_{name}.xml").write_text(xml)
    out = tmp_path / "out"
    status = count_main([str(images), "--model", "pretrained", "--out", str(out), "--truth",
                         str(truth), "--no-overlays", "--quiet"])  # fmt: skip
    assert status == 1  # the third image has no annotation
    with (out / "counts.csv").open() as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    for name, points in zip(names[:2], true_points, strict=True):
        row = rows[name]
        assert int(row["true_count"]) == len(points) and not row["error"]
        assert int(row["tp"]) + int(row["fn"]) == len(points)
        assert int(row["tp"]) + int(row["fp"]) == int(row["count"])
        assert int(row["tp"]) >= 0.7 * len(points)  # the shipped model finds most cells
    missing = rows[names[2]]
    assert missing["count"] != "" and missing["error"].startswith("truth: no annotation")
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n_images"] == 2
    tp = sum(int(rows[n]["tp"]) for n in names[:2])
    fp = sum(int(rows[n]["fp"]) for n in names[:2])
    assert scores["precision"] == pytest.approx(tp / (tp + fp), abs=1e-3)


def test_truth_option_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        count_main([str(tmp_path), "--model", "pretrained", "--out", str(tmp_path / "o"),
                    "--truth", str(tmp_path / "nope")])  # fmt: skip
    assert "is not a folder of annotations" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        count_main([str(tmp_path), "--model", "pretrained", "--out", str(tmp_path / "o"),
                    "--match-radius", "-3"])  # fmt: skip
    assert "positive finite number" in capsys.readouterr().err


def _clicked_dataset(root: Path, count: int) -> tuple[Path, Path]:
    """``count`` shipped DSB images with their labels reduced to centroid clicks (CSV)."""
    images, points = root / "images", root / "points"
    images.mkdir(parents=True), points.mkdir()
    for path in samples.images("dsb2018")[:count]:
        shutil.copy(path, images)
        clicks = centres(read_labels(samples.truth_path("dsb2018", path)), "centroid")
        (points / f"{path.stem}.csv").write_text("X,Y\n" + "".join(f"{c},{r}\n" for r, c in clicks))
    return images, points


def test_points_grow_into_one_cell_each() -> None:
    from cellcount.data.io import read_image
    from cellcount.data.point_targets import points_to_labels
    from cellcount.data.sizes import median_diameter

    path = samples.images("dsb2018")[0]
    truth = read_labels(samples.truth_path("dsb2018", path))
    clicks = centres(truth, "centroid")
    labels = points_to_labels(read_image(path), clicks)
    assert labels.max() == len(clicks)
    assert set(np.unique(labels[labels > 0])) == set(range(1, len(clicks) + 1))  # none lost
    rows, cols = np.round(clicks).astype(int).T
    assert (labels[rows, cols] == np.arange(1, len(clicks) + 1)).mean() > 0.95  # at its click
    true_d, grown_d = median_diameter(truth), median_diameter(labels)
    assert true_d is not None and grown_d is not None
    assert abs(grown_d / true_d - 1) < 0.35, (grown_d, true_d)  # roughly the cells' size


def test_points_layout_trains_like_masks(tmp_path: Path) -> None:
    from cellcount.data.datamodule import CellDataModule
    from cellcount.data.options import DataOptions

    _clicked_dataset(tmp_path / "data", 3)
    options = DataOptions(root=str(tmp_path / "data"), layout="points", num_workers=0)
    module = CellDataModule(options)
    names = {s.name for s in module.samples()}
    assert len(names) == 3
    (tmp_path / "data" / "points" / f"{sorted(names)[0]}.csv").unlink()
    with pytest.raises(DataError, match=r"no point annotation .* for: .*looked for"):
        CellDataModule(DataOptions(root=str(tmp_path / "data"), layout="points")).samples()


def test_finetune_writes_checkpoint_card_and_before_after_report(
    tiny_run: Path, tmp_path: Path
) -> None:
    from cellcount.cli.finetune import main as finetune_main
    from cellcount.inference.checkpoints import load_module

    images, points = _clicked_dataset(tmp_path / "lab", 3)
    out = tmp_path / "mine.ckpt"
    base = tiny_run / "checkpoints" / "best.ckpt"
    status = finetune_main([str(images), "--points", str(points), "--out", str(out),
                            "--from", str(base), "--minutes", "0.05", "--quiet",
                            "--folds", "1"])  # fmt: skip
    assert status == 0
    tuned = load_module(out)
    assert tuned.hparams["arch_kwargs"] == load_module(base).hparams["arch_kwargs"]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["images"] == 3 and card["folds"] == 1 and 1 <= len(card["held_out_images"]) < 3
    # its own size model, fitted on the clicked images (not the base model's)
    assert tuned.size_model is not None and card["size_model"]["train_views"] >= 3
    for label in ("before", "after"):
        assert card["held_out_scores"][label]["n_images"] == len(card["held_out_images"])
    report = out.with_suffix(".report.md").read_text()
    assert "| fine-tuned |" in report and "| before" not in report
    assert card["verdict"]["text"] in report and card["verdict"]["better"] in (True, False, None)
    assert out.with_suffix(".overlay.png").stat().st_size > 0
    # Too few images, and images without points, are refused before any training.
    (points / f"{sorted(p.stem for p in images.iterdir())[0]}.csv").unlink()
    assert finetune_main([str(images), "--points", str(points), "--out", str(out),
                          "--from", str(base), "--quiet"]) == 2  # fmt: skip


def test_finetune_verdict_says_when_the_fine_tuned_model_is_worse() -> None:
    from cellcount.training.finetune import verdict

    def scores(f1_before: float, mae_before: float, f1_after: float, mae_after: float
               ) -> dict[str, dict[str, float]]:  # fmt: skip
        return {"before": {"n_images": 2, "f1": f1_before, "mae": mae_before},
                "after": {"n_images": 2, "f1": f1_after, "mae": mae_after}}  # fmt: skip

    worse = verdict(scores(0.80, 3.0, 0.52, 47.5), "pretrained")
    assert worse["better"] is False
    assert "WORSE than `pretrained`" in worse["text"] and "F1 0.520 against 0.800" in worse["text"]
    assert verdict(scores(0.5, 40.0, 0.7, 12.0), "pretrained")["better"] is True
    mixed = verdict(scores(0.5, 10.0, 0.6, 14.0), "pretrained")
    assert mixed["better"] is None and "Mixed" in mixed["text"]
    empty = {"before": {"n_images": 0.0}, "after": {"n_images": 0.0}}
    assert verdict(empty, "pretrained")["better"] is None


def test_finetune_refuses_a_negative_fold_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellcount.cli.finetune import main as finetune_main

    images, points = _clicked_dataset(tmp_path / "lab", 1)
    assert finetune_main([str(images), "--points", str(points), "--out",
                          str(tmp_path / "m.ckpt"), "--folds", "-2"]) == 2  # fmt: skip
    assert "--folds must be 0 (choose), 1 or more, got -2" in capsys.readouterr().err
    assert not (tmp_path / "m_finetune").exists()


def test_few_annotated_images_are_cross_validated_and_every_one_is_scored_once(
    tiny_run: Path, tmp_path: Path
) -> None:
    from cellcount.inference.checkpoints import load_module, read_checkpoint
    from cellcount.training.finetune import FinetuneOptions, finetune, folds_of

    images, points = _clicked_dataset(tmp_path / "lab", 3)
    names = sorted(path.stem for path in images.iterdir())
    out = tmp_path / "cv.ckpt"
    base = str(tiny_run / "checkpoints" / "best.ckpt")
    listed = [(path, path.stem) for path in sorted(images.iterdir())]
    card = finetune(FinetuneOptions(listed, points, out, base, minutes=0.1, progress=False))
    assert card["folds"] == 3  # under 5 images: leave-one-out
    held = [fold["held_out"] for fold in card["fold_choices"]]
    assert sorted(n for fold in held for n in fold) == names == card["held_out_images"]
    for label in ("before", "after"):
        assert card["held_out_scores"][label]["n_images"] == 3
    for k, fold in enumerate(held, start=1):  # each fold trained without its own image
        split = json.loads((tmp_path / "cv_finetune" / f"fold{k}" / "split.json").read_text())
        assert split["val"] == fold and not set(split["train"]) & set(fold)
    thresholds = [fold["threshold"] for fold in card["fold_choices"]]
    stored = read_checkpoint(out)["hyper_parameters"]
    assert float(load_module(out).threshold) == pytest.approx(np.median(thresholds))
    assert stored["count_threshold"] == pytest.approx(
        np.median([fold["count_threshold"] for fold in card["fold_choices"]]))  # fmt: skip
    assert "3-fold cross-validation" in out.with_suffix(".report.md").read_text()
    assert (
        1 <= card["epochs"] <= max(1, round(np.median([f["epochs"] for f in card["fold_choices"]])))
    )
    # Folds are a seeded deal of the names: disjoint, covering, reproducible.
    dealt = folds_of([f"i{k}" for k in range(10)], 3, seed=1)
    flat = [name for fold in dealt for name in fold]
    assert sorted(flat) == sorted(f"i{k}" for k in range(10))
    assert [len(f) for f in dealt] == [4, 3, 3] and dealt == folds_of(flat[::-1], 3, 1)


def test_one_annotated_image_is_cut_into_a_training_and_a_held_out_half(tmp_path: Path) -> None:
    from cellcount.data.io import read_raw
    from cellcount.data.points import read_points
    from cellcount.training.finetune import FinetuneOptions, prepare_dataset

    images, points = _clicked_dataset(tmp_path / "lab", 1)
    (image,) = images.iterdir()
    original = read_raw(image).array
    clicks = read_points(points / f"{image.stem}.csv")
    root = tmp_path / "data"
    options = FinetuneOptions([(image, image.stem)], points, tmp_path / "m.ckpt")
    assert prepare_dataset(options, root) == 1
    halves = sorted((root / "images").iterdir())
    assert [p.name for p in halves] == [f"{image.stem}__half{i}.tif" for i in (1, 2)]
    parts = [read_raw(p).array for p in halves]
    axis = int(original.shape[1] > original.shape[0])  # cut across the longer side
    assert np.array_equal(np.concatenate(parts, axis=axis), original)
    cut = parts[0].shape[axis]
    moved = [read_points(root / "points" / f"{p.stem}.csv") for p in halves]
    assert len(moved[0]) + len(moved[1]) == len(clicks)
    back = np.concatenate([moved[0], moved[1] + np.eye(2)[axis] * cut])
    assert np.allclose(np.sort(back, axis=0), np.sort(clicks, axis=0), atol=0.01)
    with pytest.raises(DataError, match="at least 1 annotated image"):
        prepare_dataset(FinetuneOptions([], points, tmp_path / "m.ckpt"), root)


def test_runs_sharing_a_deadline_absorb_what_earlier_runs_overran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cellcount.training import finetune as module

    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    deadline = now[0] + 8 * 60  # 8 minutes for two folds of 1 image and a final run of 2
    assert module.run_minutes(deadline, [2.0, 2.0, 4.0]) == pytest.approx(2.0)
    now[0] += 4 * 60  # the first fold took 4 minutes with its scoring
    assert module.run_minutes(deadline, [2.0, 4.0]) == pytest.approx(4 / 3)
    now[0] += 4 * 60  # the deadline is spent: the final run still trains a quarter share
    assert module.run_minutes(deadline, [4.0]) == pytest.approx(1.0)
    # The final run trains at most the folds' epochs, so the folds' thresholds fit it.
    options = module.FinetuneOptions([], Path("p"), Path("m.ckpt"))
    assert "trainer.max_epochs=7" in module.train_overrides(options, Path("w"), Path("r"), 1, 7)
