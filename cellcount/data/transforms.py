"""Training augmentation: the authors' per-copy recipes (docs/method.md#augmentation) on
albumentations 2.x.

Pipeline inputs (see :func:`apply_augmentation`):

* ``image``: float32 (H, W, 3) in [0, 1];
* ``mask``: uint8 (H, W) in {0, 1} (the training target);
* ``weight``: float32 (H, W) >= 1 (the weight map).

Geometric steps move all three together; photometric steps touch the image only.
Every geometric step uses ``cv2.BORDER_REFLECT_101`` (the authors' border mode 4).

The weight map is registered as a second *mask* (``additional_targets={"weight": "mask"}``),
so it is resampled with nearest-neighbour interpolation exactly like the mask. Its values
therefore stay in the crop's original set, and ``weight`` stays aligned pixel for pixel with
``mask``. The authors also used nearest neighbour for their 3-channel mask, so their clip of
the weight channel back into [min, max] after every step was a no-op; it is not repeated.

Recipes:

* ``"paper"`` (:func:`paper_augmentation`): the standard per-copy recipe ``data_aug``:
  RGB-shift branch (p 0.05, crops with > 2 cells only), else photometric + geometric
  branch (p 0.65), else elastic branch (p 0.9), else ``shifter(p=1)``.
* ``"generalist"``: ``"paper"`` followed by the lab-variation steps of
  :mod:`cellcount.data.lab_augmentation` (cell size, gamma, contrast, noise, grey levels,
  blur, grey cameras and channel order).
* ``"artifact"`` (:func:`artifact_augmentation`): the artefact-crop recipe, copies split
  80 : 35 : 13 between edges_aug + shifter, elastic, and box blur.
* ``"none"``: identity.

Deviations from albumentations 0.5.2 (the paper's version), all forced by the 2.x API:

* ``ElasticTransform(alpha_affine=...)`` no longer exists. :class:`ControlPointElastic`
  reimplements the 0.5.2 algorithm (random affine from three jittered control points, then
  a Gaussian-smoothed uniform displacement field), drawing alpha, alpha_affine and sigma
  from the authors' lists. It resamples once through the composed map instead of twice
  (warpAffine then remap): the geometry is the same with one interpolation less.
* ``HueSaturationValue`` on float images now runs in 8-bit HSV with limits in 8-bit units.
  The paper's float shifts (fractions of the full range) are multiplied by 255. The
  artefact recipe's +-0.1 degree hue shift is far below 8-bit hue resolution (2 degrees) and
  is set to 0: 2.x would truncate negative draws into a systematic one-step (-2 degree) shift.
* ``ShiftScaleRotate`` is deprecated; the pure shift is an ``Affine`` translation.
* The authors re-quantised the image to uint8 after every Compose (ToFloat/FromFloat).
  Here the image stays float32 throughout, apart from the 8-bit round trip inside HSV.

Gaussian *noise* is not part of the authors' code
(docs/method.md#deviations-from-the-authors-code): ``noise_std > 0`` appends
``GaussNoise`` (always applied, fixed std) as an opt-in extra.

Seeding: albumentations 2.x keeps its own random state per pipeline; global seeds
(``random.seed``, ``np.random.seed``, ``torch.manual_seed``) do not reach it.
:func:`seed_augmentation` restarts a pipeline from a seed. DataLoader workers are forked
copies holding the same state, so without re-seeding every worker would produce the same
augmentation sequence. Re-seed each worker, e.g. in ``worker_init_fn``::

    def worker_init_fn(worker_id: int) -> None:
        dataset = torch.utils.data.get_worker_info().dataset
        for transform in dataset.transforms.values():
            seed_augmentation(transform, torch.initial_seed())  # base seed + worker id
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeAlias

import albumentations as A
import cv2
import numpy as np

from cellcount.data.lab_augmentation import lab_augmentation

BORDER = cv2.BORDER_REFLECT_101
AUGMENTATION_KINDS = ("paper", "generalist", "artifact", "none")

# Additional target: the weight map is resampled like the mask (nearest neighbour).
TARGETS = {"weight": "mask"}

# Branch probabilities of the authors' data_aug (docs/method.md#augmentation).
P_RGB = 0.05
P_PHOTO_GEO = 0.65
P_ELASTIC = 0.9
MIN_CELLS_RGB = 3  # "more than 2 labelled cells"

# (alpha, alpha_affine, sigma) lists; a copy draws each uniformly, repeats act as weights.
PAPER_ELASTIC = ((30, 30, 40, 40, 40, 50, 60), (40, 50, 50, 75, 75), (20, 30, 30, 40, 50))
ARTIFACT_ELASTIC = ((30, 30, 30, 40), (20, 20, 20, 30, 40, 40), (20, 20, 20, 20, 30, 30, 15))
# Copies per artefact crop: edges_aug + shifter, elastic, blur (128 in all,
# docs/method.md#augmentation).
ARTIFACT_COPIES = (80, 35, 13)

Transform: TypeAlias = A.BasicTransform | A.BaseCompose


def count_mask_components(mask: np.ndarray) -> int:
    """Number of 4-connected foreground components of a (H, W) mask (any dtype, > 0 = cell).

    4-connectivity matches ``scipy.ndimage.label``'s default, which the authors used.
    """
    n_labels, _ = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=4)
    return int(n_labels) - 1  # label 0 is the background


class CellCountGate(A.BaseCompose):
    """``first`` with probability ``p`` on crops with >= ``min_cells`` cells, else ``second``.

    Like ``A.OneOrOther``, with the authors' extra condition on the RGB branch: the number of
    cells in ``mask`` (counted only when the random draw selects ``first``). The chosen
    branch is always applied (``force_apply``), its own ``p`` is ignored.
    """

    def __init__(self, first: Transform, second: Transform, p: float, min_cells: int) -> None:
        super().__init__([first, second], p)
        self.min_cells = min_cells

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        if args:
            raise KeyError("pass the data as keyword arguments, e.g. gate(image=..., mask=...)")
        use_first = (
            self.py_random.random() < self.p
            and count_mask_components(data["mask"]) >= self.min_cells
        )
        return self.transforms[0 if use_first else 1](force_apply=True, **data)

    def to_dict_private(self) -> dict[str, Any]:
        return {**super().to_dict_private(), "min_cells": self.min_cells}


class ControlPointElastic(A.DualTransform):
    """albumentations 0.5.2 ``ElasticTransform`` with ``alpha_affine``, parameters from lists.

    Each call draws ``alpha``, ``alpha_affine`` and ``sigma`` uniformly from the given
    sequences (repeats act as weights). Then, as in 0.5.2:

    1. three control points at the centre +- min(H, W) // 3 move by U(-alpha_affine,
       alpha_affine) per coordinate; the affine map fitting them warps the crop;
    2. a displacement field U(-1, 1), Gaussian-smoothed with ``sigma`` and scaled by
       ``alpha``, is added (non-approximate smoothing: kernel truncated at 4 sigma).

    Image: bilinear; masks (``mask`` and the ``weight`` target): nearest neighbour;
    borders: reflect-101. Both steps are composed into one sampling map (see module notes).
    """

    def __init__(
        self,
        alphas: Sequence[float],
        alpha_affines: Sequence[float],
        sigmas: Sequence[float],
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.alphas = tuple(float(a) for a in alphas)
        self.alpha_affines = tuple(float(a) for a in alpha_affines)
        self.sigmas = tuple(float(s) for s in sigmas)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        alpha = self.py_random.choice(self.alphas)
        alpha_affine = self.py_random.choice(self.alpha_affines)
        sigma = self.py_random.choice(self.sigmas)
        inverse = cv2.invertAffineTransform(self._random_affine(height, width, alpha_affine))
        dx, dy = (self._smooth_field(height, width, alpha, sigma) for _ in range(2))
        # Output pixel p reads the source at A^-1 (p + d(p)): the warp of 0.5.2 followed by
        # its remap, composed into one map.
        grid_x, grid_y = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )
        x, y = grid_x + dx, grid_y + dy
        map_x = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
        map_y = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
        return {"map_x": map_x.astype(np.float32), "map_y": map_y.astype(np.float32)}

    def _random_affine(self, height: int, width: int, alpha_affine: float) -> np.ndarray:
        """2x3 affine matrix (source -> destination) from three jittered control points."""
        centre = np.array([width // 2, height // 2], dtype=np.float32)
        half = min(height, width) // 3
        corners = [centre + half, [centre[0] + half, centre[1] - half], centre - half]
        source = np.array(corners, dtype=np.float32)
        jitter = self.random_generator.uniform(-alpha_affine, alpha_affine, size=source.shape)
        return cv2.getAffineTransform(source, (source + jitter).astype(np.float32))

    def _smooth_field(self, height: int, width: int, alpha: float, sigma: float) -> np.ndarray:
        """(H, W) float32 displacement: U(-1, 1) noise, Gaussian-blurred, times alpha."""
        noise = self.random_generator.uniform(-1.0, 1.0, size=(height, width)).astype(np.float32)
        # ksize (0, 0): OpenCV sizes the kernel from sigma (+-4 sigma for float input), and
        # BORDER_REFLECT matches scipy.ndimage.gaussian_filter's default, as 0.5.2 used.
        smooth = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return smooth * np.float32(alpha)

    def apply(
        self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any
    ) -> np.ndarray:
        return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=BORDER)

    def apply_to_mask(
        self, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any
    ) -> np.ndarray:
        return cv2.remap(mask, map_x, map_y, cv2.INTER_NEAREST, borderMode=BORDER)


# -- building blocks (names follow the authors' functions) --------------------------------
def shifter(p: float) -> A.Sequential:
    """The authors' ``shifter(p)``: with probability p, rotation then maybe a flip.

    Rotation U(-180, 180) degrees with p 0.75; then, with probability p again, a vertical or
    a horizontal flip (equal odds). Geometric: image bilinear, masks nearest.
    """
    return A.Sequential(
        [
            A.Rotate(limit=180, interpolation=cv2.INTER_LINEAR, border_mode=BORDER, p=0.75),
            # OneOf forces the chosen child, so the children's p only sets equal weights.
            A.OneOf([A.VerticalFlip(p=1.0), A.HorizontalFlip(p=1.0)], p=p),
        ],
        p=p,
    )


def box_blur(p: float) -> A.Blur:
    """The paper's "Gaussian" blur: a box blur (cv2.blur) with a random odd kernel 3..25."""
    return A.Blur(blur_limit=(3, 25), p=p)


