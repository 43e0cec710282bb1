"""The size model: features, the ridge fit, its checkpoint round trip, and its use by
``--cell-diameter auto`` when the model's own measurement of cell size cannot settle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.counter import Counter
from cellcount.data.datamodule import CellDataModule
from cellcount.data.options import DataOptions
from cellcount.data.sizes import median_diameter
from cellcount.inference.checkpoints import load_module, save_checkpoint
from cellcount.inference.size_model import (
    LEVELS,
    VIEW_DIAMETERS,
    SizeModel,
    appearance,
    fit_size_model,
    relative_errors,
    rescaled_views,
)
from cellcount.training.module import CellSegModule
from cellcount.training.size_fit import fit_on_split
from tests.test_cell_size import _discs, _sized_counter


def _module(seed: int = 0) -> CellSegModule:
    torch.manual_seed(seed)
    return CellSegModule(arch_kwargs={"n_features_start": 4}, cell_diameter=16.0).eval()


def _constant(module: CellSegModule, diameter: float) -> SizeModel:
    """A size model that reads ``diameter`` px off any image (zero weights)."""
    width = appearance(module.net, np.zeros((32, 32, 3), np.float32)).size
    zeros = np.zeros(width)
    return SizeModel(zeros, np.ones(width), zeros, float(np.log(diameter)), 1.0)


def test_features_have_one_width_for_any_image_size() -> None:
    module = _module()
    widths = {appearance(module.net, np.random.default_rng(0).random((h, w, 3), np.float32)).size
              for h, w in [(20, 30), (256, 256), (300, 700)]}  # fmt: skip
    assert widths == {2 * 32 * len(LEVELS)}  # mean and std of 8n = 32 bridge channels


def test_a_fit_reads_the_cell_size_of_images_it_never_saw() -> None:
    """Bright discs on noise, seen through an untrained net: the fit on some sizes
    estimates other sizes, on other images, within 25 %."""
    module, rng = _module(), np.random.default_rng(0)
    images = [(_discs(d, seed=seed)[0], d) for seed, d in enumerate((8, 12, 18, 27, 40, 60, 90))]
    train = [view for image, d in images for view in rescaled_views(image, d, 3, rng)]
    features = np.stack([appearance(module.net, image) for image, _ in train])
    model = fit_size_model(features, np.array([d for _, d in train]), alpha=10.0)
    for diameter in (10, 22, 50):
        image, labels = _discs(diameter, seed=100 + diameter)
        true = median_diameter(labels)
        assert true is not None
        assert abs(model.estimate(module.net, image) / true - 1) <= 0.25, diameter


def test_views_cover_the_sizes_and_keep_enlargements_small() -> None:
    image = np.random.default_rng(0).random((200, 300, 3)).astype(np.float32)
    views = rescaled_views(image, 20.0, 40, np.random.default_rng(1))
    assert views[0][0] is image and views[0][1] == 20.0
    sizes = np.array([d for _, d in views[1:]])
    assert sizes.min() >= VIEW_DIAMETERS[0] - 1e-9 and sizes.max() <= VIEW_DIAMETERS[1] + 1e-9
    assert sizes.min() < 12 and sizes.max() > 60  # both ways, log-uniform
    assert max(max(view.shape[:2]) for view, _ in views) <= 2048 + 8 * 8 + 8


def test_size_model_travels_in_the_checkpoint(tmp_path: Path) -> None:
    module = _module()
    image = _discs(20.0)[0]
    assert module.size_model is None
    features = np.stack([appearance(module.net, view) for view, _ in
                         rescaled_views(image, 20.0, 6, np.random.default_rng(0))])  # fmt: skip
    fitted = fit_size_model(features, np.linspace(10, 40, 6), alpha=1.0)
    module.hparams["size_model"] = fitted.as_dict()
    loaded = load_module(save_checkpoint(module, tmp_path / "model.ckpt"))
    assert loaded.size_model is not None
    assert loaded.size_model.estimate(loaded.net, image) == pytest.approx(
        fitted.estimate(module.net, image), rel=1e-4
    )
    errors = relative_errors(fitted, features, np.linspace(10, 40, 6))
    assert errors.shape == (6,) and np.all(np.isfinite(errors))


def test_a_broken_size_model_is_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        SizeModel.from_dict({"mean": [0, 1], "scale": [1], "weights": [1, 2], "bias": 0,
                             "alpha": 1})  # fmt: skip
    with pytest.raises(ValueError, match="needs mean"):
        SizeModel.from_dict({"mean": [0.0]})


def test_texture_is_counted_at_the_size_its_appearance_gives() -> None:
    """The model draws objects at half whatever size it is told (texture): with a size
    model the image is counted at its estimate, with a warning that says so."""
    counter = _sized_counter(lambda told: 0.5 * told)
    counter.size_model = _constant(counter.module, 27.0)
    diameter, labels, warning = counter.segment(_discs(30.0)[0][:256, :256])
    assert diameter == pytest.approx(27.0) and labels.max() > 0
    assert "cell size from appearance (27 px)" in warning and "--cell-diameter" in warning


def test_a_measurement_that_settles_wins_over_the_appearance() -> None:
    counter = _sized_counter(lambda told: 18.0)
    counter.size_model = _constant(counter.module, 34.0)
    diameter, _, warning = counter.segment(_discs(30.0)[0][:256, :256])
    assert diameter < 21 and warning == ""


def test_appearance_estimates_stay_within_what_the_model_counts() -> None:
    counter = Counter(_module())
    counter.size_model = _constant(counter.module, 5000.0)
    blank = np.zeros((64, 64, 3), np.float32)
    assert counter.appearance_diameter(blank) == counter.diameter_range[1]
    counter.size_model = None
    with pytest.raises(ValueError, match="no size model"):
        counter.appearance_diameter(blank)


def test_fit_on_a_split_uses_train_to_fit_and_val_to_choose(
    tiny_synthetic: Path, tmp_path: Path
) -> None:
    datamodule = CellDataModule(DataOptions(root=str(tiny_synthetic), num_workers=0,
                                            split_file=str(tmp_path / "split.json")))  # fmt: skip
    split = datamodule.make_split(datamodule.samples())
    fit = fit_on_split(_module(), datamodule)
    # 128 x 128 images: 3 views each (the minimum)
    assert (fit.train_views, fit.val_views) == (3 * len(split.train), 3 * len(split.val))
    assert fit.model.alpha in fit.alphas and fit.alphas[fit.model.alpha] == min(fit.alphas.values())
    assert fit.val_median_error == pytest.approx(fit.alphas[fit.model.alpha])
    assert 0 <= fit.val_within_25 <= 1 and fit.summary()["val_views"] == fit.val_views
