"""Count cells in a folder of images: ``cellcount count INPUT... --model M --out DIR``.

``--model`` is a checkpoint path or the name of a shipped model (``pretrained``).

Writes into ``--out``:

* ``counts.csv``: one row per image (file, count, mean/median cell area in px,
  threshold, cell diameter, model, checkpoint hash, error);
* ``labels/<name>.tif``: 16-bit label image (0 background, 1..count);
* ``overlays/<name>.png``: the image with cell outlines and numbers;
* ``cells/<name>.csv`` (``--per-cell``): id, centroid, area, mean intensity;
* ``rois/<name>.zip`` (``--rois``): ImageJ/Fiji ROI set;
* with ``--truth DIR``: per-image ``true_count``, ``tp``, ``fp``, ``fn`` columns (the
  counted cells matched one to one to the annotated points or mask objects, see
  :mod:`cellcount.evaluation.truth_points`) and ``scores.json`` (precision, recall,
  F1, MAE, MPE over the scored images).

Every file is written atomically. A bad image is reported in the CSV's error
column and on stderr, the others are still counted, and the exit status is 1.
Re-running the same command skips images already counted with the same model
and options, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from roifile import ImagejRoi, roiwrite
from scipy import ndimage as ndi
from skimage.measure import find_contours
from tqdm.auto import tqdm

from cellcount.counter import (
    AUTO,
    CELL_COLUMNS,
    DEFAULT_BATCH_IMAGES,
    DEFAULT_TILE_SIZE,
    MIN_TILE_SIZE,
    Counter,
    CountResult,
    parse_diameter,
)
from cellcount.data.io import IMAGE_SUFFIXES, DataError
from cellcount.data.microscope import PROJECTIONS, PlaneChoice, is_microscope_file
from cellcount.data.microscope import SUFFIXES as MICROSCOPE_SUFFIXES
from cellcount.data.normalize import Normalized
from cellcount.data.sizes import MAX_SCALE, MIN_SCALE
from cellcount.evaluation.overlays import render_overlay, save_png
from cellcount.evaluation.truth_points import SCORE_COLUMNS, score_labels, summary
from cellcount.inference.predict import PRECISIONS
from cellcount.inference.pretrained import PRETRAINED, resolve_model
from cellcount.runtime.files import (
    atomic_path,
    atomic_write_text,
    clean_stale_temporaries,
    file_sha256,
    path_sha256,
    write_csv,
)
from cellcount.runtime.pipeline import run_overlapped

COUNT_COLUMNS = (
    "file", "name", "count", "mean_cell_area", "median_cell_area", "threshold", "cell_diameter",
    "diameter_source", "pixel_size_um", "model", "checkpoint_sha256", "warning", "error",
)  # fmt: skip
RECORDS = ".cellcount/records"


# -- inputs --------------------------------------------------------------------------
def collect_inputs(
    inputs: Sequence[str], recursive: bool = False, exclude: Path | None = None
) -> list[tuple[Path, str]]:
    """Expand files, folders and glob patterns into ``(path, output name)`` pairs.

    Folder contents get names from their path inside the folder (``a/b.tif`` ->
    ``a__b``) so that files of the same name in sub-folders do not collide. Files
    inside ``exclude`` (the output folder) are never inputs.

    Raises:
        DataError: an input matches no image file.
    """
    found: list[tuple[Path, str]] = []
    for item in inputs:
        matched = [pair for pair in _expand(item, recursive) if not _inside(pair[0], exclude)]
        if not matched:
            hint = " or add --recursive" if Path(item).is_dir() and not recursive else ""
            raise DataError(
                f"{item} matches no image file ({', '.join(IMAGE_SUFFIXES)}); check the path{hint}."
            )
        found += matched
    return _unique_names(found)


def _expand(item: str, recursive: bool) -> list[tuple[Path, str]]:
    path = Path(item)
    if path.is_dir() and not is_microscope_file(path):
        files = sorted(p for p in path.glob("**/*" if recursive else "*") if _is_image(p))
        return [(p, "__".join([*p.relative_to(path).parent.parts, _stem(p)])) for p in files]
    if path.is_file() or is_microscope_file(path):
        return [(path, _stem(path))]
    matches = sorted(Path(p) for p in glob.glob(item, recursive=recursive))
    return [(p, _stem(p)) for p in matches if _is_image(p)]


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


def _is_image(path: Path) -> bool:
    if path.name.startswith(".") or any(part.endswith(".zarr") for part in path.parent.parts):
        return False
    if is_microscope_file(path):
        return path.exists()
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _stem(path: Path) -> str:
    """The name of an image: its file name without (OME) suffixes."""
    name = path.name
    for suffix in (*MICROSCOPE_SUFFIXES, *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _unique_names(pairs: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    seen: dict[str, int] = {}
    unique = []
    for path, name in pairs:
        seen[name] = seen.get(name, 0) + 1
        unique.append((path, name if seen[name] == 1 else f"{name}__{seen[name]}"))
    return unique


# -- outputs -------------------------------------------------------------------------
def write_labels(labels: np.ndarray, path: Path) -> None:
    """Label image as a compressed 16-bit TIFF (32-bit beyond 65535 cells)."""
    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")


def write_rois(labels: np.ndarray, path: Path) -> None:
    """One ImageJ polygon ROI per cell (outline in image coordinates), as a zip."""
    rois = []
    for label, window in enumerate(ndi.find_objects(labels), start=1):
        if window is None:
            continue
        cell = np.pad(labels[window] == label, 1)
        contour = max(find_contours(cell.astype(np.float32), 0.5), key=len)
        y0, x0 = window[0].start - 1, window[1].start - 1
        rois.append(ImagejRoi.frompoints(contour[:, ::-1] + (x0, y0), name=f"cell-{label:05d}"))
    with atomic_path(path) as tmp:
        tmp.unlink()  # roiwrite appends to existing zips
        if rois:
            roiwrite(tmp, rois)
        else:
            tmp.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip archive


def output_files(name: str, out: Path, options: argparse.Namespace) -> dict[str, Path]:
    """The per-image files that the options ask for, by kind."""
    wanted = {"labels": (not options.no_labels, f"labels/{name}.tif"),
              "overlay": (not options.no_overlays, f"overlays/{name}.png"),
              "cells": (options.per_cell, f"cells/{name}.csv"),
              "rois": (options.rois, f"rois/{name}.zip")}  # fmt: skip
    return {kind: out / relative for kind, (on, relative) in wanted.items() if on}


def write_outputs(result: CountResult, name: str, out: Path, options: argparse.Namespace) -> None:
    """Write the per-image files that the options ask for."""
    files = output_files(name, out, options)
    if "labels" in files:
        write_labels(result.labels, files["labels"])
    if "overlay" in files:
        save_png(render_overlay(result.image, result.labels, numbers=True), files["overlay"])
    if "cells" in files:
        write_csv(files["cells"], result.cells, CELL_COLUMNS)
    if "rois" in files:
        write_rois(result.labels, files["rois"])


def count_row(path: Path, name: str, result: CountResult, model: dict[str, Any]) -> dict[str, Any]:
    """The ``counts.csv`` row of a counted image."""
    areas = result.areas
    return {
        "file": str(path), "name": name, "count": result.count,
        "mean_cell_area": round(float(areas.mean()), 2) if areas.size else 0.0,
        "median_cell_area": round(float(np.median(areas)), 2) if areas.size else 0.0,
        "threshold": round(result.threshold, 6), **model,
        "cell_diameter": round(result.cell_diameter, 2), "warning": result.warning, "error": "",
        "pixel_size_um": "" if result.pixel_size_um is None else result.pixel_size_um,
    }  # fmt: skip


# -- the run -------------------------------------------------------------------------
def run_key(options: argparse.Namespace, checkpoint_sha256: str) -> dict[str, Any]:
    """What must match for a previous result to be reused on a re-run."""
    return {
        "checkpoint_sha256": checkpoint_sha256, "threshold": options.threshold,
        "channel": options.channel, "tta": options.tta, "cell_diameter": options.cell_diameter,
        "precision": options.precision, "per_cell": options.per_cell,
        "rois": options.rois, "no_labels": options.no_labels, "no_overlays": options.no_overlays,
        "truth": options.truth, "marker_type": options.marker_type, "scene": options.scene,
        "time": options.time, "z": options.z, "z_project": options.z_project,
        "cell_diameter_um": options.cell_diameter_um,
        "match_radius": options.match_radius,
    }  # fmt: skip


def previous_row(record: Path, key: dict[str, Any], files: list[Path]) -> dict[str, Any] | None:
    """The stored row of an image counted before with the same key (same file content,
    model and options) whose output files all still exist, else None."""
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("key") != key or not all(path.is_file() for path in files):
        return None
    return dict(stored["row"])


class CountsTable:
    """``counts.csv``, rewritten atomically as rows arrive (at most every
    ``interval`` s, and on :meth:`close`), so an interrupted run keeps its finished rows.

    This run's rows are in the order of ``names`` (the inputs), whatever order they
    arrive in. Rows of images counted into the same folder by earlier runs, and not
    part of this run, are kept (after this run's rows).
    """

    def __init__(self, path: Path, columns: Sequence[str], names: Sequence[str],
                 interval: float = 1.0) -> None:  # fmt: skip
        self.path, self.columns, self.interval = path, tuple(columns), interval
        self.order = {name: index for index, name in enumerate(names)}
        self.rows: list[dict[str, Any]] = []
        self.earlier = [row for row in _read_rows(path) if row.get("name") not in self.order]
        self.written = 0.0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if time.monotonic() - self.written >= self.interval:
            self.close()

    def close(self) -> None:
        ours = sorted(self.rows, key=lambda row: self.order.get(row["name"], len(self.order)))
        rows = [{key: row.get(key, "") for key in self.columns} for row in ours + self.earlier]
        write_csv(self.path, rows, self.columns)
        self.written = time.monotonic()


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def check_output_folder(out: Path) -> None:
    """Create ``out`` and prove it writable, before any image is read.

    Raises:
        DataError: ``out`` is a file, or cannot be created or written to.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / RECORDS / ".write-test"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"--out {out} is not writable ({err.strerror or err}); choose a folder "
                        f"you can write to") from None  # fmt: skip


