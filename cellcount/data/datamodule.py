"""Lightning data module: dataset discovery, split, targets, crops, sampling.

Lifecycle (Lightning): ``prepare_data`` (one process per node) generates the
synthetic set if asked, writes the split and fills the weight-map cache;
``setup`` (every process, idempotent) reads them back; samplers are built in the
``*_dataloader`` methods.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cellcount.data.dataset import (
    CropDataset,
    EpochSampler,
    artifact_crops,
    grid_crops,
    pad_record,
)
from cellcount.data.io import (
    DataError,
    Sample,
    check_unique_names,
    find_samples,
    load_pair,
    read_artifact_boxes,
)
from cellcount.data.normalize import Normalization
from cellcount.data.options import DataOptions
from cellcount.data.sizes import median_diameter, rescale_image, rescale_truth, scale_for
from cellcount.data.splits import Split, make_split, read_name_list
from cellcount.data.synthetic import SyntheticConfig, generate_dataset
from cellcount.data.targets import ImageRecord, TargetOptions, build_record
from cellcount.data.transforms import build_augmentation

log = logging.getLogger(__name__)


def _warn_degenerate(records: list[ImageRecord], part: str, crop_size: int) -> None:
    """Warn when a split part holds no cells, or its images are smaller than the crops."""
    if not any(record.target.any() for record in records):
        log.warning("the %s images hold no cells (every mask is empty): scores and "
                    "thresholds chosen on them mean nothing; check the masks and "
                    "data.layout", part)  # fmt: skip
    small = [r for r in records if min(r.target.shape) < crop_size]
    if small:
        height, width = small[0].target.shape
        log.warning("data.crop_size=%d is larger than %d %s image(s) (e.g. %s, %dx%d): they "
                    "are padded; a crop size up to their size trains on more real pixels",
                    crop_size, len(small), part, small[0].name, width, height)  # fmt: skip


def cache_folder(options: DataOptions) -> Path:
    """``options.cache_dir``; when unset, ``<root>/.cellcount_cache`` if that can be
    written, else a folder under the system's temporary directory (with a warning)."""
    if options.cache_dir:
        return Path(options.cache_dir)
    inside = Path(options.root) / ".cellcount_cache"
    try:
        inside.mkdir(parents=True, exist_ok=True)
        return inside
    except OSError:
        import tempfile

        fallback = Path(tempfile.gettempdir()) / "cellcount_cache"
        log.warning("cannot write %s (read-only data?); caching weight maps in %s instead "
                    "(set data.cache_dir to choose)", inside, fallback)  # fmt: skip
        return fallback


