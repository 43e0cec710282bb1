"""Section 4: model-only inference time per image for each paper architecture."""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_common import Section, Stats, fmt_ratio, fmt_stats, measure, progress, table
from cellcount.inference import predict_probabilities
from cellcount.nets import build_net

PAPER_ARCHS = ("c_resunet", "resunet", "small_unet", "unet")


@dataclass(frozen=True)
class Plan:
    """How one architecture is timed."""

    arch: str
    repeats: int
    warmup_side: float = 1.0  # warm-up image side as a fraction of the timed image


def count_flops(net: nn.Module, height: int, width: int) -> int:
    """FLOPs (2 per multiply-add) of convolutions and matmuls in one forward of one image.

    Counted on a copy of the net on the ``meta`` device, so nothing is computed.
    Element-wise work (batch norm, activations, additions) is not counted.
    """
    meta = copy.deepcopy(net).to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, height, width, device="meta"))
    return int(counter.get_total_flops())


def padded_shape(height: int, width: int, multiple: int = 8) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def _predict(net: nn.Module, image: np.ndarray, bf16: bool = False) -> np.ndarray:
    context: AbstractContextManager[object] = (
        torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    )
    with torch.inference_mode(), context:
        return predict_probabilities(net, image)


def _time(net: nn.Module, image: np.ndarray, plan: Plan, bf16: bool = False) -> Stats:
    if plan.warmup_side < 1.0:
        side_h = max(64, int(image.shape[0] * plan.warmup_side) // 8 * 8)
        side_w = max(64, int(image.shape[1] * plan.warmup_side) // 8 * 8)
        _predict(net, image[:side_h, :side_w], bf16)
        return measure(partial(_predict, net, image, bf16), plan.repeats, warmup=0)
    return measure(partial(_predict, net, image, bf16), plan.repeats, warmup=1)


def run(
    image: np.ndarray, plans: list[Plan], peaks: dict[str, Stats], variants: int
) -> tuple[Section, dict[str, Stats]]:
    """Time each plan; ``variants`` > 0 adds c_resunet channels-last and bf16 rows."""
    height, width = image.shape[:2]
    full_h, full_w = padded_shape(height, width)
    fp32_peak, bf16_peak = peaks["fp32"].median, peaks["bf16"].median
    rows: list[list[object]] = []
    data: dict[str, Any] = {}
    times: dict[str, Stats] = {}
    noisy = False
    reference: np.ndarray | None = None
    reference_net: nn.Module | None = None
    for plan in plans:
        torch.manual_seed(0)
        net = build_net(plan.arch).eval()
        params = sum(p.numel() for p in net.parameters())
        gflop = count_flops(net, full_h, full_w) / 1e9
        seconds = _time(net, image, plan)
        times[plan.arch] = seconds
        noisy |= seconds.noisy
        rate = seconds.rate(gflop)
        warm = "1 at half size" if plan.warmup_side < 1.0 else "1"
        rows.append(
            [
                f"`{plan.arch}`",
                f"{params / 1e6:.2f} M",
                f"{gflop:,.0f}",
                warm,
                seconds.n,
                f"**{fmt_stats(seconds)}**",
                f"{rate.median:,.1f}",
                f"{rate.median / fp32_peak:.0%}",
            ]
        )
        data[plan.arch] = {
            "seconds": seconds.samples,
            "gflop": gflop,
            "params": params,
            "fraction": rate.median / fp32_peak,
        }
        progress(f"inference {plan.arch}: {seconds.median:.2f} s/image, {rate.median:.1f} GFLOP/s")
        if plan.arch == "c_resunet":
            reference = _predict(net, image)
            reference_net = net
    extra = ""
    if variants and reference is not None and reference_net is not None:
        base = times["c_resunet"]
        gflop = float(data["c_resunet"]["gflop"])
        last = copy.deepcopy(reference_net).to(memory_format=torch.channels_last)
        variant_rows = []
        for label, bf16, peak in (
            ("fp32, channels_last weights", False, fp32_peak),
            ("bf16 autocast + channels_last", True, bf16_peak),
        ):
            seconds = measure(partial(_predict, last, image, bf16), variants, warmup=1)
            difference = float(np.abs(_predict(last, image, bf16) - reference).max())
            rate = seconds.rate(gflop)
            variant_rows.append(
                [
                    f"`c_resunet` {label}",
                    fmt_stats(seconds),
                    seconds.n,
                    fmt_ratio(base.median / seconds.median),
                    f"{rate.median:,.1f}",
                    f"{rate.median / peak:.0%} of {'bf16' if bf16 else 'fp32'}",
                    f"{difference:.1e}",
                ]
            )
            times[label] = seconds
            noisy |= seconds.noisy
            data[label] = {"seconds": seconds.samples, "max_abs_prob_diff": difference}
            progress(f"inference c_resunet {label}: {seconds.median:.2f} s/image")
        extra = (
            "\n\nFor information, the same c_resunet (same weights, same image) with the "
            "net converted to channels-last memory format (`net.to(memory_format="
            "torch.channels_last)`; the input stays NCHW) and additionally run under "
            "`torch.autocast('cpu', dtype=torch.bfloat16)`; speed-up is vs the fp32 row "
            "above, from the same run. The difference is the max |probability difference| "
            "vs the fp32 row's output (untrained weights; a trained net's may differ).\n\n"
            + table(
                [
                    "variant",
                    "s per image",
                    "runs",
                    "speed-up vs fp32",
                    "GFLOP/s",
                    "of matmul peak",
                    "max abs prob diff",
                ],
                variant_rows,
            )
        )
    body = (
        f"`predict_probabilities(net, image)` on one preloaded float32 {width}x{height} real "
        f"image (net input padded to {full_w}x{full_h}), whole image at once (batch 1), "
        "`torch.inference_mode()`, CPU, fp32, untrained weights (`torch.manual_seed(0)`; "
        "time does not depend on the values). GFLOP per image = convolution and matmul "
        "FLOPs of one forward (2 per multiply-add), counted once with "
        "`torch.utils.flop_counter.FlopCounterMode` on a `meta`-device copy; GFLOP/s = "
        "that / the median time; the last column divides by the fp32 matmul median of "
        f"section 3 ({fp32_peak:,.1f} GFLOP/s). Warm-up is one untimed call of the same "
        "size, except where it says *half size* (unet: one call on a crop of half the "
        "side; the only per-shape start-up cost is creating the oneDNN kernels, tiny next "
        "to a forward of tens of seconds). `smp_unet` is registered too but is not a paper net.\n\n"
        + table(
            [
                "architecture",
                "params",
                "GFLOP / image",
                "warm-up",
                "runs",
                "s per image, median (min–max)",
                "GFLOP/s",
                "of fp32 matmul peak",
            ],
            rows,
        )
        + extra
    )
    title = f"4. Inference per {width}x{height} image (model only, CPU)"
    return Section(title, body, data, noisy), times
