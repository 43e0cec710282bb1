"""Crop datasets over images held in memory, with on-the-fly augmentation.

The authors wrote ~16,000 augmented crops to disk (docs/method.md#augmentation). Here every crop is
an index entry ``(image, y0, x0)`` with a *copy count*: the number of times it is
drawn per epoch by a weighted sampler (1 original + the augmentation factor, or
1 + the artefact copies for artefact crops). Each draw is augmented with
probability ``copies-1 / copies``, so in expectation an epoch sees the paper's
mix of original and augmented crops without any file being written. Draws carry
their own seeds (:class:`EpochSampler`), which makes training resumable exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cellcount.data.crops import crop_boxes, pad_to_min_size
from cellcount.data.targets import ImageRecord
from cellcount.data.transforms import apply_augmentation


@dataclass(frozen=True)
class CropSpec:
    """One crop: image index, top-left origin, copies per epoch, augmentation kind."""

    record: int
    y0: int
    x0: int
    copies: int = 1
    augment: str = "none"


def grid_crops(
    records: Sequence[ImageRecord],
    crop: int,
    step: int,
    copies_by_name: dict[str, int] | None = None,
    augment: str = "none",
) -> list[CropSpec]:
    """The authors' crop grid over every record (docs/method.md#data-and-crops), in their crop
    order.

    Args:
        records: images (already padded to at least ``crop`` on each side).
        crop, step: crop side and grid step in pixels.
        copies_by_name: draws per epoch of each image's crops (default 1).
        augment: augmentation kind of these crops ("paper" or "none").
    """
    specs = []
    for index, record in enumerate(records):
        copies = (copies_by_name or {}).get(record.name, 1)
        height, width = record.target.shape
        for y0, x0 in crop_boxes(height, width, crop, step):
            specs.append(CropSpec(index, y0, x0, copies, augment))
    return specs


def artifact_crops(
    records: Sequence[ImageRecord], boxes: Sequence[dict], crop: int, copies: int
) -> list[CropSpec]:
    """Extra crops centred on artefacts, oversampled ``copies`` times per epoch.

    Args:
        records: training images.
        boxes: ``{"image": name, "y", "x", "height", "width"}`` artefact boxes in
            pixels (height/width default 0: a point). Boxes on images outside
            ``records`` (e.g. validation images) are ignored.
        crop: crop side; the crop is centred on the box and clipped into the image.
        copies: augmented copies per artefact crop (paper: 150; docs/method.md#augmentation finds
        128).
    """
    by_name = {r.name: i for i, r in enumerate(records)}
    specs = []
    for box in boxes:
        if box["image"] not in by_name:
            continue
        index = by_name[box["image"]]
        height, width = records[index].target.shape
        centre_y = int(box["y"]) + int(box.get("height", 0)) // 2
        centre_x = int(box["x"]) + int(box.get("width", 0)) // 2
        y0 = min(max(centre_y - crop // 2, 0), height - crop)
        x0 = min(max(centre_x - crop // 2, 0), width - crop)
        specs.append(CropSpec(index, y0, x0, 1 + copies, "artifact"))
    return specs


def pad_record(record: ImageRecord, crop: int) -> ImageRecord:
    """Pad an image smaller than a crop (bottom/right) so at least one crop fits."""
    return ImageRecord(
        record.name,
        pad_to_min_size(record.image, crop, crop),
        pad_to_min_size(record.target, crop, crop),
        np.maximum(pad_to_min_size(record.weight, crop, crop), 1).astype(np.float16),
    )


class EpochSampler(Sampler[tuple[int, int]]):
    """Weighted draws with replacement whose randomness is a function of (seed, epoch).

    Yields ``(crop index, draw seed)`` pairs; the dataset augments each draw from
    its own seed. An epoch's crops *and* augmentations therefore depend only on
    the seed and the epoch number, not on worker processes or on what ran
    before, so a run resumed at epoch k repeats exactly what an uninterrupted
    run does from epoch k. Lightning calls :meth:`set_epoch` before each epoch;
    without it (e.g. wrapped for DDP) the epoch advances by itself.

    Args:
        weights: (N,) non-negative draw weights (the crops' copy counts).
        num_samples: draws per epoch.
        seed: base seed.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int = 0) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        picks = torch.multinomial(self.weights, self.num_samples, True, generator=generator)
        seeds = torch.randint(0, 2**31 - 1, (self.num_samples,), generator=generator)
        return iter(zip(picks.tolist(), seeds.tolist(), strict=True))


class CropDataset(Dataset[dict[str, torch.Tensor]]):
    """Crops of in-memory images as tensors.

    Item: ``{"image": (3, c, c) float32 in [0, 1], "mask": (1, c, c) float32 in {0, 1},
    "weight": (1, c, c) float32 >= 1}``.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        crops: Sequence[CropSpec],
        crop: int,
        transforms: dict[str, A.Compose] | None = None,
    ) -> None:
        self.records = list(records)
        self.crops = list(crops)
        self.crop = crop
        self.transforms = transforms or {}

    def __len__(self) -> int:
        return len(self.crops)

    def sample_weights(self) -> list[float]:
        """Per-crop draw weights for :class:`EpochSampler` (the copy counts)."""
        return [float(c.copies) for c in self.crops]

    def epoch_size(self) -> int:
        """Draws per epoch: the sum of copy counts."""
        return sum(c.copies for c in self.crops)

    @staticmethod
    def _augments(spec: CropSpec, seed: int) -> bool:
        """Whether this draw is an augmented copy (probability (copies - 1) / copies)."""
        return bool(np.random.default_rng(seed).random() < (spec.copies - 1) / spec.copies)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Crop ``key`` as is, or ``(index, draw seed)`` from :class:`EpochSampler`:
        then augmented with probability ``(copies - 1) / copies``, seeded by the draw."""
        index, seed = (key, None) if isinstance(key, int) else key
        spec = self.crops[index]
        record = self.records[spec.record]
        window = np.s_[spec.y0 : spec.y0 + self.crop, spec.x0 : spec.x0 + self.crop]
        image = record.image[window].astype(np.float32)
        target = record.target[window]
        weight = record.weight[window].astype(np.float32)
        transform = self.transforms.get(spec.augment)
        if transform is not None and seed is not None and self._augments(spec, seed):
            image, target, weight = apply_augmentation(transform, image, target, weight, seed)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(target[None].astype(np.float32)),
            "weight": torch.from_numpy(np.ascontiguousarray(weight[None])),
        }
