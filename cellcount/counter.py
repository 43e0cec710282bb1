"""Python API for counting: ``Counter.from_checkpoint(path).count(image_or_path)``.

A :class:`Counter` holds a trained model with its stored threshold and
post-processing constants; :meth:`Counter.count` returns the count, the label
image and a per-cell table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

from cellcount.data.errors import DataError
from cellcount.data.io import RawImage, normalize_image, read_normalized, select_channel
from cellcount.data.microscope import PlaneChoice
from cellcount.data.normalize import Normalized
from cellcount.data.sizes import (
    MAX_SCALE,
    MIN_SCALE,
    rescale_image,
    rescaled_shape,
    resize_smooth,
    scale_for,
)
from cellcount.evaluation.postprocess import PostprocessParams, SplitProfile, postprocess
from cellcount.inference.cell_size import (
    count_growth,
    first_guess,
    follows_told_size,
    measured_diameter,
    needs_refinement,
)
from cellcount.inference.checkpoints import load_module
from cellcount.inference.predict import (
    predict_batch,
    predict_probabilities,
    resolve_device,
    resolve_precision,
)
from cellcount.inference.pretrained import resolve_model
from cellcount.runtime.allocator import tune_allocator
from cellcount.training.module import CellSegModule

CELL_COLUMNS = ("id", "centroid_y", "centroid_x", "area", "area_um2", "mean_intensity")
# Tile budget for counting (px; see predict_probabilities): an image of up to
# 1600 x 1600 px, e.g. a 1600 x 1200 FNC image, is predicted in one forward pass
# (tiling it would predict ~12 % more pixels for the overlaps); an 8000 x 8000
# one in 6 x 6 balanced tiles of 1496 px. Peak memory of counting at this
# default: BENCHMARKS.md section 6 (under 4 GB for 8000 x 8000 on CPU).
DEFAULT_TILE_SIZE = 1600
# Tiles keep a 96 px margin on each side (the net's receptive field) plus some interior.
MIN_TILE_SIZE = 256
AUTO = "auto"
# Images of one size predicted in one forward pass (at most; and within the tile
# budget's pixels): on 2 CPU cores, 256 x 256 images cost ~30 % less each in batches
# of 4-8 than one by one (BENCHMARKS.md section 9).
DEFAULT_BATCH_IMAGES = 8


@dataclass(frozen=True)
class Prediction:
    """The network's float32 (H, W) probabilities of an image counted at ``diameter`` px."""

    diameter: float
    probabilities: np.ndarray = field(repr=False)


@dataclass
class CountResult:
    """Outcome of counting one image.

    Attributes:
        count: number of cells (>= 0).
        labels: int32 (H, W) label image, 0 background, 1..count cells.
        cells: one dict per cell with ``CELL_COLUMNS`` (pixels; intensity is the
            grey mean of the [0, 1] image).
        threshold: the probability threshold used.
        image: the RGB float (H, W, 3) image that was counted (normalised, [0, 1]).
        cell_diameter: the cell diameter (px) the image was counted at: the given
            one, or the estimate of ``--cell-diameter auto``.
        warning: empty, or why the count should not be trusted (e.g. no contrast).
        pixel_size_um: the image's pixel size in µm when its file records it, else None.
    """

    count: int
    labels: np.ndarray
    cells: list[dict[str, float]]
    threshold: float
    image: np.ndarray = field(repr=False)
    cell_diameter: float = 0.0
    warning: str = ""
    pixel_size_um: float | None = None

    @property
    def areas(self) -> np.ndarray:
        """Cell areas in pixels, float (count,)."""
        return np.array([cell["area"] for cell in self.cells], dtype=np.float64)


