"""Crop datasets: grid crops, copy counts, oversampling frequencies, tensors."""

from __future__ import annotations

import numpy as np
import torch

from cellcount.data.dataset import CropDataset, EpochSampler, artifact_crops, grid_crops, pad_record
from cellcount.data.targets import ImageRecord


def _record(name: str, height: int = 64, width: int = 96) -> ImageRecord:
    rng = np.random.default_rng(0)
    target = np.zeros((height, width), np.uint8)
    target[10:20, 10:20] = 1
    return ImageRecord(
        name,
        rng.random((height, width, 3)).astype(np.float16),
        target,
        (1 + target * 0.5).astype(np.float16),
    )


def test_grid_crops_follow_the_crop_grid_and_copies() -> None:
    records = [_record("a"), _record("b")]
    crops = grid_crops(records, crop=32, step=32, copies_by_name={"b": 11})
    assert len(crops) == 2 * 2 * 3
    assert {c.copies for c in crops if c.record == 0} == {1}
    assert {c.copies for c in crops if c.record == 1} == {11}
    assert {(c.y0, c.x0) for c in crops if c.record == 0} == {
        (y, x) for y in (0, 32) for x in (0, 32, 64)
    }


def test_items_are_aligned_tensors() -> None:
    record = _record("a")
    dataset = CropDataset([record], grid_crops([record], 32, 32), crop=32)
    item = dataset[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == item["weight"].shape == (1, 32, 32)
    assert torch.equal(item["weight"], 1 + 0.5 * item["mask"])
    expected = torch.from_numpy(record.image[:32, :32].astype(np.float32)).permute(2, 0, 1)
    assert torch.equal(item["image"], expected)


def test_sampler_frequencies_match_oversampling_factor() -> None:
    records = [_record("plain"), _record("with_artifact")]
    crops = grid_crops(records, 32, 32, {"plain": 5, "with_artifact": 5})
    box = {"image": "with_artifact", "y": 5, "x": 900, "height": 4, "width": 10}
    crops += artifact_crops(records, [box], 32, 150)
    dataset = CropDataset(records, crops, crop=32)
    assert dataset.epoch_size() == 12 * 5 + 151
    artifact = len(crops) - 1
    assert (crops[artifact].y0, crops[artifact].x0) == (0, 96 - 32)  # clipped into the image
    sampler = EpochSampler(dataset.sample_weights(), 200_000, seed=0)
    draws = torch.tensor([index for index, _ in sampler])
    share = (draws == artifact).double().mean().item()
    assert abs(share - 151 / dataset.epoch_size()) < 0.005
    plain_share = (draws == 0).double().mean().item()
    assert abs(plain_share - 5 / dataset.epoch_size()) < 0.002


def test_artifact_crop_is_centred_on_the_box() -> None:
    (spec,) = artifact_crops(
        [_record("a")], [{"image": "a", "y": 20, "x": 40, "height": 10, "width": 20}], 32, 10
    )
    assert (spec.y0, spec.x0, spec.copies, spec.augment) == (25 - 16, 50 - 16, 11, "artifact")


def test_artifact_boxes_on_other_images_are_ignored() -> None:
    assert artifact_crops([_record("a")], [{"image": "val_image", "y": 0, "x": 0}], 32, 10) == []


def test_small_images_are_padded_to_one_crop() -> None:
    padded = pad_record(_record("small", 20, 24), crop=32)
    assert padded.image.shape == (32, 32, 3) and padded.target.shape == (32, 32)
    assert padded.weight.min() >= 1
    assert padded.target[:20, :24].sum() == 100 and padded.target[20:].sum() == 0


def test_epoch_sampler_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochSampler([1.0, 2.0, 3.0], 50, seed=4)
    first, second = list(sampler), list(sampler)  # epochs 0 and 1 (auto-advance)
    assert first != second
    sampler.set_epoch(1)
    assert list(sampler) == second
    assert list(EpochSampler([1.0, 2.0, 3.0], 50, seed=5)) != first


def test_augmented_draws_are_reproducible_from_their_seed() -> None:
    from cellcount.data.transforms import build_augmentation

    record = _record("a")
    crops = grid_crops([record], 32, 32, {"a": 1000}, augment="paper")
    dataset = CropDataset([record], crops, 32, {"paper": build_augmentation("paper")})
    assert torch.equal(dataset[(0, 123)]["image"], dataset[(0, 123)]["image"])
    images = [dataset[(0, seed)]["image"] for seed in range(5)]
    assert any(not torch.equal(images[0], other) for other in images[1:])
    assert torch.equal(dataset[0]["image"], dataset[(0, 123)]["image"]) is False