def check_diameter(counter: Counter) -> None:
    """A given diameter must be one the model can be rescaled to (``Counter.diameter_range``).

    Raises:
        DataError: naming the option and the valid range.
    """
    if counter.cell_diameter == AUTO:
        return
    low, high = counter.diameter_range
    if not low <= float(counter.cell_diameter) <= high:
        raise DataError(f"--cell-diameter {counter.cell_diameter:g} is outside what this model "
                        f"counts: {low:g} to {high:g} px (its cells are "
                        f"{counter.model_diameter:g} px; images are rescaled at most "
                        f"{MAX_SCALE:g}x up and {1 / MIN_SCALE:g}x down)")  # fmt: skip


def make_counter(options: argparse.Namespace, checkpoint: Path) -> Counter:
    """The :class:`Counter` of ``checkpoint`` that the options ask for (options checked).

    Raises:
        DataError: a ``--cell-diameter`` outside what the model counts.
    """
    counter = Counter.from_checkpoint(
        checkpoint, options.device, threshold=options.threshold,
        tile_size=options.tile_size, batch_size=options.batch_size, tta=options.tta,
        batch_images=options.batch_images,
        cell_diameter=options.cell_diameter, precision=options.precision,
        cell_diameter_um=options.cell_diameter_um,
        plane=PlaneChoice(options.scene, options.time, options.z, options.z_project),
    )  # fmt: skip
    check_diameter(counter)
    return counter