class Counter:
    """Counts cells with a trained model.

    Args:
        module: a trained :class:`CellSegModule`.
        threshold: probability threshold; None uses the model's counting threshold
            (chosen on validation for unbiased counts; else its kneedle threshold).
        split: how finely touching cells are split; None uses the profile chosen
            with the counting threshold (the paper's when the model has none).
        plane: scene, time point, z-plane or projection of microscope files.
        cell_diameter_um: typical cell diameter in µm, converted per image with the
            pixel size its file records (instead of ``cell_diameter``).
        tile_size: tile budget (px): images of up to ``tile_size ** 2`` px are predicted
            whole, larger ones in tiles of side <= ``tile_size``.
        batch_size: tiles per forward pass.
        batch_images: images of one shape that :meth:`count_many` predicts in one
            forward pass (at most; together within ``tile_size ** 2`` px); 1: one by one.
        tta: average the probabilities over horizontal/vertical flips.
        cell_diameter: typical cell diameter (px) in the images to count; ``"auto"``
            (default): estimated per image (:mod:`cellcount.inference.cell_size`);
            None: the model's own. Each image is rescaled so its cells have the
            model's training size before prediction, the probabilities are resized
            back, and post-processing uses this diameter.
        precision: ``auto`` (bf16 where the device computes it natively, else
            fp32), ``fp32`` or ``bf16`` autocast for the network (see
            :func:`cellcount.inference.predict.resolve_precision`).

    Images are normalised the way the model was trained (its checkpoint records it).
    Creating a Counter lets glibc's allocator keep freed memory for reuse, which
    makes CPU inference faster at some memory cost
    (:func:`cellcount.runtime.allocator.tune_allocator`; ``CELLCOUNT_MALLOC_TUNING=0``
    keeps glibc's defaults; no effect on other systems).
    """

    def __init__(
        self,
        module: CellSegModule,
        threshold: float | None = None,
        tile_size: int | None = DEFAULT_TILE_SIZE,
        batch_size: int = 1,
        tta: bool = False,
        batch_images: int = DEFAULT_BATCH_IMAGES,
        cell_diameter: float | str | None = AUTO,
        precision: str = "auto",
        split: SplitProfile | None = None,
        plane: PlaneChoice | None = None,
        cell_diameter_um: float | None = None,
    ) -> None:
        self.module = module.eval()
        self.split = module.count_split if split is None else split
        self.plane = plane
        if cell_diameter_um is not None and not 0 < cell_diameter_um < float("inf"):
            raise ValueError(f"cell_diameter_um must be a positive number, got {cell_diameter_um}")
        self.cell_diameter_um = cell_diameter_um
        self.threshold = module.count_threshold if threshold is None else float(threshold)
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        self.model_diameter = float(module.hparams["cell_diameter"])
        self.cell_diameter = _diameter_option(cell_diameter, self.model_diameter)
        self.normalization = module.normalization
        self.size_model = module.size_model
        if tile_size is not None and tile_size < MIN_TILE_SIZE:
            raise ValueError(f"tile_size must be >= {MIN_TILE_SIZE} px (or None), got {tile_size}")
        for name, value in (("batch_size", batch_size), ("batch_images", batch_images)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.tile_size = tile_size
        self.batch_size = batch_size
        self.batch_images = batch_images
        self.tta = tta
        self.precision = resolve_precision(precision, next(module.parameters()).device)
        tune_allocator()

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto", **options: object) -> Counter:
        """Load a checkpoint (``cellcount.train`` or ``cellcount convert`` output), or a
        shipped model by name (``"pretrained"``, see :mod:`cellcount.inference.pretrained`)."""
        module = load_module(resolve_model(path), resolve_device(device))
        return cls(module, **options)  # type: ignore[arg-type]

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray, cell_diameter: float | None = None) -> np.ndarray:
        """float (H, W, 3) RGB in [0, 1] -> float32 (H, W) cell probabilities.

        The image is predicted at the model's cell size, its cells taken to be
        ``cell_diameter`` px (default: the model's own).
        """
        scale = scale_for(cell_diameter or self.model_diameter, self.model_diameter)
        if abs(scale - 1) < 1e-3:
            return self._probabilities(image)
        return resize_smooth(self._probabilities(rescale_image(image, scale)), image.shape[:2])

    def _probabilities(self, image: np.ndarray) -> np.ndarray:
        predict = lambda x: predict_probabilities(  # noqa: E731
            self.module, x, self.tile_size, batch_size=self.batch_size, precision=self.precision
        )
        if not self.tta:
            return predict(image)
        flips = [(), (0,), (1,), (0, 1)]
        total = np.zeros(image.shape[:2], np.float32)
        for axes in flips:  # flip (a view: tiles are copied out of it), predict, flip back
            total += np.flip(predict(np.flip(image, axes)), axes)
        total /= len(flips)
        return total

    def normalize(
        self, image: np.ndarray | Path | str, channel: int | str | None = None
    ) -> Normalized:
        """An image file or raw array, normalised as the model was trained (with its warning)."""
        if isinstance(image, np.ndarray):
            raw = RawImage(image)
            if channel is not None:
                raw = RawImage(select_channel(image, int(channel), "<array>"))
            return normalize_image(raw, "<array>", self.normalization)
        return read_normalized(image, channel, self.normalization, self.plane)

    def count(
        self, image: np.ndarray | Path | str, channel: int | str | None = None
    ) -> CountResult:
        """Count the cells of an image file or array (any dtype; grey, RGB or RGBA; a
        microscope file's plane, see ``plane``).

        An image without usable contrast gets count 0 and a warning, not invented cells.

        Raises:
            DataError: ``cell_diameter_um`` is set but the file records no pixel size.
        """
        return self.count_normalized(self.normalize(image, channel), image)

    def count_normalized(
        self, normalized: Normalized, source: object = "the image",
        first: Prediction | None = None,
    ) -> CountResult:  # fmt: skip
        """Count the cells of an image :meth:`normalize` returned (``source`` names it in
        messages; ``first``: its first pass, when :meth:`count_many` predicted it).

        Raises:
            DataError: ``cell_diameter_um`` is set but the file records no pixel size.
        """
        size = normalized.pixel_size_um
        if not normalized.countable:
            empty = np.zeros(normalized.image.shape[:2], np.int32)
            return CountResult(0, empty, [], self.threshold, normalized.image, 0.0,
                               normalized.warning, size)  # fmt: skip
        diameter, labels, size_warning = self.segment(
            normalized.image, self._diameter_px(source, size), first
        )
        return CountResult(
            count=int(labels.max(initial=0)), labels=labels,
            cells=cell_table(labels, normalized.image, size), threshold=self.threshold,
            image=normalized.image, cell_diameter=diameter,
            warning="; ".join(filter(None, (normalized.warning, size_warning))),
            pixel_size_um=size,
        )  # fmt: skip

    def count_many(
        self, images: Sequence[Normalized], sources: Sequence[object]
    ) -> Iterator[CountResult | Exception]:
        """:meth:`count_normalized` of each image (or the exception it raised), in order,
        each as soon as it is done; the first passes of images of one shape counted at
        one size are predicted first, in batches (of :meth:`batch_limit` images)."""
        firsts = self._first_passes(images, sources)
        for normalized, source, first in zip(images, sources, firsts, strict=True):
            try:
                yield self.count_normalized(normalized, source, first)
            except Exception as err:  # this image's failure; the others stand
                yield err

    def batch_limit(self, shape: tuple[int, ...]) -> int:
        """How many images of ``shape`` (as the network sees them) one forward pass
        takes: ``batch_images``, at most the tile budget's pixels, 1 with ``tta``."""
        if self.tta:
            return 1
        if self.tile_size is None:
            return self.batch_images
        return max(1, min(self.batch_images, self.tile_size**2 // (shape[0] * shape[1])))

    def first_diameter(self, image: np.ndarray, cell_diameter: float | None = None) -> float:
        """The size (px) the first pass of an image counts at: ``cell_diameter``, the
        Counter's, or with ``auto`` the image's first guess (else the model's own)."""
        if cell_diameter is not None or self.cell_diameter != AUTO:
            return float(cell_diameter or self.cell_diameter)
        return first_guess(image) or self.model_diameter

    def _first_passes(
        self, images: Sequence[Normalized], sources: Sequence[object]
    ) -> list[Prediction | None]:
        """The first pass of each image (None where there is none to make: no contrast,
        or a size in µm the file cannot convert, which counting reports)."""
        planned: dict[tuple[float, tuple[int, ...]], list[int]] = {}
        for index, (normalized, source) in enumerate(zip(images, sources, strict=True)):
            if not normalized.countable:
                continue
            try:
                told = self._diameter_px(source, normalized.pixel_size_um)
            except DataError:
                continue
            key = (self.first_diameter(normalized.image, told), normalized.image.shape)
            planned.setdefault(key, []).append(index)
        firsts: list[Prediction | None] = [None] * len(images)
        for (diameter, shape), members in planned.items():
            scale = scale_for(diameter, self.model_diameter)
            step = self.batch_limit(rescaled_shape(shape[:2], scale))
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                probs = self._batch_probabilities([images[i].image for i in chunk], diameter)
                for index, prob in zip(chunk, probs, strict=True):
                    firsts[index] = Prediction(diameter, prob)
        return firsts

    def _batch_probabilities(self, images: list[np.ndarray], diameter: float) -> list[np.ndarray]:
        """:meth:`probabilities` of images of one shape at one diameter, in one batch."""
        if len(images) == 1:
            return [self.probabilities(images[0], diameter)]
        scale = scale_for(diameter, self.model_diameter)
        if abs(scale - 1) < 1e-3:
            return predict_batch(self.module, images, self.precision)
        scaled = [rescale_image(image, scale) for image in images]
        probs = predict_batch(self.module, scaled, self.precision)
        return [resize_smooth(prob, images[0].shape[:2]) for prob in probs]

    @property
    def diameter_range(self) -> tuple[float, float]:
        """The cell diameters (px) this model can count: its own rescaled at most
        ``MAX_SCALE`` times up and ``1 / MIN_SCALE`` times down."""
        return self.model_diameter / MAX_SCALE, self.model_diameter / MIN_SCALE

    def _diameter_px(self, image: object, pixel_size_um: float | None) -> float | None:
        """``cell_diameter_um`` in px for an image of this pixel size (None when not set)."""
        if self.cell_diameter_um is None:
            return None
        where = image if isinstance(image, Path | str) else "the image"
        if not pixel_size_um:
            raise DataError(f"{where} records no pixel size, so a diameter in µm cannot be "
                            f"converted; give --cell-diameter in px instead")  # fmt: skip
        diameter = self.cell_diameter_um / pixel_size_um
        low, high = self.diameter_range
        if not low <= diameter <= high:
            raise DataError(f"{self.cell_diameter_um:g} µm is {diameter:.1f} px in {where} "
                            f"({pixel_size_um:g} µm/px), outside what this model counts "
                            f"({low:g} to {high:g} px)")  # fmt: skip
        return diameter

    def segment(
        self, image: np.ndarray, cell_diameter: float | None = None,
        first: Prediction | None = None,
    ) -> tuple[float, np.ndarray, str]:  # fmt: skip
        """The cell diameter used, the int32 (H, W) labels of a normalised image, and a
        warning (empty, or why the automatic size is not to be trusted).

        The first pass counts at :meth:`first_diameter` (``first``, when given, holds
        its prediction). With ``auto``: if the model finds nothing there, count at half
        and then twice that guess; then, if the cells found differ from the size
        counted at by more than the tolerance, once more at their size. That second
        count is rejected, with a warning, when the model's objects follow whatever
        size it is told, as on textured tissue
        (:func:`~cellcount.inference.cell_size.follows_told_size`): the image is then
        counted at the size its appearance gives (:meth:`appearance_diameter`) when the
        model has a size model, else the first count is kept (docs/method.md#cell-size).
        """
        if first is None:
            diameter = self.first_diameter(image, cell_diameter)
            first = Prediction(diameter, self.probabilities(image, diameter))
        if cell_diameter is not None or self.cell_diameter != AUTO:
            return first.diameter, self.labels(image, first.diameter, first), ""
        guess = first.diameter
        for diameter in (guess, guess / 2, guess * 2):
            labels = self.labels(image, diameter, first)
            measured = measured_diameter(labels, diameter)
            if measured is not None:
                break
        if measured is None:  # no cells at any of the three sizes
            return guess, np.zeros(image.shape[:2], np.int32), ""
        if not needs_refinement(diameter, measured):
            return diameter, labels, ""
        refined = self.labels(image, measured)
        if not follows_told_size(measured, measured_diameter(refined, measured), labels, refined):
            return measured, refined, ""
        growth = count_growth(labels, refined)
        told = (f"counted at {measured:.0f} px instead of {diameter:.0f} px, the model finds "
                f"{growth:.0f}x as many cells, again smaller than it was told")  # fmt: skip
        if self.size_model is None:
            return diameter, labels, (f"cell size uncertain: {told}; check the overlay "
                                      "and give --cell-diameter")  # fmt: skip
        looks = self.appearance_diameter(image)
        return looks, self.labels(image, looks), (
            f"cell size from appearance ({looks:.0f} px): the model's own measurement did "
            f"not settle ({told}); check the overlay or give --cell-diameter")  # fmt: skip

    def appearance_diameter(self, image: np.ndarray) -> float:
        """The cell diameter (px) the model's size regression reads off a normalised
        image, within :attr:`diameter_range` (:mod:`cellcount.inference.size_model`).

        Raises:
            ValueError: the model has no size model.
        """
        if self.size_model is None:
            raise ValueError("this model has no size model; give --cell-diameter")
        low, high = self.diameter_range
        return float(np.clip(self.size_model.estimate(self.module.net, image), low, high))

    def labels(
        self, image: np.ndarray, cell_diameter: float, known: Prediction | None = None
    ) -> np.ndarray:
        """Cells of a normalised image whose cells are ``cell_diameter`` px: int32 (H, W)
        (``known``: a prediction already made, used when it is at that size)."""
        params = PostprocessParams.from_cell_diameter(cell_diameter, self.split)
        if known is not None and known.diameter == cell_diameter:
            probabilities = known.probabilities
        else:
            probabilities = self.probabilities(image, cell_diameter)
        return postprocess(probabilities, self.threshold, params)


def parse_diameter(value: float | str) -> float | str:
    """``auto``, or ``value`` as a positive, finite diameter in px (a number or its text).

    Raises:
        ValueError: anything else; the message says what is expected.
    """
    if value == AUTO:
        return AUTO
    try:
        diameter = float(value)
    except ValueError:
        diameter = float("nan")
    if not (np.isfinite(diameter) and diameter > 0):
        raise ValueError(f"cell diameter must be 'auto' or a positive number of px, got {value!r}")
    return diameter


def _diameter_option(value: float | str | None, model_diameter: float) -> float | str:
    """``auto``, or a positive diameter in px (None: the model's own)."""
    return parse_diameter(model_diameter if value is None else value)


def cell_table(
    labels: np.ndarray, image: np.ndarray, pixel_size_um: float | None = None
) -> list[dict[str, float]]:
    """Per-cell measurements: id, centroid (px), area (px, and µm² when the pixel size
    is known, else NaN), mean grey intensity in [0, 1].

    Args:
        labels: int (H, W) cells, 0 = background.
        image: float (H, W, 3) RGB in [0, 1]; a pixel's grey is its channel mean.
        pixel_size_um: side of a pixel in µm, if known.
    """
    if labels.max(initial=0) == 0:
        return []
    props = regionprops_table(labels, properties=("label", "centroid", "area"))
    columns = [props[key] for key in ("label", "centroid-0", "centroid-1", "area")]
    area_um2 = (
        props["area"] * pixel_size_um**2 if pixel_size_um else np.full(len(columns[0]), np.nan)
    )
    rows = zip(*columns, area_um2, _grey_means(labels, image, props["label"]), strict=True)
    return [dict(zip(CELL_COLUMNS, map(float, row), strict=True)) for row in rows]


def _grey_means(labels: np.ndarray, image: np.ndarray, ids: np.ndarray) -> list[float]:
    """Mean grey value of each cell in ``ids``, computed inside its bounding box.

    The same numbers as ``regionprops`` on the whole grey image ``image.mean(-1)``,
    without making that (H, W) float image.
    """
    windows = ndi.find_objects(labels)
    means = []
    for label in ids:
        window = windows[label - 1]
        means.append(float(image[window][labels[window] == label].mean(axis=-1).mean()))
    return means
