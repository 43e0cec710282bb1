"""Cell size from an image's appearance: a linear regression on the network's features.

The model's own measurement of cell size (count, measure the cells, count again;
:mod:`cellcount.inference.cell_size`) settles on nuclei, but on textured tissue the
network draws objects at whatever size it is told, so measuring them says nothing.
For those images a checkpoint can carry a *size model*: ridge regression from the
network's bottleneck features to the log of the median cell diameter, as Cellpose
regresses the diameter from its style vector (Stringer et al., Nat Methods 2021).

Features (:func:`appearance`): the image shrunk by each factor of ``LEVELS``, a
centre crop of at most ``CROP`` px of each, and per bottleneck channel the spatial
mean and standard deviation: what the network sees at its own scale and coarser.
The regression is fitted (:func:`fit_size_model`) on training images rescaled to
known cell sizes (:func:`rescaled_views`), its ridge strength chosen on validation
images. docs/method.md#cell-size says when counting uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cellcount.data.sizes import rescale_image
from cellcount.nets.base import SegmentationNet, round_up

# The image is looked at shrunk by these factors (so cells of up to ~8x the network's
# own size appear at a scale it knows), each as a centre crop of at most CROP px.
LEVELS = (1, 2, 4, 8)
CROP = 256
# A level is at least this many px on its short side (small images are enlarged).
MIN_SIDE = 24
# Cell diameters (px) training views are rescaled to (log-uniform), and the rescaling
# factors allowed for it.
VIEW_DIAMETERS = (6.0, 128.0)
VIEW_SCALES = (1 / 8, 8.0)
# Ridge strengths tried on the validation views (the features are standardised).
ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
# ... and the one used when there are no validation views (the shipped model's choice).
DEFAULT_ALPHA = 1000.0


@dataclass(frozen=True)
class SizeModel:
    """log(cell diameter px) = standardised :func:`appearance` features . ``weights`` + ``bias``.

    Attributes:
        mean, scale: float (F,) standardisation of the features.
        weights: float (F,) regression weights.
        bias: intercept (log px).
        alpha: the ridge strength it was fitted with.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float

    def estimate(self, net: nn.Module, image: np.ndarray) -> float:
        """The typical cell diameter (px) of a float (H, W, 3) [0, 1] image."""
        return float(self.diameters(appearance(net, image)))

    def diameters(self, features: np.ndarray) -> np.ndarray:
        """Cell diameters (px) of float (..., F) :func:`appearance` features, float (...)."""
        return np.exp(((features - self.mean) / self.scale) @ self.weights + self.bias)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats, as a checkpoint's hyperparameters hold them."""
        arrays = {key: getattr(self, key).astype(float).tolist()
                  for key in ("mean", "scale", "weights")}  # fmt: skip
        return {**arrays, "bias": float(self.bias), "alpha": float(self.alpha)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SizeModel:
        """The inverse of :meth:`as_dict`.

        Raises:
            ValueError: missing keys or arrays of different lengths.
        """
        try:
            arrays = [np.asarray(values[key], np.float64) for key in ("mean", "scale", "weights")]
            bias, alpha = float(values["bias"]), float(values["alpha"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"size_model needs mean, scale, weights, bias, alpha: {err}") from err
        if len({array.shape for array in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError("size_model mean, scale and weights must be lists of one length")
        mean, scale, weights = arrays
        return cls(mean, scale, weights, bias, alpha)


@torch.inference_mode()
def appearance(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """float64 (2 C len(LEVELS),) features of a float (H, W, 3) [0, 1] image: per level
    of ``LEVELS``, the mean and standard deviation over space of each of the C
    bottleneck channels of a centre crop of at most ``CROP`` px.

    Raises:
        TypeError: ``net`` is not a :class:`SegmentationNet` (it has no bottleneck).
    """
    if not isinstance(net, SegmentationNet):
        raise TypeError(f"a size model needs a cellcount SegmentationNet, got {type(net).__name__}")
    was_training = net.training
    net.eval()
    try:
        levels = [_level(image, factor, int(net.input_multiple)) for factor in LEVELS]
        return np.concatenate([_level_features(net, level) for level in levels])
    finally:
        net.train(was_training)


def _level(image: np.ndarray, factor: int, multiple: int) -> np.ndarray:
    """The image shrunk ``factor`` times (short side at least ``MIN_SIDE``), centre-cropped
    to at most ``CROP`` px, padded by reflection to the net's side ``multiple``."""
    scale = max(1 / factor, MIN_SIDE / min(image.shape[:2]))
    window = _centre(image, int(np.ceil(CROP / scale)))
    crop = _centre(window if scale == 1 else rescale_image(window, scale), CROP)
    pads = [(0, round_up(side, multiple) - side) for side in crop.shape[:2]]
    return np.pad(crop, [*pads, (0, 0)], mode="reflect") if any(p for _, p in pads) else crop


def _centre(image: np.ndarray, side: int) -> np.ndarray:
    """The centre window of at most ``side`` x ``side`` px of an (H, W, ...) array."""
    top, left = ((length - min(length, side)) // 2 for length in image.shape[:2])
    return image[top : top + side, left : left + side]


def _level_features(net: SegmentationNet, level: np.ndarray) -> np.ndarray:
    """float64 (2 C,) spatial means then standard deviations of the C bottleneck channels
    of one float (h, w, 3) level (h, w multiples of the net's side multiple)."""
    device = next(net.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(level.transpose(2, 0, 1)))[None].to(device)
    deepest = net.bottleneck(batch.float())[0].flatten(1).double()
    return torch.cat([deepest.mean(1), deepest.std(1)]).cpu().numpy()


def rescaled_views(
    image: np.ndarray, diameter: float, views: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, float]]:
    """The image as it is and ``views - 1`` copies rescaled so that its cells (median
    ``diameter`` px) have random sizes, log-uniform over ``VIEW_DIAMETERS`` (factors
    within ``VIEW_SCALES``): ``(float (h, w, 3) image, its cell diameter px)`` pairs.

    Enlarged copies are cut to the window :func:`appearance` looks at first, so an 8x
    enlargement costs no more memory than the features need.
    """
    out = [(image, diameter)]
    low, high = np.log(VIEW_DIAMETERS)
    for _ in range(views - 1):
        scale = float(np.clip(np.exp(rng.uniform(low, high)) / diameter, *VIEW_SCALES))
        window = _centre(image, int(np.ceil(CROP * max(LEVELS) / scale)) + 8)
        out.append((rescale_image(window, scale), diameter * scale))
    return out


def fit_size_model(features: np.ndarray, diameters: np.ndarray, alpha: float) -> SizeModel:
    """Ridge regression of log ``diameters`` (float (N,) px) on standardised float (N, F)
    ``features`` with strength ``alpha`` (closed form)."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    standard = (features - mean) / scale
    target = np.log(diameters)
    gram = standard.T @ standard + alpha * np.eye(standard.shape[1])
    weights = np.linalg.solve(gram, standard.T @ (target - target.mean()))
    return SizeModel(mean, scale, weights, float(target.mean()), float(alpha))


def relative_errors(model: SizeModel, features: np.ndarray, diameters: np.ndarray) -> np.ndarray:
    """float (N,) estimate / truth - 1 of precomputed float (N, F) ``features``."""
    return model.diameters(features) / diameters - 1.0


def choose_size_model(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
    alphas: Sequence[float] = ALPHAS,
) -> tuple[SizeModel, dict[float, float]]:  # fmt: skip
    """The fit on ``train`` (features, diameters) whose median absolute relative error
    on ``val`` is lowest, and that error for every alpha tried (with no ``val`` views,
    the fit at :data:`DEFAULT_ALPHA` and no errors)."""
    if len(val[1]) == 0:
        return fit_size_model(*train, DEFAULT_ALPHA), {}
    fits = {alpha: fit_size_model(*train, alpha) for alpha in alphas}
    errors = {alpha: float(np.median(np.abs(relative_errors(fit, *val))))
              for alpha, fit in fits.items()}  # fmt: skip
    return fits[min(errors, key=errors.__getitem__)], errors
