"""napari plugin (``pip install 'cellcount[napari]'``): count the selected image layer.

The dock widget (:class:`CountWidget`) counts the chosen image layer with the shipped
or a chosen model (cell diameter auto or given, threshold, precision) in a worker
thread, so the viewer stays responsive, and adds a Labels layer of the cells and a
Points layer of their centroids, with the count shown in the widget. "Save" writes
the CSV, label image and ImageJ ROIs as ``cellcount count`` does. The reader
(:func:`get_reader`) opens cellcount's label TIFFs (``labels/<name>.tif``) as Labels.

napari imports this module only through the manifest (``napari.yaml``); the core
package never imports napari.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cellcount.counter import AUTO, Counter, CountResult, parse_diameter

if TYPE_CHECKING:
    import napari


def count_layer_data(
    data: np.ndarray, model: str = "pretrained", diameter: str = AUTO,
    threshold: float | None = None, precision: str = "auto",
) -> CountResult:  # fmt: skip
    """Count an image layer's array (grey (H, W) or RGB (H, W, 3), any dtype)."""
    counter = Counter.from_checkpoint(model, threshold=threshold, precision=precision,
                                      cell_diameter=parse_diameter(diameter))  # fmt: skip
    return counter.count(np.asarray(data))


def result_layers(result: CountResult, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    """napari layer tuples of a count: the cells as Labels, their centroids as Points."""
    centroids = np.array([[c["centroid_y"], c["centroid_x"]] for c in result.cells]).reshape(-1, 2)
    return [
        (result.labels, {"name": f"{name} cells"}, "labels"),
        (centroids, {"name": f"{name} centroids", "size": max(3.0, result.cell_diameter / 4),
                     "face_color": "yellow"}, "points"),
    ]  # fmt: skip


def count_folder(
    folder: Path, out: Path, model: str = "pretrained", diameter: str = AUTO,
    threshold: float | None = None, precision: str = "auto",
) -> int:  # fmt: skip
    """Count every image of ``folder`` into ``out`` exactly as ``cellcount count`` does
    (CSV, label images, overlays, resume), with napari's progress bar; the exit status."""
    from napari.utils import progress

    from cellcount.cli.count import build_parser, count_all

    args = [str(folder), "--model", model, "--out", str(out), "--cell-diameter", diameter,
            "--precision", precision]  # fmt: skip
    if threshold is not None:
        args += ["--threshold", str(threshold)]
    return count_all(build_parser().parse_args(args), bar=progress)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[Any]] | None:
    """napari reader hook: cellcount label images (``.../labels/*.tif``) as Labels."""
    first = Path(path[0] if isinstance(path, list) else path)
    if first.parent.name != "labels" or first.suffix.lower() not in (".tif", ".tiff"):
        return None
    return _read_labels


def _read_labels(path: str | list[str]) -> list[Any]:
    import tifffile

    paths = path if isinstance(path, list) else [path]
    return [(tifffile.imread(p), {"name": Path(p).stem}, "labels") for p in paths]


def _widget_base() -> type:
    from qtpy.QtWidgets import QWidget

    return QWidget