@dataclass
class Job:
    """One image on its way through :class:`ImageCounting`'s stages.

    ``row`` is set as soon as the image is done: reused from its record, or failed.
    """

    path: Path
    name: str
    key: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] | None = None
    normalized: Normalized | None = None
    result: CountResult | None = None


@dataclass
class ImageCounting:
    """Counting one image in three stages, :meth:`read`, :meth:`compute` and
    :meth:`write` (run overlapped by :func:`count_all`, or in turn by :meth:`one`).

    A stage never raises for a bad image: the failure becomes the image's row.
    """

    counter: Counter
    out: Path
    options: argparse.Namespace
    checkpoint_sha256: str

    @property
    def model(self) -> dict[str, Any]:
        """The model columns of every row."""
        source = "auto" if self.counter.cell_diameter == AUTO else "given"
        return {"diameter_source": "given_um" if self.options.cell_diameter_um else source,
                "model": str(self.counter.module.hparams["arch"]),
                "checkpoint_sha256": self.checkpoint_sha256}  # fmt: skip

    @cached_property
    def run_key(self) -> dict[str, Any]:
        """What every image's record must match besides the file (:func:`run_key`)."""
        return run_key(self.options, self.checkpoint_sha256)

    def one(self, pair: tuple[Path, str]) -> dict[str, Any]:
        """The row of one image: reused, or read, counted and written."""
        return self.write(next(self.compute([self.read(pair)])))

    def read(self, pair: tuple[Path, str]) -> Job:
        """Reuse the image's previous row when nothing changed, else read and normalise it."""
        job = Job(*pair)
        try:
            job.key = {**self.run_key, "file": str(job.path),
                       "file_sha256": path_sha256(job.path)}  # fmt: skip
        except OSError as err:
            self._failed(job, DataError(f"cannot read {job.path}: {err}"))
            return job
        files = list(output_files(job.name, self.out, self.options).values())
        job.row = previous_row(self.out / RECORDS / f"{job.name}.json", job.key, files)
        if job.row is None:
            try:
                job.normalized = self.counter.normalize(job.path, self.options.channel)
            except Exception as err:  # one bad image never sinks the run
                self._failed(job, err)
        return job

    def compute(self, jobs: list[Job]) -> Iterator[Job]:
        """Segment read images (the network, in batches where they allow, and
        post-processing), yielding each job as soon as it is done."""
        todo = [job.row is None and job.normalized is not None for job in jobs]
        images = [job.normalized for job, do in zip(jobs, todo, strict=True)
                  if do and job.normalized is not None]  # fmt: skip
        paths = [job.path for job, do in zip(jobs, todo, strict=True) if do]
        results = self.counter.count_many(images, paths)
        for job, do in zip(jobs, todo, strict=True):
            if do:
                result = next(results)
                if isinstance(result, Exception):
                    self._failed(job, result)
                else:
                    job.result = result
                job.normalized = None
            yield job

    def joins(self, group: list[Job], job: Job) -> bool:
        """Whether a read image may be counted in one batch with ``group``: images of
        one shape, as many as the counter predicts together (done images join any)."""
        if job.normalized is None:
            return True
        shapes = [j.normalized.image.shape for j in group if j.normalized is not None]
        shape = job.normalized.image.shape
        return all(s == shape for s in shapes) and len(shapes) < self.counter.batch_limit(shape)

    def write(self, job: Job) -> dict[str, Any]:
        """Write a counted image's files, score it against the truth, record it."""
        if job.row is not None:
            return job.row
        assert job.result is not None, "compute() sets a result or a row"
        try:
            write_outputs(job.result, job.name, self.out, self.options)
            row = count_row(job.path, job.name, job.result, self.model)
        except Exception as err:
            return self._failed(job, err)
        if self.options.truth:
            self._score(job, row)
        if not row["error"]:
            atomic_write_text(self.out / RECORDS / f"{job.name}.json",
                              json.dumps({"key": job.key, "row": row}))  # fmt: skip
        return row

    def _score(self, job: Job, row: dict[str, Any]) -> None:
        assert job.result is not None
        try:
            row.update(score_labels(job.result.labels, Path(self.options.truth), job.name,
                                    job.result.cell_diameter, self.options.match_radius,
                                    self.options.marker_type))  # fmt: skip
        except DataError as err:  # the count stands; the row is marked for a re-run
            print(f"cellcount: {job.path}: truth: {err}", file=sys.stderr)
            row["error"] = f"truth: {err}"

    def _failed(self, job: Job, err: Exception) -> dict[str, Any]:
        """Mark the job failed (its row says why) and drop its pixels; the row."""
        job.row = error_row(job.path, job.name, self.model, self.options, err)
        job.normalized = job.result = None
        return job.row