class CellDataModule(pl.LightningDataModule):
    """Crops of fluorescence images with cell masks and weight maps.

    Args:
        options: see :class:`cellcount.data.options.DataOptions`.
    """

    def __init__(self, options: DataOptions) -> None:
        super().__init__()
        self.options = options
        self.save_hyperparameters(asdict(options), logger=False)
        self.root = Path(options.root)
        self.cache_dir = cache_folder(options)
        self.split_file = Path(options.split_file) if options.split_file else None
        self.targets = TargetOptions(
            options.min_cell_area, options.max_hole_area, options.wm_sigma, options.wm_band
        )
        self.normalization = Normalization.from_dict(options.normalization)
        self.scales: dict[str, float] = {}  # image name -> rescale_to factor applied
        self.datasets: dict[str, CropDataset] = {}
        self.records: dict[str, list[ImageRecord]] = {}
        self.split: Split | None = None
        self._samples: list[Sample] | None = None

    # -- discovery and split -------------------------------------------------
    def samples(self) -> list[Sample]:
        """All usable (image, mask) pairs of the dataset (found once per module).

        With ``skip_bad_files`` every pair is read once and unreadable images,
        non-binary masks or size mismatches are skipped with a warning naming the
        file; otherwise they fail when first read, with the same message.
        """
        if self._samples is None:
            hp = self.options
            samples = find_samples(self.root, hp.layout, hp.colour, hp.skip_bad_files)
            for source in hp.extra_sources:
                layout = source.get("layout", "folder")
                samples += find_samples(source["root"], layout, hp.colour, hp.skip_bad_files)
            check_unique_names(s.name for s in samples)
            self._samples = [s for s in samples if _usable(s)] if hp.skip_bad_files else samples
            if not self._samples:
                raise DataError(f"no usable image/mask pair in {self.root}; see the warnings.")
        return self._samples

    def make_split(self, samples: list[Sample]) -> Split:
        """Read the split file when it exists, else make the seeded split."""
        if self.split_file is not None and self.split_file.exists():
            split = Split.load(self.split_file)
            unknown = set(split.train + split.val + split.test) - {s.name for s in samples}
            if unknown:
                raise DataError(
                    f"split file {self.split_file} names images not in {self.root} "
                    f"(e.g. {sorted(unknown)[:3]}): is data.root the dataset this split was "
                    f"made for? (A new split needs a new run folder.)"
                )
            return split
        hp = self.options
        test_names = read_name_list(hp.test_names_file) if hp.test_names_file else None
        return make_split(samples, hp.val_fraction, hp.test_fraction, hp.split_seed, test_names)

    # -- Lightning hooks -----------------------------------------------------
    def prepare_data(self) -> None:
        """Generate synthetic data, write the split, fill the weight-map cache."""
        if self.options.synthetic:
            options = dict(self.options.synthetic)
            n_images, seed = options.pop("n_images"), options.pop("seed", 0)
            generate_dataset(self.root, n_images, seed, SyntheticConfig(**options))
        samples = self.samples()
        split = self.make_split(samples)
        if self.split_file is not None and not self.split_file.exists():
            split.save(self.split_file)
        if self.options.weight_maps:
            for sample in tqdm(samples, desc="weight maps", leave=False, disable=len(samples) < 20):
                build_record(sample, *self.load(sample), self.targets, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        """Load the images of the split parts the stage needs (idempotent)."""
        samples = self.samples()
        self.split = self.make_split(samples)
        parts = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for part in parts.get(stage or "fit", ("train", "val", "test")):
            if part not in self.datasets:
                self._load_part(part, samples)

    def _load_part(self, part: str, samples: list[Sample]) -> None:
        assert self.split is not None
        names = set(getattr(self.split, part))
        if not names:
            raise DataError(
                f"the {part} split of {self.root} is empty; adjust the split fractions."
            )
        hp = self.options
        chosen = [s for s in samples if s.name in names]
        records = [build_record(s, *self.load(s), self.targets, self.cache_dir, hp.weight_maps)
                   for s in chosen]  # fmt: skip
        self.records[part] = records
        _warn_degenerate(records, part, hp.crop_size)
        padded = [pad_record(r, hp.crop_size) for r in records]
        self.datasets[part] = self._crop_dataset(padded, train=part == "train")

    def _crop_dataset(self, records: list[ImageRecord], train: bool) -> CropDataset:
        hp = self.options
        if not train:
            return CropDataset(
                records, grid_crops(records, hp.crop_size, hp.crop_step), hp.crop_size
            )
        copies = {r.name: 1 + hp.aug_factor for r in records}
        copies.update({n: 1 + hp.manual_aug_factor for n in hp.manual_images if n in copies})
        crops = grid_crops(records, hp.crop_size, hp.crop_step, copies, hp.augmentation)
        # Each draw re-seeds its pipeline (EpochSampler), so no seed is needed here.
        transforms = {hp.augmentation: build_augmentation(hp.augmentation, hp.noise_std)}
        boxes = self.oversampling_boxes() if hp.oversample_artifacts else []
        if boxes:
            crops += artifact_crops(records, boxes, hp.crop_size, hp.artifact_copies)
            transforms["artifact"] = build_augmentation("artifact", hp.noise_std)
        return CropDataset(records, crops, hp.crop_size, transforms)

    def full_images(self, part: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Whole images of a split part for full-size evaluation.

        Returns:
            ``(name, image, truth)`` triples: image float32 (H, W, 3) in [0, 1];
            truth (H, W) as read (not cleaned: evaluation counts the true cells),
            a bool mask or int32 instance labels (``instances`` layout).
        """
        return [(s.name, *self.load(s)) for s in self.part_samples(part)]

    def part_samples(self, part: str) -> list[Sample]:
        """The samples of a split part (``train``, ``val`` or ``test``), in dataset order."""
        samples = self.samples()
        names = set(getattr(self.split or self.make_split(samples), part))
        return [sample for sample in samples if sample.name in names]

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """A sample's normalised image and truth, resized to ``rescale_to`` if set."""
        image, truth = load_pair(sample, self.normalization)
        if self.options.rescale_to is None:
            return image, truth
        diameter = median_diameter(truth)
        if diameter is None:  # no cells to measure: keep the image as it is
            return image, truth
        scale = self.scales[sample.name] = scale_for(diameter, self.options.rescale_to)
        return rescale_image(image, scale), rescale_truth(truth, scale)

    def oversampling_boxes(self) -> list[dict[str, Any]]:
        """Artefact boxes from the config list and the artefact file (if any), in the
        pixels of the (possibly rescaled, see ``rescale_to``) loaded images."""
        boxes = list(self.options.artifact_crops)
        if self.options.artifacts_file:
            boxes += read_artifact_boxes(self.options.artifacts_file)
        return [_scaled_box(box, self.scales.get(str(box["image"]), 1.0)) for box in boxes]

    # -- loaders ---------------------------------------------------------------
    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.options.num_workers
        if workers < 0:
            workers = max(0, min(8, (os.cpu_count() or 1) - 1))
        return {
            "batch_size": self.options.batch_size,
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        seed = torch.initial_seed() % 2**31  # the run's seed (seed_everything)
        sampler = EpochSampler(dataset.sample_weights(), dataset.epoch_size(), seed)
        return DataLoader(dataset, sampler=sampler, drop_last=False, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], shuffle=False, **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], shuffle=False, **self._loader_kwargs())


def _scaled_box(box: dict[str, Any], scale: float) -> dict[str, Any]:
    """An artefact box ``{image, y, x, height, width}`` in an image resized by ``scale``."""
    if scale == 1.0:
        return box
    sides = {key: max(1, round(int(box[key]) * scale)) for key in ("height", "width")}
    return {**box, "y": round(int(box["y"]) * scale), "x": round(int(box["x"]) * scale), **sides}


def _usable(sample: Sample) -> bool:
    try:
        load_pair(sample)
    except DataError as err:
        log.warning("skipping %s: %s", sample.name, err)
        return False
    return True