class CountWidget(_widget_base()):  # type: ignore[misc]
    """Dock widget: layer, model, diameter, threshold, precision; Count and Save buttons."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QPushButton

        super().__init__()
        self.viewer = viewer
        self.result: CountResult | None = None
        self.layer_box, self.model = QComboBox(), QLineEdit("pretrained")
        self.diameter, self.threshold = QLineEdit(AUTO), QLineEdit("")
        self.precision = QComboBox()
        self.precision.addItems(["auto", "fp32", "bf16"])
        self.threshold.setPlaceholderText("model's counting threshold")
        self.count_button, self.save_button = QPushButton("Count"), QPushButton("Save...")
        self.folder_button = QPushButton("Count a folder...")
        self.status = QLabel("choose an image layer and press Count")
        layout = QFormLayout(self)
        for label, field in (
            ("image", self.layer_box),
            ("model", self.model),
            ("cell diameter (px)", self.diameter),
            ("threshold", self.threshold),
            ("precision", self.precision),
        ):
            layout.addRow(label, field)  # fmt: skip
        layout.addRow(self.count_button)
        layout.addRow(self.save_button)
        layout.addRow(self.folder_button)
        layout.addRow(self.status)
        self.count_button.clicked.connect(self.start_count)
        self.save_button.clicked.connect(self.ask_save)
        self.folder_button.clicked.connect(self.ask_folder)
        viewer.layers.events.inserted.connect(self.refresh_layers)
        viewer.layers.events.removed.connect(self.refresh_layers)
        self.refresh_layers()

    def refresh_layers(self, *_: Any) -> None:
        """List the viewer's image layers."""
        current = self.layer_box.currentText()
        self.layer_box.clear()
        names = [layer.name for layer in self.viewer.layers if type(layer).__name__ == "Image"]
        self.layer_box.addItems(names)
        if current in names:
            self.layer_box.setCurrentText(current)

    def options(self) -> dict[str, Any]:
        """The widget's settings as :func:`count_layer_data` arguments."""
        text = self.threshold.text().strip()
        return {"model": self.model.text().strip() or "pretrained",
                "diameter": self.diameter.text().strip() or AUTO,
                "threshold": float(text) if text else None,
                "precision": self.precision.currentText()}  # fmt: skip

    def start_count(self) -> Any:
        """Count the chosen layer in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        name = self.layer_box.currentText()
        if not name:
            self.status.setText("no image layer to count")
            return None
        data = self.viewer.layers[name].data
        worker = create_worker(count_layer_data, np.asarray(data), **self.options())
        worker.returned.connect(lambda result: self.show_result(result, name))
        worker.errored.connect(lambda err: self.status.setText(f"error: {err}"))
        self.count_button.setEnabled(False)
        worker.finished.connect(lambda: self.count_button.setEnabled(True))
        self.status.setText(f"counting {name}...")
        worker.start()
        return worker

    def show_result(self, result: CountResult, name: str) -> None:
        """Add the result's layers (replacing earlier ones of this image) and the count."""
        self.result = result
        for data, meta, kind in result_layers(result, name):
            if meta["name"] in self.viewer.layers:
                self.viewer.layers.remove(meta["name"])
            getattr(self.viewer, f"add_{kind}")(data, **meta)
        note = f" ({result.warning})" if result.warning else ""
        self.status.setText(f"{result.count} cells in {name}, diameter "
                            f"{result.cell_diameter:.1f} px{note}")  # fmt: skip

    def ask_folder(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Count the images of")
        if folder:
            self.start_folder(Path(folder), Path(folder) / "cellcount")

    def start_folder(self, folder: Path, out: Path) -> Any:
        """Count a folder into ``out`` in a worker thread (progress in napari's activity
        dock); returns the worker."""
        from napari.qt.threading import create_worker

        worker = create_worker(count_folder, folder, out, **self.options())
        done = f"counted {folder} -> {out / 'counts.csv'}"
        failed = " (some images failed: see the error column)"
        worker.returned.connect(lambda status: self.status.setText(done + failed * bool(status)))
        worker.errored.connect(lambda err: self.status.setText(f"error: {err}"))
        self.status.setText(f"counting the images of {folder}...")
        worker.start()
        return worker

    def ask_save(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Save counts to")
        if folder:
            self.save(Path(folder))

    def save(self, folder: Path) -> None:
        """Write the last count as ``cellcount count`` would: CSV, labels, ROIs."""
        from cellcount.cli.count import write_labels, write_rois
        from cellcount.counter import CELL_COLUMNS
        from cellcount.runtime.files import write_csv

        if self.result is None:
            self.status.setText("nothing counted yet")
            return
        name = self.layer_box.currentText() or "image"
        row = {"name": name, "count": self.result.count,
               "cell_diameter": self.result.cell_diameter}  # fmt: skip
        write_csv(folder / "counts.csv", [row])
        write_labels(self.result.labels, folder / "labels" / f"{name}.tif")
        write_rois(self.result.labels, folder / "rois" / f"{name}.zip")
        write_csv(folder / "cells" / f"{name}.csv", self.result.cells, CELL_COLUMNS)
        self.status.setText(f"saved to {folder}")
