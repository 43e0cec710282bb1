"""Section 4: model-only inference time per image for each paper architecture.

The main table runs in the harness process, with the package as it is. The
variant table (c_resunet in fp32, channels-last, bf16) runs in two fresh child
processes (``python -m benchmarks.bench_inference JSON``): one with glibc's
default allocator settings and one with ``MALLOC_MMAP_MAX_=0`` and a huge
``MALLOC_TRIM_THRESHOLD_``, which keep freed activation buffers in the heap for
reuse instead of returning them to the kernel (every large tensor is otherwise
a fresh ``mmap`` whose pages fault in, zero-filled, on first touch).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_common import (
    REPO,
    Section,
    Stats,
    fmt_bytes,
    fmt_ratio,
    fmt_stats,
    measure,
    peak_rss,
    progress,
    table,
)
from cellcount.data.io import read_image
from cellcount.inference import predict_probabilities
from cellcount.nets import build_net

PAPER_ARCHS = ("c_resunet", "resunet", "small_unet", "unet")
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}
VARIANTS = (  # (name, channels_last, bf16)
    ("fp32", False, False),
    ("fp32 channels_last", True, False),
    ("bf16 autocast + channels_last", True, True),
)


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
    with torch.inference_mode():
        return predict_probabilities(net, image, precision="bf16" if bf16 else "fp32")


def _time(net: nn.Module, image: np.ndarray, plan: Plan) -> Stats:
    if plan.warmup_side < 1.0:
        side_h = max(64, int(image.shape[0] * plan.warmup_side) // 8 * 8)
        side_w = max(64, int(image.shape[1] * plan.warmup_side) // 8 * 8)
        _predict(net, image[:side_h, :side_w])
        return measure(partial(_predict, net, image), plan.repeats, warmup=0)
    return measure(partial(_predict, net, image), plan.repeats, warmup=1)


def _cpu_columns(stats: Stats) -> list[str]:
    """CPU/wall, kernel share of CPU time and page faults per image."""
    return [
        f"{stats.cpu_per_wall:.2f}",
        f"{stats.system_share:.0%}",
        f"{stats.median_faults:,.0f}",
    ]


# -- child: c_resunet variants in a fresh process ------------------------------------------
def _child(job: dict[str, Any]) -> dict[str, Any]:
    image = read_image(job["image"])
    torch.manual_seed(0)
    net = build_net("c_resunet").eval()
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    reference = _predict(net, image)  # also a warm-up of the process
    out: dict[str, Any] = {}
    for name, channels_last, bf16 in VARIANTS:
        model = last if channels_last else net
        warm = _predict(model, image, bf16)  # the warm-up call, also the output compared
        stats = measure(partial(_predict, model, image, bf16), job["repeats"], warmup=0)
        out[name] = {
            "seconds": stats.samples,
            "user": stats.user,
            "system": stats.system,
            "faults": stats.faults,
            "max_abs_diff": float(np.abs(warm - reference).max()),
        }
    out["peak_rss"] = peak_rss()
    return out


def _spawn(image: Path, repeats: int, tuned: bool) -> dict[str, Any]:
    env = {**os.environ, **(TUNED_MALLOC if tuned else {})}
    if not tuned:
        for key in TUNED_MALLOC:
            env.pop(key, None)
    job = json.dumps({"image": str(image), "repeats": repeats})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_inference", job],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"inference child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _variant_table(
    image: Path, repeats: int, gflop: float, peaks: dict[str, Stats], data: dict[str, Any]
) -> tuple[str, bool]:
    rows: list[list[object]] = []
    noisy = False
    base: float | None = None
    for tuned in (False, True):
        allocator = "tuned" if tuned else "default"
        result = _spawn(image, repeats, tuned)
        data[f"variants_{allocator}_malloc"] = result
        for name, _, bf16 in VARIANTS:
            info = result[name]
            stats = Stats(info["seconds"], 1, "", info["user"], info["system"], info["faults"])
            noisy |= stats.noisy
            base = stats.median if base is None else base
            rate = stats.rate(gflop).median
            peak = peaks["bf16" if bf16 else "fp32"].median
            rows.append(
                [
                    f"{name}, {allocator} malloc",
                    f"**{fmt_stats(stats)}**",
                    stats.n,
                    fmt_ratio(base / stats.median),
                    f"{rate:,.1f}",
                    f"{rate / peak:.0%} of {'bf16' if bf16 else 'fp32'}",
                    *_cpu_columns(stats),
                    f"{info['max_abs_diff']:.1e}",
                    fmt_bytes(result["peak_rss"]),
                ]
            )
            progress(f"inference c_resunet {name}, {allocator} malloc: {stats.median:.2f} s/image")
    text = (
        "\n\nFor information (possible product changes), c_resunet in two fresh child "
        "processes of this run, same weights (seed 0) and image: as above (fp32), with the "
        "net converted to channels-last memory format (`net.to(memory_format="
        "torch.channels_last)`, input left NCHW), and that under `torch.autocast('cpu', "
        "dtype=torch.bfloat16)`; first with glibc's default allocator, then with "
        "`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736` in the environment (freed "
        "activation buffers stay in the heap and are reused, so no page faults after the "
        f"warm-up). One warm-up call, then {repeats} timed calls each. Speed-up is vs the "
        "first row; the max |probability difference| is vs each process's own fp32 output "
        "(untrained weights); the peak RSS is that child's whole-process high-water mark.\n\n"
        + table(
            [
                "c_resunet variant",
                "s per image, median (min–max)",
                "runs",
                "speed-up",
                "GFLOP/s",
                "of matmul peak",
                "CPU/wall",
                "kernel share",
                "page faults",
                "max abs prob diff",
                "peak RSS",
            ],
            rows,
        )
    )
    return text, noisy


def run(
    image_path: Path, plans: list[Plan], peaks: dict[str, Stats], variant_repeats: int
) -> tuple[Section, dict[str, Stats]]:
    """Time each plan in process; ``variant_repeats`` > 0 adds the c_resunet variant table."""
    image = read_image(image_path)
    height, width = image.shape[:2]
    full_h, full_w = padded_shape(height, width)
    fp32_peak = peaks["fp32"].median
    rows: list[list[object]] = []
    data: dict[str, Any] = {}
    times: dict[str, Stats] = {}
    noisy = False
    for plan in plans:
        torch.manual_seed(0)
        net = build_net(plan.arch).eval()
        params = sum(p.numel() for p in net.parameters())
        gflop = count_flops(net, full_h, full_w) / 1e9
        seconds = _time(net, image, plan)
        del net
        times[plan.arch] = seconds
        noisy |= seconds.noisy
        rate = seconds.rate(gflop)
        rows.append(
            [
                f"`{plan.arch}`",
                f"{params / 1e6:.2f} M",
                f"{gflop:,.0f}",
                "1 at half size" if plan.warmup_side < 1.0 else "1",
                seconds.n,
                f"**{fmt_stats(seconds)}**",
                f"{rate.median:,.1f}",
                f"{rate.median / fp32_peak:.0%}",
                *_cpu_columns(seconds),
            ]
        )
        data[plan.arch] = {
            "seconds": seconds.samples,
            "gflop": gflop,
            "params": params,
            "fraction": rate.median / fp32_peak,
            "user": seconds.user,
            "system": seconds.system,
            "faults": seconds.faults,
        }
        progress(f"inference {plan.arch}: {seconds.median:.2f} s/image, {rate.median:.1f} GFLOP/s")
    extra = ""
    if variant_repeats and "c_resunet" in data:
        extra, variants_noisy = _variant_table(
            image_path, variant_repeats, data["c_resunet"]["gflop"], peaks, data
        )
        noisy |= variants_noisy
    body = (
        f"`predict_probabilities(net, image)` on one preloaded float32 {width}x{height} real "
        f"image (net input {full_w}x{full_h}), whole image at once (batch 1), "
        "`torch.inference_mode()`, CPU, fp32, untrained weights (`torch.manual_seed(0)`; "
        "time does not depend on the values), in the harness process. GFLOP per image = "
        "convolution and matmul FLOPs of one forward (2 per multiply-add), counted once "
        "with `torch.utils.flop_counter.FlopCounterMode` on a `meta`-device copy; GFLOP/s "
        "= that / the median time; *of fp32 matmul peak* divides by the fp32 matmul median "
        f"of section 3 ({fp32_peak:,.1f} GFLOP/s). Warm-up is one untimed call of the same "
        "size, except *half size* (unet: one call on a crop of half the side; the only "
        "per-shape start-up cost is creating the oneDNN kernels, small next to a forward of "
        "tens of seconds). *CPU/wall* = process CPU time (user + kernel) / wall time, i.e. "
        "busy cores (2.00 = both cores of this machine; lower means waiting, e.g. for a "
        "core taken by another process); *kernel share* = the part of that CPU time spent "
        "in the kernel, nearly all of it serving the *page faults* (minor, per image) of "
        "freshly allocated activation buffers. `smp_unet` is registered too but is not a "
        "paper net.\n\n"
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
                "CPU/wall",
                "kernel share",
                "page faults",
            ],
            rows,
        )
        + extra
    )
    title = f"4. Inference per {width}x{height} image (model only, CPU)"
    return Section(title, body, data, noisy), times


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