def count_all(options: argparse.Namespace, bar: Callable[..., Any] = tqdm) -> int:
    """Count every input image; return the process exit status (0 ok, 1 some failed).

    Reading, counting and writing overlap (``--prefetch`` images in each queue, see
    :mod:`cellcount.runtime.pipeline`); with ``--dask`` the images are spread over a
    Dask cluster (:mod:`cellcount.runtime.distributed`). ``bar`` makes the progress bar
    (tqdm's interface; napari passes its own).
    """
    out = Path(options.out)
    check_output_folder(out)
    clean_stale_temporaries(out)
    inputs = collect_inputs(options.inputs, options.recursive, exclude=out)
    checkpoint = resolve_model(options.model)  # options are checked before any output
    counting = ImageCounting(make_counter(options, checkpoint), out, options,
                             file_sha256(checkpoint))  # fmt: skip
    table = CountsTable(out / "counts.csv", _columns(options), [name for _, name in inputs])
    progress = bar(total=len(inputs), desc="counting", unit="image", disable=options.quiet)

    def done(row: dict[str, Any]) -> None:
        table.add(row)
        progress.update(1)

    try:
        if options.dask:
            from cellcount.runtime.distributed import count_on_dask

            count_on_dask(options.dask, inputs, counting, done)
        else:
            run_overlapped(inputs, counting.read, counting.compute, counting.write, done,
                           options.prefetch, counting.joins)  # fmt: skip
    finally:  # also on Ctrl-C: every finished row is kept
        table.close()
        progress.close()
    return _summarise(table.rows, out, options)


