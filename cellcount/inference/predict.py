"""Full-image inference: probabilities of any-size images from a trained net.

Shared by the threshold-sweep callback, ``evaluate`` and the counting CLI. The
net sees the image padded (by reflection) to a multiple of its input stride; the
output is cropped back to the original size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cellcount.evaluation.postprocess import postprocess
from cellcount.evaluation.scoring import Segmenter
from cellcount.nets.base import round_up
from cellcount.training.module import CellSegModule


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; other names are checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}  # fmt: skip
    if name not in available:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    if not available[name]:
        raise ValueError(f"device {name!r} is not available on this machine; use --device cpu")
    return torch.device(name)


# Receptive-field radius of c-ResUnet (measured: 94 px; the other paper nets: 62 px),
# rounded up to the pooling multiple: tiles this far from a border predict exactly
# what the whole image would.
DEFAULT_MARGIN = 96


def input_multiple(net: nn.Module) -> int:
    """Side multiple the net needs (8 for the paper nets; stored on registry nets)."""
    inner = getattr(net, "net", net)
    return int(getattr(inner, "input_multiple", 8))


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CPU: AVX512-BF16/AMX; CUDA: Ampere+)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device computes it natively, else ``fp32``.

    bf16 counts within the project's tolerance of fp32 (|dF1| <= 0.005, MAE within
    1 %; measured in BENCHMARKS.md section 8), so it is the default where it is fast.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


@torch.inference_mode()
def _forward(net: nn.Module, batch: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """Probabilities of a batch of RGB tiles: float32 (T, 3, h, w) -> float32 (T, h, w).

    ``bf16`` runs the convolutions under bfloat16 autocast (weights stay float32).
    """
    device = next(net.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = net(torch.from_numpy(batch).to(device))
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


def tile_starts(length: int, tile: int, margin: int, multiple: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``.

    Consecutive tiles overlap by ``2 * margin``; starts are multiples of
    ``multiple`` so every tile sees the same pooling grid as the whole image.
    """
    if length <= tile:
        return [0]
    step = max(multiple, (tile - 2 * margin) // multiple * multiple)
    starts = list(range(0, length - tile, step))
    last = round_up(length - tile, multiple)  # aligned; may pass the end by < multiple
    return [*starts, last]


def tile_side(length: int, tile: int, margin: int, multiple: int) -> int:
    """Smallest side <= ``tile`` (a multiple of ``multiple``) that covers ``[0, length)``
    with as few tiles as side ``tile`` needs; ``length`` itself when one tile suffices.

    Spreading the overlap evenly, rather than letting the last tile stick out,
    predicts fewer pixels with less memory per tile (8000 px with tile 1536: six
    tiles of 1496 px).
    """
    if length <= tile:
        return length
    count = len(tile_starts(length, tile, margin, multiple))
    side = -(-(length + (count - 1) * 2 * margin) // (count * multiple)) * multiple
    while len(tile_starts(length, side, margin, multiple)) > count:
        side += multiple
    return side


def _keep(start: int, stop: int, length: int, margin: int) -> tuple[int, int]:
    """Part of a tile ``[start, stop)`` whose prediction is kept (margins dropped inside)."""
    return (start + margin if start > 0 else 0), (stop - margin if stop < length else length)


def predict_probabilities(
    net: nn.Module,
    image: np.ndarray,
    tile_size: int | None = None,
    margin: int = DEFAULT_MARGIN,
    batch_size: int = 1,
    precision: str = "fp32",
) -> np.ndarray:
    """Cell probability of every pixel of one image, whole or tile by tile.

    Large images are cut into overlapping tiles; each tile's prediction is kept
    only away from its inner borders (``margin`` px), where it equals the
    whole-image prediction as long as ``margin`` covers the net's receptive
    field. The probabilities are stitched into one map, so post-processing sees
    every cell once, whatever tile borders cross it.

    The net sees the image reflected at the bottom/right to a multiple of its
    input stride, then again to the extent of the tile grid; only the tiles
    crossing that edge are padded, so the extra memory is bounded by the tile
    size (plus the H x W output), and ``image`` may be a strided view.

    Args:
        net: a net or :class:`CellSegModule` returning logits (N, 1, H, W); it is
            run in eval mode and its previous mode is restored.
        image: float (H, W, 3) RGB in [0, 1], any H and W.
        tile_size: tile budget in px (rounded up to the net's multiple). An image
            of at most ``tile_size ** 2`` pixels (after padding to the multiple) is
            predicted whole, so the budget bounds the pixels per forward pass, not
            the shape; a larger one in tiles of side <= ``tile_size``, shrunk to
            the smallest side needing no more tiles (see :func:`tile_side`). None:
            predict the whole image at once.
        margin: px dropped at inner tile borders (overlap is twice this); at least
            the net's receptive-field radius for results equal to whole-image ones.
        batch_size: tiles per forward pass.
        precision: ``fp32``, ``bf16`` autocast (faster on CPUs with native
            bfloat16 and on GPUs; accuracy measured in BENCHMARKS.md section 8),
            or ``auto`` (see :func:`resolve_precision`).

    Returns:
        float32 (H, W) probabilities in [0, 1].
    """
    precision = resolve_precision(precision, next(net.parameters()).device)
    multiple = input_multiple(net)
    grid = tile_grid(image.shape[:2], tile_size, margin, multiple)
    was_training = net.training
    net.eval()
    try:
        return _stitch(net, image, grid, multiple, batch_size, precision)
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class _TileGrid:
    """Tile start rows and columns, tile (height, width) and kept-margin, in padded px."""

    rows: list[int]
    cols: list[int]
    tile: tuple[int, int]
    margin: int

    @property
    def extent(self) -> tuple[int, int]:
        """(height, width) of the padded image the tiles cover."""
        return self.rows[-1] + self.tile[0], self.cols[-1] + self.tile[1]


def tile_grid(
    shape: tuple[int, int], tile_size: int | None, margin: int, multiple: int
) -> _TileGrid:
    """The tiles of an (H, W) image for a tile budget (see :func:`predict_probabilities`).

    Raises:
        ValueError: a budget too small for the margins.
    """
    full_h, full_w = (round_up(side, multiple) for side in shape)
    tile = round_up(tile_size or max(full_h, full_w), multiple)
    if full_h * full_w <= tile * tile:  # as many pixels as one square tile: predict it whole
        tile = max(full_h, full_w)
    elif tile - 2 * margin < multiple:
        raise ValueError(
            f"tile_size {tile_size} must exceed 2 * margin ({2 * margin}) + {multiple}"
        )
    side_h, side_w = (tile_side(full, tile, margin, multiple) for full in (full_h, full_w))
    starts_h = tile_starts(full_h, side_h, margin, multiple)
    starts_w = tile_starts(full_w, side_w, margin, multiple)
    return _TileGrid(starts_h, starts_w, (side_h, side_w), margin)


def padded_index(length: int, multiple: int, extent: int) -> np.ndarray:
    """Source index (int (extent,), in [0, length)) of each position of a padded axis.

    Reflect ``length`` to a multiple of ``multiple``, then reflect that to
    ``extent`` (>= the first padded length), as two ``np.pad(mode="reflect")``
    calls at the bottom/right would.
    """
    first = np.pad(np.arange(length), (0, -length % multiple), mode="reflect")
    return np.pad(first, (0, extent - first.size), mode="reflect")


def _batch(
    image: np.ndarray,
    boxes: list[tuple[int, int]],
    size: tuple[int, int],
    index: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """float32 (T, 3, h, w) tiles of size (h, w) at padded (y, x) ``boxes``.

    ``index`` maps padded rows and columns to the image's (:func:`padded_index`);
    only tiles crossing the image's bottom/right edge need it.
    """
    batch = np.empty((len(boxes), image.shape[2], *size), np.float32)
    for tile, (y, x) in zip(batch, boxes, strict=True):
        rows, cols = slice(y, y + size[0]), slice(x, x + size[1])
        if rows.stop <= image.shape[0] and cols.stop <= image.shape[1]:
            tile[...] = image[rows, cols].transpose(2, 0, 1)
        else:
            tile[...] = image[np.ix_(index[0][rows], index[1][cols])].transpose(2, 0, 1)
    return batch


def _stitch(
    net: nn.Module,
    image: np.ndarray,
    grid: _TileGrid,
    multiple: int,
    batch_size: int,
    precision: str,
) -> np.ndarray:
    """Predict every tile of ``grid`` and keep its inner part: float32 (H, W) in [0, 1]."""
    height, width = image.shape[:2]
    extent_h, extent_w = grid.extent
    index = (padded_index(height, multiple, extent_h), padded_index(width, multiple, extent_w))
    out = np.zeros((height, width), np.float32)
    boxes = [(y, x) for y in grid.rows for x in grid.cols]
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        probs = _forward(net, _batch(image, chunk, grid.tile, index), precision)
        for (y, x), prob in zip(chunk, probs, strict=True):
            y0, y1 = _keep(y, y + grid.tile[0], extent_h, grid.margin)
            x0, x1 = _keep(x, x + grid.tile[1], extent_w, grid.margin)
            y1, x1 = min(y1, height), min(x1, width)
            out[y0:y1, x0:x1] = prob[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def predict_batch(
    net: nn.Module, images: list[np.ndarray], precision: str = "fp32"
) -> list[np.ndarray]:
    """Probabilities of images of one shape, predicted whole in one forward pass.

    Each image is padded as :func:`predict_probabilities` pads an image it predicts
    whole, so each result equals that function's (up to float rounding).

    Args:
        images: float (H, W, 3) RGB in [0, 1], all of the same (H, W).

    Returns:
        float32 (H, W) probabilities in [0, 1], one per image.

    Raises:
        ValueError: the images differ in shape.
    """
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"predict_batch needs images of one shape, got {sorted(shapes)}")
    precision = resolve_precision(precision, next(net.parameters()).device)
    multiple = input_multiple(net)
    height, width = images[0].shape[:2]
    size = (round_up(height, multiple), round_up(width, multiple))
    index = (padded_index(height, multiple, size[0]), padded_index(width, multiple, size[1]))
    batch = np.concatenate([_batch(image, [(0, 0)], size, index) for image in images])
    was_training = net.training
    net.eval()
    try:
        probs = _forward(net, batch, precision)
    finally:
        net.train(was_training)
    return [prob[:height, :width] for prob in probs]


def model_segmenter(module: CellSegModule, threshold: float) -> Segmenter:
    """A trained model with its post-processing, as a :data:`Segmenter`."""
    params = module.postprocess_params()

    def segment(image: np.ndarray) -> np.ndarray:
        return postprocess(predict_probabilities(module, image), threshold, params)

    return segment


def model_info(module: CellSegModule, threshold: float) -> dict[str, Any]:
    """Model columns of a metrics record: threshold, architecture, trainable parameters."""
    return {
        "threshold": threshold,
        "arch": module.hparams["arch"],
        "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }
