"""Point annotations: the clicks labs make in Fiji, as (row, col) cell positions.

Readers, by file type (:func:`read_points`):

* ``.csv`` / ``.tsv`` / ``.txt``: a table with ``X`` and ``Y`` columns (any case) in
  pixels, ``X`` the column and ``Y`` the row, e.g. an ImageJ Results table saved from
  the multi-point tool (its unnamed index column is ignored);
* ``.xml``: a Fiji Cell Counter marker file (``CellCounter_<image>.xml``), markers
  grouped by type; one type is chosen with ``marker_type`` (its number or name);
* ``.zip`` / ``.roi``: an ImageJ ROI set or ROI; a point ROI gives each of its
  points, an area ROI (polygon, freehand, oval, rectangle) its centroid.

A truth folder may also hold masks or label images (:func:`read_truth_points`
takes their object centroids), so one ``--truth`` folder serves either kind. An
empty file or a table with a header and no rows is a valid annotation of 0 cells.
Points outside the image are an error naming the file and the point.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcount.data.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
ROI_SUFFIXES = (".zip", ".roi")
POINT_SUFFIXES = (*TABLE_SUFFIXES, ".xml", *ROI_SUFFIXES)
MASK_SUFFIXES = (".png", ".tif", ".tiff")


def read_points(path: Path | str, marker_type: str | None = None) -> np.ndarray:
    """Cell positions of a point annotation file: float64 (N, 2) of (row, col), in px.

    Raises:
        DataError: missing or unreadable file, no X/Y columns, several marker types
            and none chosen, an unknown marker type.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _read_table(path)
    if suffix == ".xml":
        return _read_cell_counter(path, marker_type)
    if suffix in ROI_SUFFIXES:
        return _read_rois(path)
    raise DataError(
        f"{path}: not a point annotation (use {', '.join(POINT_SUFFIXES)}, or a mask image)"
    )