def _summarise(rows: list[dict[str, Any]], out: Path, options: argparse.Namespace) -> int:
    """Scores, the summary line and warnings; the exit status (1 if an image failed)."""
    failed = [r for r in rows if r["error"]]
    if options.truth:
        _write_scores(rows, out, options.quiet)
    if not options.quiet:
        print(f"counted {len(rows) - len(failed)} of {len(rows)} images -> {out / 'counts.csv'}")
        for row in rows:
            if row.get("warning"):
                print(f"warning: {row['file']}: {row['warning']}", file=sys.stderr)
    return 1 if failed else 0


def error_row(
    path: Path, name: str, model: dict[str, Any], options: argparse.Namespace, err: Exception
) -> dict[str, Any]:
    """The row of an image that failed, with a message saying what to do."""
    message = str(err) if isinstance(err, DataError) else f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        message += f" (out of memory: try a smaller --tile-size than {options.tile_size})"
    print(f"cellcount: {path}: {message}", file=sys.stderr)
    empty = dict.fromkeys(_columns(options), "")
    return {**empty, "file": str(path), "name": name, **model, "error": message}


def _columns(options: argparse.Namespace) -> tuple[str, ...]:
    return COUNT_COLUMNS + SCORE_COLUMNS if options.truth else COUNT_COLUMNS


def _write_scores(rows: list[dict[str, Any]], out: Path, quiet: bool) -> None:
    """``scores.json``: the summary over the images scored against the truth folder."""
    scores = summary(rows)
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=1))
    if not quiet and scores["n_images"]:
        figures = ", ".join(f"{key} {scores[key]:.3f}" for key in ("precision", "recall", "f1"))
        print(
            f"against the truth: {int(scores['n_images'])} images, {figures}, MAE "
            f"{scores['mae']:.2f}, MPE {scores['mpe']:+.1%} -> {out / 'scores.json'}"
        )


