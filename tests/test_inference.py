"""Full-image inference: padding to the net's multiple, tiling equal to whole-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.inference.checkpoints import load_module, save_checkpoint
from cellcount.inference.predict import (
    _keep,
    padded_index,
    predict_batch,
    predict_probabilities,
    tile_side,
    tile_starts,
)
from cellcount.training.module import CellSegModule


@pytest.fixture(scope="module")
def module() -> CellSegModule:
    torch.manual_seed(0)
    return CellSegModule(arch="c_resunet", arch_kwargs={"n_features_start": 4}).eval()


def test_any_size_image_is_padded_and_cropped_back(module: CellSegModule) -> None:
    image = np.random.default_rng(0).random((37, 61, 3), dtype=np.float32)
    prob = predict_probabilities(module, image)
    assert prob.shape == (37, 61) and prob.dtype == np.float32
    assert prob.min() >= 0 and prob.max() <= 1


def test_tile_starts_cover_and_stay_aligned() -> None:
    starts = tile_starts(1000, tile=256, margin=32, multiple=8)
    assert starts[0] == 0 and starts[-1] + 256 >= 1000
    assert all(s % 8 == 0 for s in starts)
    kept_until = 0
    for start in starts:  # every pixel is kept by some tile
        kept_from = start + 32 if start > 0 else 0
        assert kept_from <= kept_until
        kept_until = start + 256 - 32 if start + 256 < 1000 else 1000
    assert kept_until == 1000


def test_tiled_prediction_equals_whole_image(module: CellSegModule) -> None:
    image = np.random.default_rng(1).random((400, 328, 3), dtype=np.float32)
    whole = predict_probabilities(module, image)
    tiled = predict_probabilities(module, image, tile_size=256, margin=96, batch_size=3)
    assert np.abs(tiled - whole).max() < 1e-4


def test_too_small_tiles_are_refused(module: CellSegModule) -> None:
    with pytest.raises(ValueError, match="must exceed"):
        predict_probabilities(module, np.zeros((300, 300, 3), np.float32), tile_size=64)


def test_loaded_modules_run_channels_last_with_the_same_output(
    module: CellSegModule, tmp_path: Path
) -> None:
    loaded = load_module(save_checkpoint(module, tmp_path / "m.ckpt"))
    conv = next(
        m for m in loaded.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    image = np.random.default_rng(2).random((64, 72, 3), dtype=np.float32)
    expected = predict_probabilities(module, image)
    assert np.abs(predict_probabilities(loaded, image) - expected).max() < 1e-5


@pytest.mark.parametrize(("length", "multiple", "extent"), [(37, 8, 40), (37, 8, 64), (5, 8, 24),
                                                            (1, 8, 16), (64, 8, 64)])  # fmt: skip
def test_padded_index_is_a_reflection_to_the_multiple_then_to_the_extent(
    length: int, multiple: int, extent: int
) -> None:
    image = np.random.default_rng(0).random((length, 3))
    first = np.pad(image, ((0, -length % multiple), (0, 0)), mode="reflect")
    expected = np.pad(first, ((0, extent - first.shape[0]), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(image[padded_index(length, multiple, extent)], expected)


def test_untiled_prediction_is_the_net_on_the_reflected_image(module: CellSegModule) -> None:
    image = np.random.default_rng(3).random((45, 70, 3), dtype=np.float32)
    padded = np.pad(image, ((0, 3), (0, 2), (0, 0)), mode="reflect")
    with torch.inference_mode():
        logits = module(torch.from_numpy(padded.transpose(2, 0, 1).copy())[None])
    expected = torch.sigmoid(logits[0, 0]).numpy()[:45, :70]
    np.testing.assert_allclose(predict_probabilities(module, image), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(401, 333), (203, 517), (260, 199)])
@pytest.mark.parametrize("tile_size", [200, 216])
def test_tiles_crossing_odd_edges_predict_like_the_whole_image(
    module: CellSegModule, shape: tuple[int, int], tile_size: int
) -> None:
    image = np.random.default_rng(4).random((*shape, 3), dtype=np.float32)
    tiled = predict_probabilities(module, image, tile_size=tile_size, batch_size=2)
    assert tiled.shape == shape and tiled.dtype == np.float32
    assert np.abs(tiled - predict_probabilities(module, image)).max() < 1e-4


def _forward_shapes(module: CellSegModule, image: np.ndarray, tile_size: int) -> list[tuple]:
    """Input shapes of the net's forward passes when predicting ``image``."""
    shapes: list[tuple] = []
    hook = module.net.register_forward_pre_hook(lambda _, args: shapes.append(args[0].shape))
    try:
        predict_probabilities(module, image, tile_size=tile_size)
    finally:
        hook.remove()
    return shapes


def test_images_within_the_tile_budget_are_predicted_whole(module: CellSegModule) -> None:
    wide = np.random.default_rng(6).random((150, 300, 3), dtype=np.float32)  # 45,000 px
    assert _forward_shapes(module, wide, tile_size=216) == [(1, 3, 152, 304)]  # 216**2 = 46,656
    tiled = _forward_shapes(module, wide, tile_size=208)  # 208**2 = 43,264 px < 152 * 304
    assert len(tiled) > 1 and all(max(shape[2:]) <= 208 for shape in tiled)


def test_strided_views_predict_like_copies(module: CellSegModule) -> None:
    view = np.random.default_rng(5).random((300, 250, 3), dtype=np.float32)[::-1, ::-1]
    expected = predict_probabilities(module, np.ascontiguousarray(view), tile_size=200)
    np.testing.assert_array_equal(predict_probabilities(module, view, tile_size=200), expected)


def test_balanced_tiles_need_no_more_tiles_and_cover_the_image() -> None:
    for tile in (200, 264, 1280, 2048):
        for length in range(8, 9000, 56):
            side = tile_side(length, tile, margin=96, multiple=8)
            starts = tile_starts(length, side, margin=96, multiple=8)
            assert side <= max(tile, length)
            assert len(starts) <= len(tile_starts(length, min(tile, length), 96, 8))
            kept_until = 0
            for start in starts:  # every pixel is kept by some tile
                kept_from, kept_to = _keep(start, start + side, starts[-1] + side, 96)
                assert kept_from <= kept_until
                kept_until = kept_to
            assert kept_until >= length
    assert tile_side(8000, 1280, margin=96, multiple=8) == 1168
    assert tile_side(1200, 1280, margin=96, multiple=8) == 1200


def test_auto_precision_follows_the_hardware() -> None:
    from cellcount.inference.predict import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)


def test_a_batch_of_equal_images_predicts_like_each_alone(module: CellSegModule) -> None:
    rng = np.random.default_rng(1)
    images = [rng.random((45, 70, 3), dtype=np.float32) for _ in range(3)]
    batched = predict_batch(module, images)
    for image, prob in zip(images, batched, strict=True):
        assert prob.shape == (45, 70)
        np.testing.assert_allclose(prob, predict_probabilities(module, image), atol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        predict_batch(module, [images[0], images[0][:40]])
