"""Section 4, accelerator part: images/s of each paper net at batch 1 and at its best batch.

Run on a CUDA device when one is present (``run.py`` passes it): the same real
image repeated into batches of 1, 2, 4, ... until the device runs out of memory
or the largest batch, in fp32 and under bf16 and fp16 autocast, nets in
channels-last format under ``torch.inference_mode``. The device is synchronised
after every forward pass, so each sample is a complete pass.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.bench_common import Section, Stats, fmt_stats, measure, progress, table
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
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            net(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    stats = measure(forward, repeats, warmup=WARMUP)
    return Stats([seconds / batch for seconds in stats.samples], WARMUP)


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


def run(
    plans: list[Plan],
    image: np.ndarray,
    device: torch.device,
    gflops: dict[str, float],
    precisions: dict[str, torch.dtype | None] | None = None,
    batches: tuple[int, ...] = BATCHES,
    repeats: int = 5,
) -> tuple[str, dict[str, Any]]:
    """Markdown (a paragraph and a table) and raw numbers for every plan and precision.

    Args:
        image: float (H, W, 3) RGB in [0, 1]; H and W multiples of 8.
        gflops: GFLOP per image of each plan's net (for GFLOP/s).
    """
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
    rows: list[list[object]] = []
    data: dict[str, Any] = {}
    for plan in plans:
        torch.manual_seed(0)
        net = build_net(plan.arch).eval().to(device).to(memory_format=torch.channels_last)
        for name, dtype in (precisions or PRECISIONS).items():
            sweep = batch_sweep(net, tensor, dtype, batches, repeats)
            if not sweep:
                rows.append([f"`{plan.arch}`", name, "does not fit", "—", "—", "—"])
                continue
            best = min(sweep, key=lambda batch: sweep[batch].median)
            rate = gflops[plan.arch] / sweep[best].median
            rows.append(
                [
                    f"`{plan.arch}`",
                    name,
                    f"**{1 / sweep[1].median:,.1f}**" if 1 in sweep else "—",
                    best,
                    f"**{1 / sweep[best].median:,.1f}** ({fmt_stats(sweep[best])} per image)",
                    f"{rate:,.0f}",
                ]
            )
            data.setdefault(plan.arch, {})[name] = {
                str(batch): stats.samples for batch, stats in sweep.items()
            }
            progress(f"{device.type} inference {plan.arch} {name}: best batch {best}")
        del net
    text = (
        f"On `{device}` ({_device_name(device)}): images per second of each paper net on "
        f"the same image, batches of {', '.join(map(str, batches))} copies (up to the "
        f"largest that fits), {WARMUP} untimed passes then {repeats} timed ones per batch, "
        "channels-last, `torch.inference_mode()`, the device synchronised after each pass; "
        "*best batch* has the most images/s.\n\n"
        + table(
            [
                "architecture",
                "precision",
                "images/s at batch 1",
                "best batch",
                "images/s at best batch",
                "GFLOP/s at best batch",
            ],
            rows,
        )
    )
    return text, data


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def add_accelerator_rows(section: Section, plans: list[Plan], image_path: Path) -> Section:
    """Section 4 with the CUDA rows appended, or a note that there is no CUDA device."""
    if not torch.cuda.is_available():
        note = (
            "\n\nNo CUDA device here, so no GPU rows (with one, images/s of each net at "
            "batch 1 and at its best batch, in fp32 and bf16/fp16 autocast, follow here)."
        )
        return replace(section, body=section.body + note)
    image = read_image(image_path)
    height, width = image.shape[:2]
    image = image[: height // 8 * 8, : width // 8 * 8]
    gflops = {plan.arch: float(section.data[plan.arch]["gflop"]) for plan in plans}
    text, data = run(plans, image, torch.device("cuda"), gflops)
    return replace(section, body=f"{section.body}\n\n{text}", data={**section.data, "cuda": data})
