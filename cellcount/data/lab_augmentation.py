"""Augmentation for a generalist model: what differs between labs' microscopes.

Appended to the paper's recipe by ``data.augmentation=generalist``
(:func:`cellcount.data.transforms.build_augmentation`); images are float32
(H, W, 3) in [0, 1] after percentile normalisation, so the steps below model
what normalisation leaves: cell size, gamma and contrast of the detector, photon
and read noise, few grey levels (12-bit data in 16-bit files, dim 8-bit images),
defocus, grey cameras and stains in another channel (docs/method.md#augmentation).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

# Cells are drawn 0.7x..1.4x the reference size: the size estimate at count time is
# within about +-25 %, and the model must not care within that range.
SCALE_RANGE = (0.7, 1.4)


class ClipUnit(A.ImageOnlyTransform):
    """Clip the image to [0, 1] (NaN to 0): earlier steps may leave it, and gamma needs it."""

    def __init__(self) -> None:
        super().__init__(p=1.0)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return np.nan_to_num(np.clip(img, 0.0, 1.0), nan=0.0).astype(np.float32, copy=False)


class PoissonGaussNoise(A.ImageOnlyTransform):
    """Shot noise for ``photons`` per unit intensity plus Gaussian read noise.

    ``photons`` is drawn log-uniformly from ``photon_range``, the read-noise std
    uniformly from ``read_range`` (in [0, 1] units). Output clipped to [0, 1].
    """

    def __init__(
        self,
        photon_range: tuple[float, float] = (20.0, 1000.0),
        read_range: tuple[float, float] = (0.0, 0.03),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.photon_range = photon_range
        self.read_range = read_range

    def get_params(self) -> dict[str, Any]:
        low, high = np.log(self.photon_range)
        photons = float(np.exp(self.py_random.uniform(low, high)))
        return {"photons": photons, "read": self.py_random.uniform(*self.read_range),
                "seed": self.py_random.randrange(2**31)}  # fmt: skip

    def apply(
        self, img: np.ndarray, photons: float, read: float, seed: int, **params: Any
    ) -> np.ndarray:
        rng = np.random.default_rng(seed)
        expected = np.nan_to_num(np.clip(img, 0, 1)) * photons
        shot = rng.poisson(expected).astype(np.float32) / np.float32(photons)
        noisy = shot + rng.normal(0.0, read, img.shape).astype(np.float32)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)


class FewGreyLevels(A.ImageOnlyTransform):
    """Quantise to a few grey levels (``levels`` drawn from ``level_range``), as a dim
    8-bit image or 12-bit data look after stretching to [0, 1]."""

    def __init__(self, level_range: tuple[int, int] = (12, 64), p: float = 0.2) -> None:
        super().__init__(p=p)
        self.level_range = level_range

    def get_params(self) -> dict[str, Any]:
        return {"levels": self.py_random.randint(*self.level_range)}

    def apply(self, img: np.ndarray, levels: int, **params: Any) -> np.ndarray:
        return (np.round(img * levels) / np.float32(levels)).astype(np.float32)


def lab_augmentation() -> list[A.BasicTransform]:
    """Scale, channels, gamma/contrast/offset, blur, noise and grey levels, each at random."""
    return [
        A.Affine(
            scale=SCALE_RANGE,
            keep_ratio=True,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.7,
        ),
        A.OneOf([A.ToGray(num_output_channels=3, p=1.0), A.ChannelShuffle(p=1.0)], p=0.3),
        ClipUnit(),
        A.RandomGamma(gamma_limit=(50, 200), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=(-0.5, 0.2), p=0.5),
        ClipUnit(),
        A.GaussianBlur(sigma_limit=(0.5, 2.0), blur_limit=0, p=0.25),
        PoissonGaussNoise(p=0.5),
        FewGreyLevels(p=0.2),
    ]
