"""Typed options of the data module: what a ``conf/data/*.yaml`` file instantiates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cellcount.data.io import LAYOUTS, DataError
from cellcount.data.normalize import DEFAULT_NORMALIZATION, Normalization
from cellcount.evaluation.matching import PAPER_RADIUS

AUGMENTATIONS = ("paper", "generalist", "none")


@dataclass
class DataOptions:
    """Options of :class:`cellcount.data.datamodule.CellDataModule` (the ``data`` config group).

    Real datasets (``data=folder|fnc|dsb``) must set ``root``; only ``data=synthetic``
    generates its own images.

    Attributes:
        root: dataset folder.
        layout: ``folder`` | ``instances`` | ``points`` | ``fnc_v1`` | ``fnc_v2``
            (see :func:`cellcount.data.io.find_samples`).
        colour: FNC v2 collection (``yellow``, ``red``, ``green``).
        extra_sources: more datasets to pool with this one, each
            ``{"root": folder, "layout": layout}`` (file names must stay unique).
        synthetic: if given, generate a synthetic set into ``root`` first (cached);
            keys ``n_images``, ``seed`` and any :class:`SyntheticConfig` field.
        split_file: where the split is written (and read back when it exists).
        split_seed, val_fraction, test_fraction, test_names_file: see :func:`make_split`.
        crop_size, crop_step: crop grid (paper: 512, 400).
        cell_diameter: typical cell diameter in px; the module's post-processing
            scales with it (``module.cell_diameter`` follows it in the config).
        match_radius: centroid matching radius (px) for scoring this dataset
            (paper: 50 px for 40 px cells); evaluation configs read it from here.
        batch_size, num_workers: loader settings (``num_workers=-1``: cores - 1).
        weight_maps: use the overcrowding weight map (ablation ``no_wm`` sets False).
        min_cell_area, max_hole_area, wm_sigma, wm_band: target cleaning and map parameters.
        augmentation: ``paper`` or ``none``; aug_factor / manual_aug_factor augmented
            copies per crop of ordinary / ``manual_images`` (paper: 4 / 10).
        noise_std: std of extra Gaussian noise in augmentation (0: as the authors' code).
        oversample_artifacts: artefact oversampling (ablation ``no_ao`` sets False).
        artifact_copies: augmented copies per artefact crop (paper: 150).
        artifact_crops: artefact boxes ``{"image", "y", "x", "height", "width"}``;
            a crop centred on each is oversampled.
        artifacts_file: CSV of more such boxes (``image,y,x,height,width``); the
            synthetic generator writes one (``artifacts.csv``).
        cache_dir: weight-map cache (the configs: ``<paths.data_dir>/cache``; unset:
            ``<root>/.cellcount_cache``, or a temporary folder when the data are read-only).
        skip_bad_files: warn and skip unpaired files instead of failing.
        normalization: intensity normalisation ``{method, low, high}``
            (:class:`cellcount.data.normalize.Normalization`); recorded in the checkpoint.
        rescale_to: if set, every image is resized so that the median diameter of
            its true cells becomes this many px (a model for any cell size, used
            with automatic size estimation at count time); ``cell_diameter`` should
            then equal it.
    """

    root: str
    layout: str = "folder"
    colour: str = "yellow"
    extra_sources: list[dict[str, str]] = field(default_factory=list)
    synthetic: dict[str, Any] | None = None
    split_file: str | None = None
    split_seed: int = 0
    val_fraction: float = 0.3
    test_fraction: float = 0.2
    test_names_file: str | None = None
    crop_size: int = 512
    crop_step: int = 400
    cell_diameter: float = 40.0
    match_radius: float = PAPER_RADIUS
    batch_size: int = 4
    num_workers: int = -1
    weight_maps: bool = True
    min_cell_area: int = 100
    max_hole_area: int = 200
    wm_sigma: float = 25.0
    wm_band: int = 100
    augmentation: str = "paper"
    aug_factor: int = 4
    manual_aug_factor: int = 10
    manual_images: list[str] = field(default_factory=list)
    noise_std: float = 0.0
    oversample_artifacts: bool = True
    artifact_copies: int = 150
    artifact_crops: list[dict[str, Any]] = field(default_factory=list)
    artifacts_file: str | None = None
    cache_dir: str | None = None
    skip_bad_files: bool = False
    normalization: dict[str, Any] = field(default_factory=DEFAULT_NORMALIZATION.as_dict)
    rescale_to: float | None = None

    def __post_init__(self) -> None:
        """Check the values once, before any file is read; the message names the key."""
        if not str(self.root).strip() or str(self.root) == "???":
            raise DataError("data.root is not set; give the dataset folder: data.root=DIR")
        _check(self.layout in LAYOUTS, "layout", self.layout, f"one of {', '.join(LAYOUTS)}")
        _check(self.augmentation in AUGMENTATIONS, "augmentation", self.augmentation,
               f"one of {', '.join(AUGMENTATIONS)}")  # fmt: skip
        for key in ("crop_size", "crop_step", "batch_size"):
            _check(getattr(self, key) > 0, key, getattr(self, key), "a positive integer")
        _check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "a value in [0, 1)")
        _check(
            0 <= self.test_fraction < 1, "test_fraction", self.test_fraction, "a value in [0, 1)"
        )
        _check(self.cell_diameter > 0, "cell_diameter", self.cell_diameter, "a positive value (px)")
        _check(self.match_radius > 0, "match_radius", self.match_radius, "a positive value (px)")
        try:
            Normalization.from_dict(self.normalization)
        except (TypeError, ValueError) as err:
            raise DataError(f"data.normalization={self.normalization!r}: {err}") from err
        if self.rescale_to is not None:
            _check(self.rescale_to > 0, "rescale_to", self.rescale_to, "a positive value (px)")
        for key in ("aug_factor", "manual_aug_factor", "artifact_copies"):
            _check(getattr(self, key) >= 0, key, getattr(self, key), "0 or more")


def _check(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise DataError(f"data.{key}={value!r} is not valid; use {valid}.")
