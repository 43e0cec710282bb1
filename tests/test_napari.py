"""The napari plugin, headless: manifest, dock widget on a shipped sample, reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellcount import samples
from cellcount.counter import Counter
from cellcount.data.io import read_raw

pytest.importorskip("napari", reason="the napari extra (pip install 'cellcount[napari]')")
from napari.components import ViewerModel


def test_the_manifest_names_the_widget_and_the_reader() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("cellcount")
    commands = {c.id: c.python_name for c in manifest.contributions.commands or []}
    assert commands["cellcount.count_widget"] == "cellcount.napari_plugin:CountWidget"
    assert commands["cellcount.get_reader"] == "cellcount.napari_plugin:get_reader"


def test_the_widget_counts_the_selected_layer_in_a_worker(qtbot: Any, tmp_path: Path) -> None:
    from cellcount.napari_plugin import CountWidget

    path = samples.images("dsb2018")[0]
    data = read_raw(path).array
    viewer = ViewerModel()
    viewer.add_image(data, name="nuclei")
    widget = CountWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.layer_box.currentText() == "nuclei"
    worker = widget.start_count()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.result is not None, timeout=10_000)
    expected = Counter.from_checkpoint("pretrained").count(np.asarray(data)).count
    assert widget.result.count == expected > 0
    labels, points = viewer.layers["nuclei cells"], viewer.layers["nuclei centroids"]
    assert type(labels).__name__ == "Labels" and int(labels.data.max()) == expected
    assert len(points.data) == expected and f"{expected} cells in nuclei" in widget.status.text()
    widget.save(tmp_path)
    assert (tmp_path / "counts.csv").read_text().splitlines()[1].startswith(f"nuclei,{expected}")
    widget.grab().save(str(tmp_path / "widget.png"))  # the README's screenshot, headless
    assert (tmp_path / "widget.png").stat().st_size > 0


def test_the_widget_counts_a_folder_like_the_cli(qtbot: Any, tmp_path: Path) -> None:
    import csv

    from cellcount.napari_plugin import CountWidget

    widget = CountWidget(ViewerModel())
    qtbot.addWidget(widget)
    folder = samples.path("dsb2018") / "images"
    worker = widget.start_folder(folder, tmp_path / "counts")
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    with (tmp_path / "counts" / "counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(int(r["count"]) > 0 and not r["error"] for r in rows)
    assert "counted" in widget.status.text()


def test_the_reader_opens_label_images_only(tmp_path: Path) -> None:
    from cellcount.cli.count import write_labels
    from cellcount.napari_plugin import get_reader

    labels = np.zeros((20, 30), np.int32)
    labels[2:6, 3:9] = 1
    write_labels(labels, tmp_path / "labels" / "x.tif")
    reader = get_reader(str(tmp_path / "labels" / "x.tif"))
    assert reader is not None
    [(data, meta, kind)] = reader(str(tmp_path / "labels" / "x.tif"))
    assert kind == "labels" and meta["name"] == "x" and np.array_equal(data, labels)
    assert get_reader(str(tmp_path / "x.tif")) is None