def diameter_argument(text: str) -> float | str:
    """``--cell-diameter``: ``auto`` or a positive number of px (checked before any image)."""
    try:
        return parse_diameter(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount count",
        description="Count cells in fluorescence images with a trained model.",
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--model", "--ckpt", dest="model", required=True,
                        help="checkpoint file (.ckpt), or a shipped model: "
                             f"{', '.join(PRETRAINED)} (no download)")  # fmt: skip
    parser.add_argument("--cell-diameter", type=diameter_argument, default=AUTO, metavar="D",
                        help="typical cell diameter in px, or auto (default): estimated per "
                             "image and written to counts.csv; images are rescaled to the "
                             "model's cell size")  # fmt: skip
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--recursive", action="store_true", help="search folders recursively")
    _add_plane_options(parser)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--batch-size", type=at_least(1), default=1,
                        help="tiles of a large image per forward pass (>= 1)")  # fmt: skip
    parser.add_argument("--batch-images", type=at_least(1), default=DEFAULT_BATCH_IMAGES,
                        metavar="N",
                        help="consecutive images of one size, counted at one cell size, "
                             "predicted in one forward pass (at most N, together within the "
                             "tile budget; default %(default)s; 1: one by one)")  # fmt: skip
    parser.add_argument("--tile-size", type=at_least(MIN_TILE_SIZE), default=DEFAULT_TILE_SIZE,
                        metavar="SIZE",
                        help="tile budget (px): images of up to SIZE x SIZE pixels are "
                             "predicted whole, larger ones in tiles of side <= SIZE; memory "
                             "grows with it (default %(default)s)")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=None,
                        help="probability threshold (default: the model's counting threshold, "
                             "chosen on validation for unbiased counts)")  # fmt: skip
    parser.add_argument("--tta", action="store_true", help="average over flipped copies")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="network arithmetic; auto (default): bf16 autocast where the "
                             "CPU/GPU computes it natively, else fp32")  # fmt: skip
    parser.add_argument("--per-cell", action="store_true", help="write cells/<name>.csv")
    parser.add_argument("--rois", action="store_true", help="write ImageJ ROI zips")
    parser.add_argument("--no-labels", action="store_true", help="skip label TIFFs")
    parser.add_argument("--no-overlays", action="store_true", help="skip overlay PNGs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--prefetch", type=at_least(0), default=2, metavar="N",
                        help="images read ahead and waiting to be written while one is "
                             "counted (default %(default)s; 0: one image at a time)")  # fmt: skip
    parser.add_argument("--dask", default=None, metavar="ADDRESS",
                        help="count on a Dask cluster: a scheduler address "
                             "(tcp://host:8786) or local:N for N local worker processes "
                             "(needs cellcount[dask])")  # fmt: skip
    _add_truth_options(parser)
    return parser


def _add_plane_options(parser: argparse.ArgumentParser) -> None:
    """Channels, planes of microscope files, and micrometres."""
    parser.add_argument("--channel", default=None,
                        help="channel holding the cells, for multi-channel images: its index, "
                             "or its name in a microscope file (e.g. DAPI)")  # fmt: skip
    parser.add_argument("--scene", default=None, help="scene of a microscope file (index or "
                        "name; default the first)")  # fmt: skip
    parser.add_argument("--time", type=at_least(0), default=0, help="time point (default 0)")
    parser.add_argument("--z", type=at_least(0), default=None, help="z-plane of a z-stack")
    parser.add_argument("--z-project", choices=PROJECTIONS, default=None,
                        help="project a z-stack instead of choosing a plane")  # fmt: skip
    parser.add_argument("--cell-diameter-um", type=positive_float, default=None, metavar="UM",
                        help="typical cell diameter in µm, converted to px per image with the "
                             "pixel size the file records")  # fmt: skip


def _add_truth_options(parser: argparse.ArgumentParser) -> None:
    """Scoring against a folder of annotations."""
    parser.add_argument("--truth", metavar="DIR", type=truth_folder, default=None,
                        help="score the counts against annotations in DIR: per image "
                             "<name>.csv (X, Y columns), CellCounter_<name>.xml, <name>.zip "
                             "(ImageJ ROIs) or a mask <name>.png/.tif")  # fmt: skip
    parser.add_argument(
        "--marker-type",
        default=None,
        metavar="TYPE",
        help="Cell Counter marker type (number or name) to score against",
    )
    parser.add_argument(
        "--match-radius",
        type=positive_float,
        default=None,
        metavar="PX",
        help="matching radius in px (default: 1.25 cell diameters)",
    )


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def truth_folder(text: str) -> str:
    """``--truth``: an existing folder (checked before any image)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder of annotations")
    return text


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    options = build_parser().parse_args(argv)
    if options.cell_diameter_um is not None and options.cell_diameter != AUTO:
        print("cellcount count: error: give --cell-diameter (px) or --cell-diameter-um, not both",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return count_all(options)
    except (DataError, ValueError, FileNotFoundError) as err:
        print(f"cellcount count: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
