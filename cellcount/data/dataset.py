"""Crop datasets over images held in memory, with on-the-fly augmentation.

The authors wrote ~16,000 augmented crops to disk (SPEC 3.4). Here every crop is
an index entry ``(image, y0, x0)`` with a *copy count*: the number of times it is
drawn per epoch by a weighted sampler (1 original + the augmentation factor, or
1 + the artefact copies for artefact crops). Each draw is augmented with
probability ``copies-1 / copies``, so in expectation an epoch sees the paper's
mix of original and augmented crops without any file being written.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from cellcount.data.crops import crop_boxes, pad_to_min_size
from cellcount.data.targets import ImageRecord
from cellcount.data.transforms import apply_augmentation, seed_augmentation


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
    """The authors' crop grid over every record (SPEC 3.3), in their crop order.

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
        copies: augmented copies per artefact crop (paper: 150; SPEC 3.4 finds 128).
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


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker its own reproducible streams.

    PyTorch seeds every worker's torch RNG with ``base_seed + worker_id`` (base seed
    drawn from the seeded main process); Python's ``random`` (used for the augment
    draw) and the albumentations pipelines (which ignore global seeds) follow it.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    for transform in getattr(dataset, "transforms", {}).values():
        seed_augmentation(transform, seed)


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

    def sample_weights(self) -> torch.Tensor:
        """Per-crop draw weights for a ``WeightedRandomSampler`` (the copy counts)."""
        return torch.tensor([c.copies for c in self.crops], dtype=torch.double)

    def epoch_size(self) -> int:
        """Draws per epoch: the sum of copy counts."""
        return sum(c.copies for c in self.crops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        spec = self.crops[index]
        record = self.records[spec.record]
        window = np.s_[spec.y0 : spec.y0 + self.crop, spec.x0 : spec.x0 + self.crop]
        image = record.image[window].astype(np.float32)
        target = record.target[window]
        weight = record.weight[window].astype(np.float32)
        transform = self.transforms.get(spec.augment)
        if transform is not None and random.random() < (spec.copies - 1) / spec.copies:
            image, target, weight = apply_augmentation(transform, image, target, weight)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(target[None].astype(np.float32)),
            "weight": torch.from_numpy(np.ascontiguousarray(weight[None])),
        }