def rgb_shift() -> A.RGBShift:
    """The authors' shifter_RGB: +U(0.05, 0.06) red, +U(0.04, 0.045) green, on [0, 1] floats."""
    return A.RGBShift(
        r_shift_limit=(0.05, 0.06), g_shift_limit=(0.04, 0.045), b_shift_limit=0, p=1.0
    )


def lookup_aug(p: float) -> A.Sequential:
    """The authors' ``lookup_tiff_aug(p)``: with probability p, a OneOf (p) of

    * contrast: intensities times U(0.3, 1.0) (brightness unchanged);
    * value shift +-0.05 of the full range (8-bit units in 2.x: 0.05 * 255).
    """
    return A.Sequential(
        [
            A.OneOf(
                [
                    A.RandomBrightnessContrast(
                        brightness_limit=0, contrast_limit=(-0.7, 0.0), p=1.0
                    ),
                    A.HueSaturationValue(
                        hue_shift_limit=0, sat_shift_limit=0, val_shift_limit=0.05 * 255, p=1.0
                    ),
                ],
                p=p,
            )
        ],
        p=p,
    )


def edges_aug() -> A.OneOf:
    """The authors' ``edges_aug``: with p 0.6, a HSV shift or a contrast change (+-0.4).

    HSV: saturation and value +-0.1 of the full range (8-bit units: 0.1 * 255); the
    +-0.1 degree hue shift is dropped (below 8-bit hue resolution, see module notes).
    """
    return A.OneOf(
        [
            A.HueSaturationValue(
                hue_shift_limit=0, sat_shift_limit=0.1 * 255, val_shift_limit=0.1 * 255, p=1.0
            ),
            A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.4, p=1.0),
        ],
        p=0.6,
    )


