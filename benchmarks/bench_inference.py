"""Section 4: model-only inference time per image for each paper architecture.

The main table runs in the harness process the way counting runs the nets:
channels-last, glibc's allocator tuned (:func:`cellcount.runtime.allocator.tune_allocator`),
``torch.inference_mode``, in fp32 and under bf16 autocast; each figure is set
against the matmul peak of the same precision (section 3).

The option table (c_resunet) shows what each option gave, from the
straightforward fp32 forward up, in two fresh child processes
(``python -m benchmarks.bench_inference JSON``): one with glibc's default
allocator settings and one with ``MALLOC_MMAP_MAX_=0`` and a huge
``MALLOC_TRIM_THRESHOLD_`` (the environment form of what ``tune_allocator``
sets), which keep freed activation buffers in the heap for reuse instead of
returning them to the kernel (every large tensor is otherwise a fresh ``mmap``
whose pages fault in, zero-filled, on first touch). The tuned child also tries
one thread, ``torch.compile`` and ONNX Runtime.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_common import (
    Section,
    Stats,
    fmt_bytes,
    fmt_ratio,
    fmt_stats,
    fmt_time,
    measure,
    peak_rss,
    progress,
    run_child,
    table,
)
from cellcount.data.io import read_image
from cellcount.inference.predict import predict_probabilities
from cellcount.nets import build_net
from cellcount.runtime.allocator import tune_allocator

PAPER_ARCHS = ("c_resunet", "resunet", "small_unet", "unet")
PRECISIONS = ("fp32", "bf16")  # the main table: what `--precision fp32|bf16` runs
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}
# Option rows: (name, what the package does with it). Both children run the first three.
BASIC_OPTIONS = (
    ("fp32", "—"),
    ("fp32 channels_last", "on (checkpoints load channels-last)"),
    ("bf16 autocast + channels_last", "on where bf16 is native (`--precision auto`)"),
)
EXTRA_OPTIONS = (
    ("bf16 autocast + channels_last, 1 thread", "off: torch uses all cores"),
    (
        "bf16 autocast + channels_last, torch.compile",
        "off: compiles per image size (set-up) for a few %",
    ),
    ("fp32, ONNX Runtime (`cellcount export`)", "off: slower than torch here"),
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


def _predict(net: nn.Module, image: np.ndarray, precision: str = "fp32") -> np.ndarray:
    with torch.inference_mode():
        return predict_probabilities(net, image, precision=precision)


def _time(net: nn.Module, image: np.ndarray, plan: Plan, precision: str) -> Stats:
    run = partial(_predict, net, image, precision)
    if plan.warmup_side < 1.0:
        side_h = max(64, int(image.shape[0] * plan.warmup_side) // 8 * 8)
        side_w = max(64, int(image.shape[1] * plan.warmup_side) // 8 * 8)
        _predict(net, image[:side_h, :side_w], precision)
        return measure(run, plan.repeats, warmup=0)
    return measure(run, plan.repeats, warmup=1)


def _cpu_columns(stats: Stats) -> list[str]:
    """CPU/wall, kernel share of CPU time and page faults per image."""
    return [
        f"{stats.cpu_per_wall:.2f}",
        f"{stats.system_share:.0%}",
        f"{stats.median_faults:,.0f}",
    ]


# -- child: c_resunet options in a fresh process ---------------------------------------------
def _one_thread(run: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run()
        finally:
            torch.set_num_threads(threads)

    return call


def _compiled(net: nn.Module, image: np.ndarray) -> Callable[[], np.ndarray]:
    """bf16 channels-last c_resunet through ``torch.compile`` (inductor, weights frozen)."""
    import torch._inductor.config as inductor

    inductor.freezing = True  # constant-folds the eval-mode weights (and batch norms)
    compiled = torch.compile(net)
    return partial(_predict, compiled, image, "bf16")


def _onnx_runtime(net: nn.Module, image: np.ndarray, folder: Path) -> Callable[[], np.ndarray]:
    """``net`` exported by ``cellcount export`` and run by ONNX Runtime (CPU, fp32)."""
    import onnxruntime as ort

    from cellcount.inference.checkpoints import save_checkpoint
    from cellcount.inference.export import export_model
    from cellcount.training.module import CellSegModule

    module = CellSegModule(arch="c_resunet")
    module.net.load_state_dict(net.state_dict())
    exported = export_model(save_checkpoint(module, folder / "m.ckpt"), "onnx", folder / "m.onnx")
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image.transpose(2, 0, 1)[None].copy()}
    return lambda: np.asarray(session.run(None, feed)[0])[0, 0]


def _option_runs(
    net: nn.Module, image: np.ndarray, extras: bool, folder: Path
) -> dict[str, Callable[[], Callable[[], np.ndarray]]]:
    """Option name -> set-up (timed separately) returning the call to time."""
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    runs: dict[str, Callable[[], Callable[[], np.ndarray]]] = {
        "fp32": lambda: partial(_predict, net, image),
        "fp32 channels_last": lambda: partial(_predict, last, image),
        "bf16 autocast + channels_last": lambda: partial(_predict, last, image, "bf16"),
    }
    if extras:
        runs[EXTRA_OPTIONS[0][0]] = lambda: _one_thread(partial(_predict, last, image, "bf16"))
        runs[EXTRA_OPTIONS[1][0]] = lambda: _compiled(copy.deepcopy(last), image)
        runs[EXTRA_OPTIONS[2][0]] = lambda: _onnx_runtime(net, image, folder)
    return runs


def _child(job: dict[str, Any]) -> dict[str, Any]:
    image = read_image(job["image"])
    torch.manual_seed(0)
    net = build_net("c_resunet").eval()
    reference = _predict(net, image)  # also a warm-up of the process
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-opt-") as scratch:
        for name, make in _option_runs(net, image, job["extras"], Path(scratch)).items():
            start = time.perf_counter()
            try:
                run = make()
                warm = run()  # the warm-up call (compiles, for torch.compile), also compared
            except Exception as err:  # an option this machine cannot run is reported, not fatal
                out[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
                continue
            setup = time.perf_counter() - start
            stats = measure(run, job["repeats"], warmup=0)
            out[name] = {
                "seconds": stats.samples,
                "user": stats.user,
                "system": stats.system,
                "faults": stats.faults,
                "setup_s": setup,
                "max_abs_diff": float(np.abs(warm - reference).max()),
            }
    out["peak_rss"] = peak_rss()
    return out


def _spawn(image: Path, repeats: int, tuned: bool) -> dict[str, Any]:
    env = {**os.environ, **(TUNED_MALLOC if tuned else {})}
    if not tuned:
        for key in TUNED_MALLOC:
            env.pop(key, None)
    job = {"image": str(image), "repeats": repeats, "extras": tuned}
    return run_child("benchmarks.bench_inference", job, timeout=1800, env=env)


def _option_row(
    name: str, allocator: str, info: dict[str, Any], stats: Stats, speedup: float,
    gflop: float, peak: float,
) -> list[object]:  # fmt: skip
    rate = stats.rate(gflop).median
    precision = "bf16" if name.startswith("bf16") else "fp32"
    return [
        f"{name}, {allocator} malloc",
        f"**{fmt_stats(stats)}**",
        stats.n,
        fmt_ratio(speedup),
        f"{rate:,.1f}",
        f"{rate / peak:.0%} of {precision}",
        *_cpu_columns(stats),
        fmt_time(info["setup_s"]),
        f"{info['max_abs_diff']:.1e}",
    ]


def _option_table(
    image: Path, repeats: int, gflop: float, peaks: dict[str, Stats], data: dict[str, Any]
) -> tuple[str, bool]:
    rows: list[list[object]] = []
    noisy = False
    base: float | None = None
    defaults = dict(BASIC_OPTIONS + EXTRA_OPTIONS)
    rss = {}
    for tuned in (False, True):
        allocator = "tuned" if tuned else "default"
        result = _spawn(image, repeats, tuned)
        data[f"options_{allocator}_malloc"] = result
        rss[allocator] = fmt_bytes(result["peak_rss"])
        for name, info in result.items():
            if name == "peak_rss":
                continue
            package = defaults[name] if tuned or name == "fp32" else "—"
            if "error" in info:
                rows.append([f"{name}, {allocator} malloc", f"failed: {info['error']}",
                             *["—"] * 9, package])  # fmt: skip
                continue
            stats = Stats(info["seconds"], 1, "", info["user"], info["system"], info["faults"])
            base = stats.median if base is None else base
            peak = peaks["bf16" if name.startswith("bf16") else "fp32"].median
            row = _option_row(name, allocator, info, stats, base / stats.median, gflop, peak)
            rows.append([*row, package])
            noisy |= stats.noisy
            progress(f"inference c_resunet {name}, {allocator} malloc: {stats.median:.2f} s")
    text = (
        "\n\n**What each option gave** (c_resunet, same weights (seed 0) and image, in two "
        "fresh child processes of this run): the straightforward fp32 forward (first row), "
        "then the net converted to channels-last memory format (`net.to(memory_format="
        "torch.channels_last)`), then that under `torch.autocast('cpu', dtype=torch.bfloat16)`"
        "; first with glibc's default allocator, then with `MALLOC_MMAP_MAX_=0 "
        "MALLOC_TRIM_THRESHOLD_=68719476736` in the environment (what `tune_allocator` sets "
        "at run time: freed activation buffers stay in the heap and are reused, so no page "
        "faults after the warm-up). The tuned process also runs the bf16 row on one thread "
        "(`torch.set_num_threads(1)`), through `torch.compile` (inductor, "
        "`torch._inductor.config.freezing = True`), and the fp32 net exported by "
        "`cellcount export --format onnx` in ONNX Runtime's CPU provider (default threads). "
        f"One warm-up call, then {repeats} timed calls each; *set-up* is the option's "
        "preparation plus its warm-up call (compilation, export, first oneDNN kernels). "
        "Speed-up is vs the first row; the max |probability difference| is vs the process's "
        "own fp32 output (untrained weights); *in cellcount* says whether the package uses "
        f"the option by default. Peak RSS of the children: {rss['default']} (default "
        f"malloc), {rss['tuned']} (tuned, including the compile and ONNX rows).\n\n"
        + table(
            [
                "c_resunet option",
                "s per image, median (min–max)",
                "runs",
                "speed-up",
                "GFLOP/s",
                "of matmul peak",
                "CPU/wall",
                "kernel share",
                "page faults",
                "set-up",
                "max abs prob diff",
                "in cellcount",
            ],
            rows,
        )
    )
    return text, noisy


# -- the section ------------------------------------------------------------------------------
def _arch_rows(
    plan: Plan, image: np.ndarray, shape: tuple[int, int], peaks: dict[str, Stats]
) -> tuple[list[list[object]], dict[str, Any], bool]:
    torch.manual_seed(0)
    net = build_net(plan.arch).eval().to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    gflop = count_flops(net, *shape) / 1e9
    rows: list[list[object]] = []
    data: dict[str, Any] = {"gflop": gflop, "params": params}
    noisy = False
    for precision in PRECISIONS:
        seconds = _time(net, image, plan, precision)
        rate = seconds.rate(gflop).median
        fraction = rate / peaks[precision].median
        noisy |= seconds.noisy
        rows.append(
            [
                f"`{plan.arch}`",
                precision,
                f"{params / 1e6:.2f} M",
                f"{gflop:,.0f}",
                "1 at half size" if plan.warmup_side < 1.0 else "1",
                seconds.n,
                f"**{fmt_stats(seconds)}**",
                f"{rate:,.1f}",
                f"**{fraction:.0%}**",
                *_cpu_columns(seconds),
            ]
        )
        data[precision] = {"seconds": seconds.samples, "fraction": fraction, "rate": rate}
        progress(f"inference {plan.arch} {precision}: {seconds.median:.2f} s, {rate:.1f} GFLOP/s")
    return rows, data, noisy


def run(
    image_path: Path, plans: list[Plan], peaks: dict[str, Stats], option_repeats: int
) -> Section:
    """Time each plan in process; ``option_repeats`` > 0 adds the c_resunet option table."""
    tune_allocator()  # as counting does (a Counter would set it on creation)
    image = read_image(image_path)
    height, width = image.shape[:2]
    shape = padded_shape(height, width)
    rows: list[list[object]] = []
    data: dict[str, Any] = {}
    noisy = False
    for plan in plans:
        arch_rows, data[plan.arch], arch_noisy = _arch_rows(plan, image, shape, peaks)
        rows += arch_rows
        noisy |= arch_noisy
    extra = ""
    if option_repeats and "c_resunet" in data:
        extra, options_noisy = _option_table(
            image_path, option_repeats, data["c_resunet"]["gflop"], peaks, data
        )
        noisy |= options_noisy
    body = (
        f"`predict_probabilities(net, image, precision=p)` on one preloaded float32 "
        f"{width}x{height} real image (net input {shape[1]}x{shape[0]}), whole image at once "
        "(batch 1), `torch.inference_mode()`, CPU, as counting runs it: net in channels-last "
        "memory format, glibc allocator tuned (`cellcount.runtime.allocator.tune_allocator`), fp32 "
        "or bf16 autocast (`--precision auto` picks bf16 on this CPU). Untrained weights "
        "(`torch.manual_seed(0)`; time does not depend on the values), in the harness "
        "process. GFLOP per image = convolution and matmul FLOPs of one forward (2 per "
        "multiply-add), counted once with `torch.utils.flop_counter.FlopCounterMode` on a "
        "`meta`-device copy; GFLOP/s = that / the median time; *of matmul peak* divides by "
        "the matmul median of the same precision in section 3 "
        f"(fp32 {peaks['fp32'].median:,.1f}, bf16 {peaks['bf16'].median:,.1f} GFLOP/s). "
        "Warm-up is one untimed call of the same size, except *half size* (unet: one call "
        "on a crop of half the side; the only per-shape start-up cost is creating the "
        "oneDNN kernels, small next to a forward of seconds). *CPU/wall* = process CPU time "
        "(user + kernel) / wall time, i.e. busy cores (2.00 = both cores of this machine); "
        "*kernel share* = the part of that CPU time spent in the kernel, nearly all of it "
        "serving the *page faults* (minor, per image) of freshly allocated activation "
        "buffers. `smp_unet` is registered too but is not a paper net.\n\n"
        + table(
            [
                "architecture",
                "precision",
                "params",
                "GFLOP / image",
                "warm-up",
                "runs",
                "s per image, median (min–max)",
                "GFLOP/s",
                "of matmul peak",
                "CPU/wall",
                "kernel share",
                "page faults",
            ],
            rows,
        )
        + extra
    )
    title = f"4. Inference per {width}x{height} image (model only, CPU)"
    return Section(title, body, data, noisy)


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
