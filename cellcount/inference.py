"""Full-image inference: probabilities of any-size images from a trained net.

Shared by the threshold-sweep callback, ``evaluate`` and the counting CLI. The
net sees the image padded (by reflection) to a multiple of its input stride; the
output is cropped back to the original size.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellcount.data.crops import pad_to_multiple
from cellcount.module import CellSegModule


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


def load_module(path: Path | str, map_location: str | torch.device = "cpu") -> CellSegModule:
    """Load a checkpoint in eval mode (no Hydra run folder needed).

    Only tensors and plain Python types are unpickled (``weights_only=True``): a
    file carrying other objects, which could run code, is refused.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a cellcount checkpoint, or carries unsafe objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        module = CellSegModule.load_from_checkpoint(
            str(path), map_location=map_location, weights_only=True
        )
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors and plain types, "
            f"which could run code when loaded. Use checkpoints written by cellcount "
            f"(train, convert); details: {str(err).splitlines()[-1][:200]}"
        ) from err
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"{path} is not a cellcount checkpoint ({type(err).__name__}: {err}); "
            f"use a checkpoint from `python -m cellcount.train` or `cellcount convert`."
        ) from err
    # channels-last convolutions are ~1.5x faster on CPU (BENCHMARKS.md section 4) and
    # give the same probabilities to ~1e-6.
    return module.to(memory_format=torch.channels_last).eval()


# Receptive-field radius of c-ResUnet (measured: 94 px; the other paper nets: 62 px),
# rounded up to the pooling multiple: tiles this far from a border predict exactly
# what the whole image would.
DEFAULT_MARGIN = 96


def input_multiple(net: nn.Module) -> int:
    """Side multiple the net needs (8 for the paper nets; stored on registry nets)."""
    inner = getattr(net, "net", net)
    return int(getattr(inner, "input_multiple", 8))


@torch.inference_mode()
def _forward(net: nn.Module, tiles: list[np.ndarray]) -> np.ndarray:
    """Probabilities of equally sized RGB tiles: float (T, h, w, 3) -> float32 (T, h, w)."""
    device = next(net.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2)))
    logits = net(batch.to(device, torch.float32))
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
    last = -(-(length - tile) // multiple) * multiple  # aligned; may pass the end by < multiple
    return [*starts, last]


def _keep(start: int, stop: int, length: int, margin: int) -> tuple[int, int]:
    """Part of a tile ``[start, stop)`` whose prediction is kept (margins dropped inside)."""
    return (start + margin if start > 0 else 0), (stop - margin if stop < length else length)


def predict_probabilities(
    net: nn.Module,
    image: np.ndarray,
    tile_size: int | None = None,
    margin: int = DEFAULT_MARGIN,
    batch_size: int = 1,
) -> np.ndarray:
    """Cell probability of every pixel of one image, whole or tile by tile.

    Large images are cut into overlapping tiles; each tile's prediction is kept
    only away from its inner borders (``margin`` px), where it equals the
    whole-image prediction as long as ``margin`` covers the net's receptive
    field. The probabilities are stitched into one map, so post-processing sees
    every cell once, whatever tile borders cross it. Memory stays bounded by the
    tile size (plus the H x W output).

    Args:
        net: a net or :class:`CellSegModule` returning logits (N, 1, H, W); it is
            run in eval mode and its previous mode is restored.
        image: float (H, W, 3) RGB in [0, 1], any H and W.
        tile_size: tile side in px (rounded up to the net's multiple); None or
            larger than the image: predict the whole image at once.
        margin: px dropped at inner tile borders (overlap is twice this); at least
            the net's receptive-field radius for results equal to whole-image ones.
        batch_size: tiles per forward pass.

    Returns:
        float32 (H, W) probabilities in [0, 1].
    """
    multiple = input_multiple(net)
    padded, (height, width) = pad_to_multiple(image, multiple)
    full_h, full_w = padded.shape[:2]
    tile = -(-(tile_size or max(full_h, full_w)) // multiple) * multiple
    if tile - 2 * margin < multiple and tile < max(full_h, full_w):
        raise ValueError(
            f"tile_size {tile_size} must exceed 2 * margin ({2 * margin}) + {multiple}"
        )
    tile_h, tile_w = min(tile, full_h), min(tile, full_w)
    padded = _pad_to(padded, tile_starts(full_h, tile_h, margin, multiple)[-1] + tile_h,
                     tile_starts(full_w, tile_w, margin, multiple)[-1] + tile_w)  # fmt: skip
    was_training = net.training
    net.eval()
    try:
        out = _stitch(net, padded, (tile_h, tile_w), margin, multiple, batch_size)
    finally:
        net.train(was_training)
    return out[:height, :width]


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    extra = ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))
    return np.pad(image, extra, mode="reflect") if any(e[1] for e in extra) else image


def _stitch(
    net: nn.Module,
    image: np.ndarray,
    tile: tuple[int, int],
    margin: int,
    multiple: int,
    batch_size: int,
) -> np.ndarray:
    height, width = image.shape[:2]
    out = np.zeros((height, width), np.float32)
    boxes = [
        (y, x)
        for y in tile_starts(height, tile[0], margin, multiple)
        for x in tile_starts(width, tile[1], margin, multiple)
    ]
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        tiles = [image[y : y + tile[0], x : x + tile[1]].astype(np.float32) for y, x in chunk]
        for (y, x), prob in zip(chunk, _forward(net, tiles), strict=True):
            y0, y1 = _keep(y, y + tile[0], height, margin)
            x0, x1 = _keep(x, x + tile[1], width, margin)
            out[y0:y1, x0:x1] = prob[y0 - y : y1 - y, x0 - x : x1 - x]
    return out