def elastic_def(
    lists: tuple[Sequence[float], Sequence[float], Sequence[float]], p: float = 1.0
) -> A.Sequential:
    """The authors' ``elastic_def``: elastic warp, then a shift of up to +-10 % with p 0.3.

    Args:
        lists: the (alpha, alpha_affine, sigma) value lists drawn from.
    """
    alphas, alpha_affines, sigmas = lists
    shift = {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}  # x and y drawn independently, as before
    return A.Sequential(
        [
            ControlPointElastic(alphas, alpha_affines, sigmas, p=1.0),
            A.Affine(
                translate_percent=shift, interpolation=cv2.INTER_LINEAR, border_mode=BORDER, p=0.3
            ),
        ],
        p=p,
    )


# -- recipes ----------------------------------------------------------------------------
def paper_augmentation(
    p_rgb: float = P_RGB,
    p_photo_geo: float = P_PHOTO_GEO,
    p_elastic: float = P_ELASTIC,
    min_cells_rgb: int = MIN_CELLS_RGB,
) -> list[Transform]:
    """The authors' standard per-copy recipe ``data_aug`` (docs/method.md#augmentation), as one
    branch tree.

    Exactly one branch runs, decided by independent draws:

    1. p ``p_rgb``, and only if the mask has >= ``min_cells_rgb`` cells: RGB shift, then
       ``shifter(0.5)``;
    2. else p ``p_photo_geo``: ``lookup_aug(0.7)``, ``shifter(0.7)``, box blur with p 0.33;
    3. else p ``p_elastic``: elastic warp (paper lists), then a shift with p 0.3;
    4. else ``shifter(1)``.

    The probabilities are arguments so tests can force a branch. Returns the transforms for
    an ``A.Compose`` (see :func:`build_augmentation`).
    """
    rgb_branch = A.Sequential([rgb_shift(), shifter(0.5)], p=1.0)
    photo_geo = A.Sequential([lookup_aug(0.7), shifter(0.7), box_blur(0.33)], p=1.0)
    elastic_or_shift = A.OneOrOther(elastic_def(PAPER_ELASTIC), shifter(1.0), p=p_elastic)
    rest = A.OneOrOther(photo_geo, elastic_or_shift, p=p_photo_geo)
    return [CellCountGate(rgb_branch, rest, p=p_rgb, min_cells=min_cells_rgb)]


def artifact_augmentation(copies: tuple[int, int, int] = ARTIFACT_COPIES) -> list[Transform]:
    """The artefact-crop recipe (docs/method.md#augmentation): one of three variants, weighted 80 :
    35 : 13.

    * ``edges_aug`` then ``shifter(0.8)``;
    * elastic warp (artefact lists), then a shift with p 0.3;
    * box blur (random odd kernel 3..25).

    The authors made fixed numbers of copies of each variant; drawing a variant per copy
    with these weights gives the same mix in expectation.
    """
    total = sum(copies)
    edges, elastic, blur = (n / total for n in copies)
    # OneOf normalises the children's p into weights and forces the chosen one.
    return [
        A.OneOf(
            [
                A.Sequential([edges_aug(), shifter(0.8)], p=edges),
                elastic_def(ARTIFACT_ELASTIC, p=elastic),
                A.Sequential([box_blur(1.0)], p=blur),
            ],
            p=1.0,
        )
    ]


def seed_augmentation(transform: A.BaseCompose, seed: int) -> None:
    """Restart a pipeline's random stream from ``seed`` (a non-negative integer).

    Every step of the pipeline then draws from one shared numpy and one shared Python
    generator, so identically seeded pipelines give identical sequences. (``Compose(seed=)``
    instead seeds every step with the same seed, which makes the steps' draws correlated.)
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_augmentation(
    kind: str = "paper", noise_std: float = 0.0, seed: int | None = None
) -> A.Compose:
    """The augmentation pipeline ``kind`` as an ``A.Compose`` with targets image/mask/weight.

    Args:
        kind: ``"paper"`` (standard recipe), ``"generalist"`` (the paper's recipe then
            :func:`cellcount.data.lab_augmentation.lab_augmentation`), ``"artifact"``
            (artefact crops) or ``"none"`` (identity; ``noise_std`` is ignored).
        noise_std: std of additive Gaussian noise on the [0, 1] image, applied after the
            recipe on every call; 0 (default) = none, as in the authors' code.
        seed: if given, the pipeline's random stream starts from it (see
            :func:`seed_augmentation`); else it is drawn from OS entropy.

    Raises:
        ValueError: unknown ``kind`` or negative ``noise_std``.
    """
    if kind not in AUGMENTATION_KINDS:
        raise ValueError(f"unknown augmentation kind {kind!r}; valid kinds: {AUGMENTATION_KINDS}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    transforms: list[Transform] = []
    if kind in ("paper", "generalist"):
        transforms = paper_augmentation()
    if kind == "generalist":
        transforms += lab_augmentation()
    elif kind == "artifact":
        transforms = artifact_augmentation()
    if transforms and noise_std > 0:
        transforms.append(A.GaussNoise(std_range=(noise_std, noise_std), p=1.0))
    pipeline = A.Compose(transforms, additional_targets=TARGETS)
    if seed is not None:
        seed_augmentation(pipeline, seed)
    return pipeline


def apply_augmentation(
    transform: A.BaseCompose,
    image: np.ndarray,
    mask: np.ndarray,
    weight: np.ndarray,
    rng_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one crop.

    Args:
        transform: a pipeline from :func:`build_augmentation`.
        image: (H, W, 3) float in [0, 1].
        mask: (H, W) target, values in {0, 1} (uint8 or bool).
        weight: (H, W) float weight map (>= 1).
        rng_seed: if given, re-seed ``transform`` first (reproducible single call).

    Returns:
        ``(image, mask, weight)``, C-contiguous, with the input dtypes and shapes; the image
        clipped to [0, 1], mask and weight values from the input sets.
    """
    if rng_seed is not None:
        seed_augmentation(transform, rng_seed)
    # OpenCV warps neither bool nor float16 arrays: work in uint8/float32, cast back after.
    out = transform(
        image=np.ascontiguousarray(image, dtype=np.float32),
        mask=np.ascontiguousarray(mask, dtype=np.uint8),
        weight=np.ascontiguousarray(weight, dtype=np.float32),
    )
    new_image = np.clip(out["image"], 0.0, 1.0).astype(image.dtype, copy=False)
    new_mask = out["mask"].astype(mask.dtype, copy=False)
    new_weight = out["weight"].astype(weight.dtype, copy=False)
    return (
        np.ascontiguousarray(new_image),
        np.ascontiguousarray(new_mask),
        np.ascontiguousarray(new_weight),
    )
