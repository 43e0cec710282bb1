"""Section 4, accelerator part: images/s of each paper net at batch 1 and at its best batch.

Run on a CUDA device when one is present (``run.py`` passes it): the same real
image repeated into batches of 1, 2, 4, ... until the device runs out of memory
or the largest batch, in fp32 and under bf16 and fp16 autocast, nets in
channels-last format under ``torch.inference_mode``. The device is synchronised
after every forward pass, so each sample is a complete pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.bench_common import Result, Stats, measure, progress
from benchmarks.bench_inference import Plan
from cellcount.data.io import read_image
from cellcount.nets import build_net

BATCHES = (1, 2, 4, 8, 16, 32)
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16 autocast": torch.bfloat16,
    "fp16 autocast": torch.float16,
}
WARMUP = 3  # untimed passes per batch size (cuDNN autotuning, allocator caching)


def seconds_per_image(
    net: nn.Module, image: torch.Tensor, batch: int, dtype: torch.dtype | None, repeats: int
) -> Stats:
    """Wall seconds per image of forward passes over ``batch`` copies of ``image`` (1, 3, H, W)."""
    device = image.device
    inputs = image.expand(batch, -1, -1, -1).contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        """One synchronised forward pass over the batch."""
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            net(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    stats = measure(forward, repeats, warmup=WARMUP)
    return stats.scaled(1 / batch)


def batch_sweep(
    net: nn.Module,
    image: torch.Tensor,
    dtype: torch.dtype | None,
    batches: tuple[int, ...],
    repeats: int,
) -> dict[int, Stats]:
    """Seconds per image at each batch size, stopping at the first that does not fit."""
    results: dict[int, Stats] = {}
    for batch in batches:
        try:
            results[batch] = seconds_per_image(net, image, batch, dtype, repeats)
        except torch.OutOfMemoryError:
            if image.device.type == "cuda":
                torch.cuda.empty_cache()
            break
    return results


def _arch_sweeps(
    arch: str,
    tensor: torch.Tensor,
    precisions: dict[str, torch.dtype | None],
    batches: tuple[int, ...],
    repeats: int,
) -> dict[str, dict[int, Stats]]:
    """Batch sweeps of one net (seed 0) per precision; an empty sweep: nothing fits."""
    torch.manual_seed(0)
    net = build_net(arch).eval().to(tensor.device).to(memory_format=torch.channels_last)
    out = {}
    for name, dtype in precisions.items():
        out[name] = sweep = batch_sweep(net, tensor, dtype, batches, repeats)
        if sweep:
            best = min(sweep, key=lambda batch: sweep[batch].median)
            progress(f"{tensor.device.type} inference {arch} {name}: best batch {best}")
    return out


def run(
    plans: list[Plan],
    image: np.ndarray,
    device: torch.device,
    precisions: dict[str, torch.dtype | None] | None = None,
    batches: tuple[int, ...] = BATCHES,
    repeats: int = 5,
) -> Result:
    """Seconds per image at every batch size for every plan and precision.

    Args:
        image: float (H, W, 3) RGB in [0, 1]; H and W multiples of 8.

    Returns:
        ``device``, ``device_name``, ``batches``, ``warmup``, ``repeats`` and
        ``archs``: arch -> precision -> batch size -> :class:`Stats` of seconds per
        image (empty where not even batch 1 fits).
    """
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
    archs = {}
    for plan in plans:
        archs[plan.arch] = _arch_sweeps(
            plan.arch, tensor, precisions or PRECISIONS, batches, repeats
        )
    return {
        "device": str(device),
        "device_name": _device_name(device),
        "batches": batches,
        "warmup": WARMUP,
        "repeats": repeats,
        "archs": archs,
    }


def _device_name(device: torch.device) -> str:
    """The GPU's name, or the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def on_cuda(plans: list[Plan], image_path: Path) -> Result | None:
    """:func:`run` on the first CUDA device for ``image_path``; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    image = read_image(image_path)
    height, width = image.shape[:2]
    return run(plans, image[: height // 8 * 8, : width // 8 * 8], torch.device("cuda"))
