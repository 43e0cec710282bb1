"""Augmentation pipelines: target alignment, output contract, branch gate, seeding, noise."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from cellcount.data.transforms import (
    ARTIFACT_COPIES,
    ARTIFACT_ELASTIC,
    AUGMENTATION_KINDS,
    PAPER_ELASTIC,
    TARGETS,
    apply_augmentation,
    build_augmentation,
    count_mask_components,
    elastic_def,
    paper_augmentation,
    seed_augmentation,
    shifter,
)


def blob_mask(size: int, centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """(size, size) uint8 mask with filled discs of ``radius`` at (x, y) ``centres``."""
    mask = np.zeros((size, size), np.uint8)
    for centre in centres:
        cv2.circle(mask, centre, radius, 1, thickness=-1)
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


MASK = blob_mask(160, [(50, 50), (110, 60), (80, 115)], 18)


@pytest.mark.parametrize(
    "step",
    [shifter(1.0), elastic_def(PAPER_ELASTIC), elastic_def(ARTIFACT_ELASTIC)],
    ids=["shifter", "elastic-paper", "elastic-artifact"],
)
def test_geometric_steps_keep_targets_aligned(step: A.BaseCompose) -> None:
    # The image encodes the mask, so any misregistration shows up as a low IoU.
    pipeline = A.Compose([step], additional_targets=TARGETS)
    image = np.repeat(MASK[..., None].astype(np.float32), 3, axis=2)
    weight = 1.0 + 2.0 * MASK.astype(np.float32)
    moved = 0
    for seed in range(12):
        out_image, out_mask, out_weight = apply_augmentation(pipeline, image, MASK, weight, seed)
        np.testing.assert_array_equal(out_weight, 1.0 + 2.0 * out_mask)  # same nearest map
        assert iou(out_image[..., 0] > 0.5, out_mask == 1) > 0.9
        assert count_mask_components(out_mask) >= 3  # discs are moved, not torn apart or lost
        moved += not np.array_equal(out_mask, MASK)
    assert moved >= 8  # the check is not vacuous


@pytest.mark.parametrize("kind", ["paper", "artifact"])
def test_full_pipelines_keep_targets_aligned(kind: str) -> None:
    # Photometric steps act on the whole image alike, so cells stay brighter than background.
    pipeline = build_augmentation(kind, seed=11)
    image = np.where(MASK[..., None] == 1, 0.8, 0.1).astype(np.float32).repeat(3, axis=2)
    weight = 1.0 + MASK.astype(np.float32)
    for _ in range(25):
        out_image, out_mask, out_weight = apply_augmentation(pipeline, image, MASK, weight)
        np.testing.assert_array_equal(out_weight, 1.0 + out_mask)
        cells = out_mask == 1
        assert out_image[cells].mean() > out_image[~cells].mean() + 0.1


@pytest.mark.parametrize("kind", AUGMENTATION_KINDS)
def test_output_contract(kind: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((96, 96, 3), dtype=np.float32)
    mask = blob_mask(96, [(30, 30), (70, 60)], 12)
    weight = np.where(mask == 1, 4.5, 1.0).astype(np.float32)
    weight[:10] = 2.25
    pipeline = build_augmentation(kind, noise_std=0.2, seed=0)  # strong noise: needs clipping
    for _ in range(15):
        out_image, out_mask, out_weight = apply_augmentation(pipeline, image, mask, weight)
        assert out_image.shape == image.shape and out_image.dtype == np.float32
        assert out_image.min() >= 0.0 and out_image.max() <= 1.0
        assert out_mask.shape == mask.shape and out_mask.dtype == np.uint8
        assert set(np.unique(out_mask)) <= {0, 1}
        assert out_weight.shape == weight.shape and out_weight.dtype == np.float32
        assert set(np.unique(out_weight)) <= {1.0, 2.25, 4.5}
        for array in (out_image, out_mask, out_weight):
            assert array.flags.c_contiguous


def test_input_dtypes_are_kept_and_inputs_untouched() -> None:
    image = np.full((64, 64, 3), 0.5, np.float16)
    mask = blob_mask(64, [(20, 20), (45, 40)], 9).astype(bool)
    weight = (1.0 + mask).astype(np.float16)
    copies = (image.copy(), mask.copy(), weight.copy())
    pipeline = build_augmentation("paper", seed=2)
    for _ in range(10):
        out = apply_augmentation(pipeline, image, mask, weight)
        assert [a.dtype for a in out] == [np.float16, np.bool_, np.float16]
    for before, after in zip(copies, (image, mask, weight), strict=True):
        np.testing.assert_array_equal(before, after)


def test_count_cells_uses_4_connectivity() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # diagonal neighbours: two cells, as scipy.ndimage.label
    mask[5:7, 5:7] = 1
    assert count_mask_components(mask) == 3
    assert count_mask_components(np.zeros((8, 8), np.uint8)) == 0


@pytest.mark.parametrize("n_cells", [0, 1, 2, 3, 4])
def test_rgb_branch_only_for_more_than_two_cells(n_cells: int) -> None:
    # A flat grey image stays grey (R == G == B) under every step except the RGB shift,
    # which adds U(0.05, 0.06) to red and U(0.04, 0.045) to green.
    pipeline = A.Compose(paper_augmentation(p_rgb=1.0), additional_targets=TARGETS)
    seed_augmentation(pipeline, n_cells)
    image = np.full((48, 48, 3), 0.5, np.float32)
    mask = blob_mask(48, [(6 + 12 * i, 24) for i in range(n_cells)], 3)
    assert count_mask_components(mask) == n_cells
    weight = np.ones((48, 48), np.float32)
    for _ in range(20):
        out, _, _ = apply_augmentation(pipeline, image, mask, weight)
        red, green = out[..., 0] - out[..., 2], out[..., 1] - out[..., 2]
        if n_cells > 2:
            assert np.all((red > 0.05 - 1e-6) & (red < 0.06 + 1e-6))
            assert np.all((green > 0.04 - 1e-6) & (green < 0.045 + 1e-6))
        else:
            assert np.abs(red).max() < 1e-6 and np.abs(green).max() < 1e-6


def test_rgb_branch_default_probability() -> None:
    pipeline = build_augmentation("paper", seed=4)
    image = np.full((12, 12, 3), 0.5, np.float32)
    mask = np.zeros((12, 12), np.uint8)
    mask[1, 1] = mask[5, 5] = mask[9, 9] = 1
    weight = np.ones((12, 12), np.float32)
    draws = 2000
    shifted = sum(
        bool(np.any(apply_augmentation(pipeline, image, mask, weight)[0][..., 0] > 0.54))
        for _ in range(draws)
    )
    assert abs(shifted / draws - 0.05) < 0.02  # p 0.05; binomial sd ~0.005


def test_artifact_variant_weights() -> None:
    (one_of,) = build_augmentation("artifact").transforms
    expected = np.array(ARTIFACT_COPIES) / sum(ARTIFACT_COPIES)
    np.testing.assert_allclose(one_of.transforms_ps, expected)


def test_seeded_pipelines_are_reproducible() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((64, 64, 3), dtype=np.float32)
    mask = blob_mask(64, [(20, 20), (40, 45), (50, 15)], 7)
    weight = 1.0 + mask.astype(np.float32)

    def run(pipeline: A.Compose, n: int = 12) -> list[np.ndarray]:
        return [
            np.concatenate(
                [o.reshape(-1) for o in apply_augmentation(pipeline, image, mask, weight, None)]
            )
            for _ in range(n)
        ]

    first, second = (
        build_augmentation("paper", 0.05, seed=5),
        build_augmentation("paper", 0.05, seed=5),
    )
    a, b = run(first), run(second)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    seed_augmentation(first, 5)  # restarting the stream replays it
    for x, y in zip(a, run(first), strict=True):
        np.testing.assert_array_equal(x, y)
    other = run(build_augmentation("paper", 0.05, seed=6))
    assert any(not np.array_equal(x, y) for x, y in zip(a, other, strict=True))
    single = [apply_augmentation(first, image, mask, weight, rng_seed=9) for _ in range(2)]
    for x, y in zip(*single, strict=True):
        np.testing.assert_array_equal(x, y)


def test_none_is_identity() -> None:
    rng = np.random.default_rng(2)
    image = rng.random((40, 40, 3), dtype=np.float32)
    mask = (rng.random((40, 40)) > 0.5).astype(np.uint8)
    weight = 1.0 + rng.random((40, 40), dtype=np.float32)
    for noise_std in (0.0, 0.1):
        out = apply_augmentation(build_augmentation("none", noise_std), image, mask, weight)
        for before, after in zip((image, mask, weight), out, strict=True):
            np.testing.assert_array_equal(before, after)


def test_unknown_kind_and_bad_noise_raise() -> None:
    with pytest.raises(ValueError, match="valid kinds") as info:
        build_augmentation("Paper")
    assert all(kind in str(info.value) for kind in ("paper", "artifact", "none"))
    with pytest.raises(ValueError, match="noise_std"):
        build_augmentation("paper", noise_std=-0.1)


@pytest.mark.parametrize("kind", ["paper", "artifact"])
def test_noise_is_opt_in(kind: str) -> None:
    # Every step maps a flat image to a flat image (global photometric changes, geometry
    # with reflected borders, box blur), so any pixel-level texture is the added noise.
    image = np.full((64, 64, 3), 0.5, np.float32)
    mask = blob_mask(64, [(20, 20), (45, 40), (15, 50)], 6)
    weight = np.ones((64, 64), np.float32)
    quiet, noisy = build_augmentation(kind, 0.0, seed=3), build_augmentation(kind, 0.05, seed=3)
    for _ in range(10):
        flat = apply_augmentation(quiet, image, mask, weight)[0]
        assert np.ptp(flat, axis=(0, 1)).max() < 1e-5
        grainy = apply_augmentation(noisy, image, mask, weight)[0]
        assert np.all(np.abs(grainy.std(axis=(0, 1)) - 0.05) < 0.01)


def test_generalist_augmentation_keeps_images_valid_and_targets_aligned() -> None:
    rng = np.random.default_rng(0)
    pipeline = build_augmentation("generalist", seed=3)
    for index in range(150):
        image = (rng.random((64, 64, 3)) * rng.choice([0.02, 1.0])).astype(np.float32)
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40, 20:40] = 1
        weight = np.where(mask > 0, 2.0, 1.0).astype(np.float32)
        out, out_mask, out_weight = apply_augmentation(pipeline, image, mask, weight, index)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert set(np.unique(out_mask)) <= {0, 1}
        np.testing.assert_array_equal(out_weight == 2.0, out_mask == 1)  # moved together
    again = apply_augmentation(pipeline, image, mask, weight, 7)[0]
    np.testing.assert_array_equal(again, apply_augmentation(pipeline, image, mask, weight, 7)[0])
