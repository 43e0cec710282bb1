"""Full-image inference: padding to the net's multiple, and tiling equal to whole-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.inference import load_module, predict_probabilities, tile_starts
from cellcount.module import CellSegModule, save_checkpoint


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