def _read_table(path: Path) -> np.ndarray:
    """``X``/``Y`` columns of a CSV/TSV table (delimiter sniffed)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        return np.zeros((0, 2))
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    if "x" not in columns or "y" not in columns:
        found = ", ".join(repr(name) for name in reader.fieldnames or ()) or "none"
        raise DataError(
            f"{path}: needs X and Y columns (pixel positions; x/y also accepted), found {found}"
        )
    points = []
    for line, row in enumerate(reader, start=2):
        try:
            points.append((float(row[columns["y"]]), float(row[columns["x"]])))
        except (TypeError, ValueError):
            raise DataError(f"{path}, line {line}: X/Y are not numbers: {row}") from None
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _read_cell_counter(path: Path, marker_type: str | None) -> np.ndarray:
    """Markers of one type of a Fiji Cell Counter XML file."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise DataError(f"{path}: not a readable Cell Counter XML file ({err})") from None
    types = {}
    for element in root.iter("Marker_Type"):
        number = (element.findtext("Type") or "").strip()
        name = (element.findtext("Name") or f"Type {number}").strip()
        markers = [(float(m.findtext("MarkerY") or "nan"), float(m.findtext("MarkerX") or "nan"))
                   for m in element.iter("Marker")]  # fmt: skip
        types[(number, name)] = markers
    chosen = _choose_marker_type(path, types, marker_type)
    points = np.asarray(chosen, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise DataError(f"{path}: a marker lacks MarkerX or MarkerY")
    return points


def _choose_marker_type(
    path: Path, types: dict[tuple[str, str], list[tuple[float, float]]], wanted: str | None
) -> list[tuple[float, float]]:
    """The markers of the wanted type (number or name), or of the only non-empty one."""
    if wanted is not None:
        for (number, name), markers in types.items():
            if wanted in (number, name):
                return markers
        known = ", ".join(f"{number} ({name!r})" for number, name in types) or "none"
        raise DataError(f"{path}: no marker type {wanted!r}; the file has {known}")
    used = {key: markers for key, markers in types.items() if markers}
    if len(used) > 1:
        listed = ", ".join(f"{n} ({name!r}: {len(m)} markers)" for (n, name), m in used.items())
        raise DataError(
            f"{path}: markers of several types ({listed}); choose one with --marker-type"
        )
    return next(iter(used.values()), [])


def _read_rois(path: Path) -> np.ndarray:
    """Points of point ROIs and centroids of area ROIs of an ImageJ ROI (set)."""
    from roifile import ROI_TYPE, ImagejRoi

    try:
        rois = ImagejRoi.fromfile(path)
    except Exception as err:  # roifile raises assorted errors on foreign files
        raise DataError(f"{path}: not a readable ImageJ ROI file ({err})") from None
    points: list[tuple[float, float]] = []
    for roi in rois if isinstance(rois, list) else [rois]:
        xy = np.asarray(roi.coordinates(), dtype=np.float64).reshape(-1, 2)
        if roi.roitype == ROI_TYPE.POINT:
            points.extend((y, x) for x, y in xy)
        elif len(xy):
            points.append(_polygon_centroid(xy))
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _polygon_centroid(xy: np.ndarray) -> tuple[float, float]:
    """(row, col) area centroid of a polygon given as (N, 2) x, y vertices."""
    x, y = xy[:, 0], xy[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    if abs(area) < 1e-9:  # degenerate (a line or a point): the vertex mean
        return float(y.mean()), float(x.mean())
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    return float(cy), float(cx)


def check_inside(points: np.ndarray, shape: Sequence[int], source: Path | str) -> np.ndarray:
    """``points`` if all lie within an image of ``shape`` (H, W, ...); else a DataError."""
    height, width = shape[:2]
    outside = (points[:, 0] < -0.5) | (points[:, 0] > height - 0.5)
    outside |= (points[:, 1] < -0.5) | (points[:, 1] > width - 0.5)
    if outside.any():
        row, col = points[np.flatnonzero(outside)[0]]
        raise DataError(
            f"{source}: {int(outside.sum())} point(s) outside the {width}x{height} image, "
            f"e.g. X={col:g}, Y={row:g}; is this the annotation of another image, or are "
            f"the positions calibrated (e.g. in µm) instead of pixels?"
        )
    return points


def find_annotation(folder: Path, name: str) -> Path | None:
    """The annotation of image ``name`` in ``folder``: a point file or a mask, else None.

    Tried in order: ``<name>`` with each point suffix, ``CellCounter_<name>.xml``, then
    ``<name>`` with each mask suffix.
    """
    candidates = [folder / f"{name}{suffix}" for suffix in POINT_SUFFIXES]
    candidates.append(folder / f"CellCounter_{name}.xml")
    candidates += [folder / f"{name}{suffix}" for suffix in MASK_SUFFIXES]
    return next((path for path in candidates if path.is_file()), None)


def annotation_names(name: str) -> str:
    """The file names :func:`find_annotation` looks for, for messages."""
    return ", ".join([f"{name}{s}" for s in POINT_SUFFIXES] + [f"CellCounter_{name}.xml"] +
                     [f"{name}{s}" for s in MASK_SUFFIXES])  # fmt: skip


def read_truth_points(
    path: Path, shape: Sequence[int], marker_type: str | None = None
) -> np.ndarray:
    """True cell positions (float64 (N, 2) row, col) from a point file or a mask image,
    checked to lie inside an image of ``shape``."""
    if path.suffix.lower() in MASK_SUFFIXES:
        from cellcount.data.io import read_array, read_labels, read_mask
        from cellcount.evaluation.matching import centres, label_mask

        grey = read_array(path).ndim == 2
        labels = read_labels(path) if grey else label_mask(read_mask(path))
        if labels.shape[:2] != tuple(shape[:2]):
            raise DataError(
                f"{path}: mask is {labels.shape[1]}x{labels.shape[0]}, the image "
                f"{shape[1]}x{shape[0]}; is it the mask of another image?"
            )
        return centres(labels, "centroid")
    return check_inside(read_points(path, marker_type), shape, path)
