"""The Markdown of BENCHMARKS.md, from the results of a benchmark run.

    .venv/bin/python -m benchmarks.render --from BENCHMARKS.json --out BENCHMARKS.md

``benchmarks.run`` measures, saves the raw results as JSON next to the Markdown
and calls :func:`render`; this module alone turns those results into tables,
headings and explanations, so the page can be written again from the JSON
without measuring anything. Every figure is read from the results: medians and
min-max spreads of :class:`~benchmarks.bench_common.Stats`, ratios of medians.
The goals are the project's speed and memory goals, shown next to the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_common import NOISY_SPREAD, Stats
from cellcount.runtime.files import atomic_write_text

Data = dict[str, Any]  # one section's plain (JSON) results

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")
REFERENCE_SHAPE = (1200, 1600)  # (height, width) the goals are set for
GOAL_WEIGHT_SPEEDUP = 20.0  # weight map vs the per-cell reference
GOAL_POST_100_CELLS = 0.3  # s per 1600x1200 image with 100 cells
GOAL_END_TO_END = 1.2  # s per 1600x1200 image, default options
GOAL_LARGE_SIDE = 8000  # the memory goal's image side
GOAL_LARGE_PEAK = "< 4 GB"  # peak RSS of counting an 8000x8000 image
GOAL_INFERENCE = {"fp32": 0.80, "bf16": 0.70}  # c_resunet, of the same-precision matmul peak
# What the package does with each option of the c_resunet option table.
IN_CELLCOUNT = {
    "fp32": "—",
    "fp32 channels_last": "on (checkpoints load channels-last)",
    "bf16 autocast + channels_last": "on where bf16 is native (`--precision auto`)",
    "bf16 autocast + channels_last, 1 thread": "off: torch uses all cores",
    "bf16 autocast + channels_last, torch.compile": (
        "off: compiles again for every image size (set-up)"
    ),
    "fp32, ONNX Runtime (`cellcount export`)": "off: slower than torch",
    "fp32 channels_last, torch's ELU kernel (before)": "off since 2ef4dcc: ELU written out",
    "bf16 autocast + channels_last, torch's ELU kernel (before)": (
        "off since 2ef4dcc: ELU written out"
    ),
}
NONE = "—"
GOAL_FOLDER_OVER_MODEL = 1.1  # 1600x1200 folder, per image, over model-only prediction
GOAL_SMALL_SPEEDUP = 3.0  # 256x256 folder images/s, overlapped over one at a time
GOAL_AUTO_SIZE = 1.5  # auto cell size over a given one, per image
GOAL_PEER_SPEEDUP = {"cellpose": 5.0}  # cellcount end to end over the peer's, per image


@dataclass(frozen=True)
class Part:
    """One section of the page: its heading, its Markdown and whether a figure is noisy."""

    title: str
    body: str
    noisy: bool = False


# -- formatting ----------------------------------------------------------------------------
def stats(data: Data) -> Stats:
    """The :class:`Stats` of its plain form."""
    return Stats.from_plain(data)


def fmt_time(seconds: float) -> str:
    """Seconds with a unit that keeps 3 significant digits readable."""
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_stats(values: Stats, formatter: Callable[[float], str] = fmt_time) -> str:
    """``median (min–max)``, with a ``!`` when the spread is above ``NOISY_SPREAD``."""
    if values.n == 1:
        return f"{formatter(values.median)} (1 run)"
    flag = " !" if values.noisy else ""
    return f"{formatter(values.median)} ({formatter(values.low)}–{formatter(values.high)}){flag}"


def fmt_ratio(value: float) -> str:
    """A ratio as ``47.2x`` (``1.95x`` below 10)."""
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def fmt_bytes(count: float) -> str:
    """Bytes in GiB from 1 GiB up, else in MiB."""
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def fmt_gflops(value: float) -> str:
    """GFLOP/s with one decimal and thousands separators."""
    return f"{value:,.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_columns(values: Stats) -> list[str]:
    """CPU/wall, kernel share of CPU time and page faults per call."""
    return [
        f"{values.cpu_per_wall:.2f}",
        f"{values.system_share:.0%}",
        f"{values.median_faults:,.0f}",
    ]


def is_reference(data: Data) -> bool:
    """Whether a section measured images of the size the goals are set for."""
    return (data["height"], data["width"]) == REFERENCE_SHAPE


def goal_at(goal: str, reference: bool, where: str = "1600x1200") -> str:
    """``goal``, with the size it is set for when the run measured another size."""
    return goal if reference else f"{goal} at {where}"


# -- section 1 -----------------------------------------------------------------------------
def weight_map_speedup(data: Data) -> float:
    """Per-cell reference median / fast median."""
    return stats(data["per_cell"]).median / stats(data["fast"]).median


def weight_map_goal(data: Data) -> str:
    """The speed-up goal, set for a 1600x1200 mask with 50 cells."""
    reference = (data["height"], data["width"], data["cells"]) == (*REFERENCE_SHAPE, 50)
    return goal_at(f">= {GOAL_WEIGHT_SPEEDUP:.0f}x", reference, "1600x1200, 50 cells")


def section_weight_map(data: Data) -> Part:
    """Section 1: the fast weight map against the per-cell reference."""
    fast, slow = stats(data["fast"]), stats(data["per_cell"])
    # Ratio spread: slowest reference over fastest fast run, and the other way round.
    worst, best = slow.low / fast.high, slow.high / fast.low
    goal = weight_map_goal(data)
    rows: list[list[object]] = [
        ["`weight_map` (windowed, package)", fmt_stats(fast), fast.n, NONE],
        ["`per_cell_weight_map` (reference)", fmt_stats(slow), slow.n, NONE],
        [
            "**speed-up**",
            f"**{fmt_ratio(weight_map_speedup(data))}** ({fmt_ratio(worst)}–{fmt_ratio(best)})",
            "",
            goal,
        ],
    ]
    low, high = data["radii"]
    body = (
        f"Mask {data['width']}x{data['height']} with {data['cells']} random discs (radius "
        f"{low}–{high} px, seed 0), the paper's constants (sigma 25, band 100). One warm-up "
        f"call each, then {data['repeats']} timed calls each; the speed-up is the ratio of "
        "the medians (in brackets: slowest reference / fastest fast call and the reverse). "
        f"Max |difference| between the two maps: {data['max_abs']:.1e} (the truncation "
        "bound is 3.4e-4 per cell).\n\n"
        + table(["weight map", "time per mask, median (min–max)", "runs", "goal"], rows)
    )
    return Part("1. Weight map (training targets)", body, fast.noisy or slow.noisy)


# -- section 2 -----------------------------------------------------------------------------
def _postprocess_row(count: str, info: Data, goal: str) -> list[object]:
    """One row of the section 2 table."""
    total = stats(info["total"])
    return [
        count,
        f"{info['found']} / {info['tp']}",
        fmt_stats(stats(info["postprocess"])),
        fmt_stats(stats(info["matching"])),
        f"**{fmt_stats(total)}**",
        goal,
        fmt_time(total.median / int(count)),
        f"{info['cpu_share']:.2f}",
    ]


def _linear_fit(counts: Data) -> tuple[int, int, float, float]:
    """(fewest cells, most cells, fixed seconds, seconds per cell) through the end rows."""
    totals = {int(n): stats(info["total"]).median for n, info in counts.items()}
    low, high = min(totals), max(totals)
    marginal = (totals[high] - totals[low]) / (high - low)
    return low, high, totals[low] - marginal * low, marginal


def section_postprocess(data: Data) -> Part:
    """Section 2: post-processing + matching per image at several numbers of cells."""
    counts = data["counts"]
    goal_100 = goal_at(f"< {GOAL_POST_100_CELLS} s", is_reference(data))
    rows = [
        _postprocess_row(n, info, goal_100 if n == "100" else NONE) for n, info in counts.items()
    ]
    low, high, fixed, marginal = _linear_fit(counts)
    header = ["cells", "found / matched", "post-process", "matching", "post-process + matching"]
    header += ["goal", "per cell", "CPU/wall"]
    body = (
        f"Synthetic {data['width']}x{data['height']} images with N separate discs (radius "
        f"{data['radii'][0]}–{data['radii'][1]} px on a {data['spacing']}-px grid), "
        "probability map = the disc mask blurred with a 2-px Gaussian, threshold 0.5, the "
        "paper's post-processing constants; matching = `score_image` (label the true mask, "
        "bounding-box centres, greedy, < 50 px). One warm-up call, then "
        f"{data['repeats']} timed calls, for each column of each row. Threads are left as "
        "they are, but this is single-core work (scipy.ndimage, scikit-image and numpy here "
        "do not use threads): the *CPU/wall* column is process CPU time over wall time "
        "during the combined runs (~1.0 = one core busy).\n\n"
        + table(header, rows)
        + f"\n\nLinear fit through the {low}- and {high}-cell rows: about "
        f"{fmt_time(max(fixed, 0.0))} per image (labelling and filters over every pixel) + "
        f"{fmt_time(marginal)} per cell."
    )
    noisy = any(stats(info["total"]).noisy for info in counts.values())
    return Part("2. Post-processing + matching", body, noisy)


# -- section 3 -----------------------------------------------------------------------------
def section_matmul(data: Data) -> Part:
    """Section 3: the matmul throughput in fp32 and bf16, the machine's practical peak."""
    rates = {name: stats(s).rate(data["gflop"]) for name, s in data["seconds"].items()}
    rows = [
        [
            f"`torch.matmul` {name}",
            fmt_stats(stats(data["seconds"][name])),
            f"**{fmt_gflops(rate.median)}** ({fmt_gflops(rate.low)}–{fmt_gflops(rate.high)})",
            rate.n,
        ]
        for name, rate in rates.items()
    ]
    size = data["size"]
    body = (
        f"{size}x{size} @ {size}x{size} ({data['gflop']:.1f} GFLOP each), "
        f"{data['threads']} torch threads, {data['warmup']} warm-up products then "
        f"{data['repeats']} timed, per dtype. This is the reference peak the inference rows "
        "are compared with. bf16 / fp32 throughput ratio: "
        f"{rates['bf16'].median / rates['fp32'].median:.2f}x.\n\n"
        + table(["operation", "time per product", "GFLOP/s, median (min–max)", "runs"], rows)
    )
    noisy = any(rate.noisy for rate in rates.values())
    return Part("3. Machine limit: matmul throughput", body, noisy)


# -- section 4 -----------------------------------------------------------------------------
def inference_fraction(data: Data, arch: str, precision: str) -> tuple[float, float]:
    """(GFLOP/s, fraction of the same-precision matmul peak) of one net and precision."""
    info = data["archs"][arch]
    rate = stats(info[precision]).rate(info["gflop"]).median
    return rate, rate / data["peaks"][precision]


def _inference_rows(data: Data) -> list[list[object]]:
    """The section 4 rows: each net in fp32 and bf16."""
    rows: list[list[object]] = []
    for arch, info in data["archs"].items():
        for precision in ("fp32", "bf16"):
            seconds = stats(info[precision])
            rate, fraction = inference_fraction(data, arch, precision)
            warmup = "1 at half size" if info["warmup_side"] < 1.0 else "1"
            rows.append(
                [f"`{arch}`", precision, f"{info['params'] / 1e6:.2f} M", f"{info['gflop']:,.0f}",
                 warmup, seconds.n, f"**{fmt_stats(seconds)}**", fmt_gflops(rate),
                 f"**{fraction:.0%}**", *cpu_columns(seconds)]
            )  # fmt: skip
    return rows


INFERENCE_HEADER = (
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
)


def _inference_text(data: Data) -> str:
    """What section 4's main table measures and how."""
    peaks = data["peaks"]
    return (
        "`predict_probabilities(net, image, precision=p)` on one preloaded float32 "
        f"{data['width']}x{data['height']} real image (net input "
        f"{data['net_width']}x{data['net_height']}), whole image at once (batch 1), "
        "`torch.inference_mode()`, CPU, as counting runs it: net in channels-last memory "
        "format, glibc allocator tuned (`cellcount.runtime.allocator.tune_allocator`), fp32 "
        "or bf16 autocast (`--precision auto` picks bf16 where the CPU computes it "
        "natively). Untrained weights (`torch.manual_seed(0)`; time does not depend on the "
        "values), in the harness process. GFLOP per image = convolution and matmul FLOPs of "
        "one forward (2 per multiply-add), counted once with "
        "`torch.utils.flop_counter.FlopCounterMode` on a `meta`-device copy; GFLOP/s = that "
        "/ the median time; *of matmul peak* divides by the matmul median of the same "
        f"precision in section 3 (fp32 {fmt_gflops(peaks['fp32'])}, bf16 "
        f"{fmt_gflops(peaks['bf16'])} GFLOP/s). Warm-up is one untimed call of the same "
        "size, except *half size* (unet: one call on a crop of half the side; the only "
        "per-shape start-up cost is creating the oneDNN kernels, small next to a forward of "
        "seconds). *CPU/wall* = process CPU time (user + kernel) / wall time, i.e. busy "
        "cores (2.00 = two cores busy); *kernel share* = the part of that CPU time spent in "
        "the kernel, nearly all of it serving the *page faults* (minor, per image) of "
        "freshly allocated activation buffers. `smp_unet` is registered too but is not a "
        "paper net."
    )


def section_inference(data: Data) -> Part:
    """Section 4: model-only inference per image, the option table and any CUDA rows."""
    noisy = any(stats(info[p]).noisy for info in data["archs"].values() for p in ("fp32", "bf16"))
    body = _inference_text(data) + "\n\n" + table(INFERENCE_HEADER, _inference_rows(data))
    if data.get("options"):
        text, options_noisy = _options(data)
        body += "\n\n" + text
        noisy |= options_noisy
    if data.get("cuda"):
        body += "\n\n" + _cuda_rows(data["cuda"], data["archs"])
    title = f"4. Inference per {data['width']}x{data['height']} image (model only, CPU)"
    return Part(title, body, noisy)


def _option_row(
    label: str, info: Data, base: float, gflop: float, peaks: dict[str, float]
) -> tuple[list[object], Stats]:
    """One option row (without *in cellcount*) and its :class:`Stats`."""
    values = stats(info["stats"])
    rate = values.rate(gflop).median
    precision = "bf16" if label.startswith("bf16") else "fp32"
    row = [
        label,
        f"**{fmt_stats(values)}**",
        values.n,
        fmt_ratio(base / values.median),
        fmt_gflops(rate),
        f"{rate / peaks[precision]:.0%} of {precision}",
        *cpu_columns(values),
        fmt_time(info["setup_s"]),
        f"{info['max_abs_diff']:.1e}",
    ]
    return row, values


def _option_rows(data: Data) -> tuple[list[list[object]], bool]:
    """Rows of both allocators' runs; speed-ups are vs the first row that ran."""
    gflop = data["archs"]["c_resunet"]["gflop"]
    rows: list[list[object]] = []
    base: float | None = None
    noisy = False
    for allocator in ("default", "tuned"):
        for name, info in data["options"][allocator]["options"].items():
            label = f"{name}, {allocator} malloc"
            package = (
                IN_CELLCOUNT.get(name, NONE) if allocator == "tuned" or name == "fp32" else NONE
            )
            if "error" in info:
                rows.append([label, f"failed: {info['error']}", *[NONE] * 9, package])
                continue
            base = stats(info["stats"]).median if base is None else base
            row, values = _option_row(label, info, base, gflop, data["peaks"])
            rows.append([*row, package])
            noisy |= values.noisy
    return rows, noisy


OPTIONS_HEADER = (
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
)


def _options(data: Data) -> tuple[str, bool]:
    """The c_resunet option table with its explanation."""
    options = data["options"]
    rss = {a: fmt_bytes(options[a]["peak_rss"]) for a in ("default", "tuned")}
    rows, noisy = _option_rows(data)
    text = (
        "**What each option gave** (c_resunet, same weights (seed 0) and image, in two "
        "fresh child processes of this run): the straightforward fp32 forward (first row), "
        "then the net converted to channels-last memory format (`net.to(memory_format="
        "torch.channels_last)`), then that under `torch.autocast('cpu', dtype=torch.bfloat16)`"
        "; first with glibc's default allocator, then with `MALLOC_MMAP_MAX_=0 "
        "MALLOC_TRIM_THRESHOLD_=68719476736` in the environment (what `tune_allocator` sets "
        "at run time: freed activation buffers stay in the heap and are reused, so no page "
        "faults after the warm-up). The tuned process also runs the bf16 row on one thread "
        "(`torch.set_num_threads(1)`), through `torch.compile` (inductor, "
        "`torch._inductor.config.freezing = True`), and the fp32 net exported by "
        "`cellcount export --format onnx` in ONNX Runtime's CPU provider (default threads), "
        "and the channels-last fp32 and bf16 rows with the nets' ELU layers on PyTorch's "
        "own kernel (`F.elu`), as before commit 2ef4dcc wrote the ELU out (docs/method.md"
        "#networks: PyTorch's CPU ELU evaluates `expm1` element by element). "
        f"One warm-up call, then {options['repeats']} timed calls each; *set-up* is the "
        "option's preparation plus its warm-up call (compilation, export, first oneDNN "
        "kernels). Speed-up is vs the first row; the max |probability difference| is vs the "
        "process's own fp32 output (untrained weights); *in cellcount* says whether the "
        "package uses the option by default. Peak RSS of the children: "
        f"{rss['default']} (default malloc), {rss['tuned']} (tuned, including the compile "
        "and ONNX rows).\n\n" + table(OPTIONS_HEADER, rows)
    )
    return text, noisy


def _cuda_rows(cuda: Data, archs: Data) -> str:
    """The CUDA table: images/s of each net at batch 1 and at its best batch."""
    rows: list[list[object]] = []
    for arch, precisions in cuda["archs"].items():
        for name, sweep in precisions.items():
            if not sweep:
                rows.append([f"`{arch}`", name, "does not fit", NONE, NONE, NONE])
                continue
            per_image = {batch: stats(s) for batch, s in sweep.items()}
            best = min(per_image, key=lambda batch: per_image[batch].median)
            first = per_image.get("1")
            rows.append(
                [f"`{arch}`", name, f"**{1 / first.median:,.1f}**" if first else NONE, best,
                 f"**{1 / per_image[best].median:,.1f}** ({fmt_stats(per_image[best])} per image)",
                 f"{archs[arch]['gflop'] / per_image[best].median:,.0f}"]
            )  # fmt: skip
    header = ["architecture", "precision", "images/s at batch 1", "best batch"]
    header += ["images/s at best batch", "GFLOP/s at best batch"]
    return (
        f"On `{cuda['device']}` ({cuda['device_name']}): images per second of each paper net "
        f"on the same image, batches of {', '.join(map(str, cuda['batches']))} copies (up to "
        f"the largest that fits), {cuda['warmup']} untimed passes then {cuda['repeats']} "
        "timed ones per batch, channels-last, `torch.inference_mode()`, the device "
        "synchronised after each pass; *best batch* has the most images/s.\n\n"
        + table(header, rows)
    )


# -- section 5 -----------------------------------------------------------------------------
def _counting_intro(data: Data, stages: dict[str, Stats]) -> str:
    """The Counter stage table with its explanation."""
    breakdown = [[name, fmt_stats(s)] for name, s in stages.items() if name != "total"]
    breakdown.append(["**total**", f"**{fmt_stats(stages['total'])}**"])
    return (
        f"One real {data['width']}x{data['height']} image (`{data['image']}`), the shipped "
        "pretrained c_resunet (`Counter.from_checkpoint('pretrained', 'cpu', cell_diameter=40)`: "
        "threshold "
        f"{data['threshold']:.2f}, precision {data['precision']}, tile budget "
        f"{data['tile_size']} px so one forward pass), stages as `Counter.count` runs them, "
        "then what the CLI writes by default (`write_labels`: zlib 16-bit label TIFF; "
        "`render_overlay(..., numbers=True)` + `save_png`). One warm-up pass, then "
        f"{stages['total'].n} timed passes.\n\n" + table(["stage", "median (min–max)"], breakdown)
    )


def _counting_cli(data: Data) -> str:
    """The CLI table with its explanation."""
    goal = goal_at(f"< {GOAL_END_TO_END} s", is_reference(data))
    rows = []
    for index, case in enumerate(data["cli"]):
        per_image = stats(case["per_image"])
        rows.append(
            [case["label"], f"**{fmt_stats(per_image)}**", goal if index == 0 else NONE,
             per_image.n, fmt_time(case["wall_s"] / max(case["rows"], 1)),
             ", ".join(map(str, case["counts"])), case["status"]]
        )  # fmt: skip
    header = ["`cellcount count`", "s per image, median (min–max)", "goal", "images"]
    header += ["wall / image", "counts", "exit status"]
    return (
        "The counting CLI, in-process `cellcount.cli.count.main([folder, --model M, --out "
        "DIR, --quiet, ...])` on the folder of real images (default device: CPU). *Per "
        "image* = the interval between finished rows of `counts.csv` (reading and writing "
        "overlap prediction, so this is the folder's cost per image); *wall / image* = the "
        "whole call (checkpoint load and hash, CSV) "
        "divided by the images; *goal*: the end-to-end goal per 1600x1200 image with the "
        "default options. Models are warm from the rows above and section 4 (same process; "
        "run alone, the first image of each also creates its oneDNN kernels). The masks "
        f"count {', '.join(map(str, data['truth']))} cells in these images. The default "
        "rows estimate each image's cell size (`--cell-diameter auto`); the row with "
        "`--cell-diameter 40` is told it, so the two give the cost of the estimate.\n\n"
        + table(header, rows)
    )


def section_counting(data: Data) -> Part:
    """Section 5: end-to-end counting through the Counter stages and the CLI."""
    stages = {name: stats(s) for name, s in data["stages"].items()}
    body = _counting_intro(data, stages) + "\n\n" + _counting_cli(data)
    noisy = stages["total"].noisy or stats(data["cli"][0]["per_image"]).noisy
    title = f"5. End-to-end counting ({data['width']}x{data['height']} real images)"
    return Part(title, body, noisy)


# -- section 6 -----------------------------------------------------------------------------
def _memory_text(data: Data) -> str:
    """What section 6 measures and how."""
    side = data["large_side"]
    return (
        "Each row is one fresh `python -m benchmarks.bench_memory` process; the peak is its "
        "own resident-set high-water mark at exit (`VmHWM` in `/proc/self/status`; "
        "`ru_maxrss` would not do, because Linux folds the parent's peak into a child's at "
        "exec). Each runs the counting CLI in that process (`cellcount.cli.count.main([image, "
        f"--model {data['model']}, --tile-size S, ...])`: read, predict (bf16 auto), "
        "post-process, cell table, label TIFF + overlay PNG) on CPU, with `--tile-size` "
        f"{data['default_tile']} (the default) unless the row says otherwise, and glibc's "
        "malloc tuned as the `Counter` does (`cellcount.runtime.allocator.tune_allocator`: "
        "no mmap, no trim below 2 GiB; faster inference, larger peak); *glibc malloc "
        f"defaults* rows run with `{data['malloc_env']}=0`. The large image is the real one "
        f"repeated to {side}x{side} (an uncompressed TIFF), so it holds real cells. *after "
        "imports* is the peak before any work (interpreter, torch, cellcount). One run each "
        "(a peak, not a timing); the time column includes process start, imports and, for "
        "large images, the whole tiled inference."
    )


def section_memory(data: Data) -> Part:
    """Section 6: peak resident memory of counting one image per fresh process."""
    side = data["large_side"]
    rows = []
    for case in data["cases"]:
        large_goal = goal_at(GOAL_LARGE_PEAK, side == GOAL_LARGE_SIDE, "8000x8000")
        goal = large_goal if case["large_default"] else NONE
        peak, base = case["peak_rss"], case["baseline_rss"]
        rows.append(
            [case["name"], f"**{fmt_bytes(peak)}**", goal, fmt_bytes(base),
             fmt_bytes(peak - base), fmt_time(case["seconds"]), case["count"]]
        )  # fmt: skip
    scale = (
        f"For scale, at {side}x{side} the float32 RGB image alone is "
        f"{fmt_bytes(side**2 * 12)}, and the float32 probability map and the int32 label "
        f"image {fmt_bytes(side**2 * 4)} each."
        if data["include_large"]
        else "The large-image rows were skipped (--skip-large)."
    )
    header = ["case", "peak RSS", "goal", "after imports", "peak - imports"]
    header += ["process wall time", "cells"]
    body = f"{_memory_text(data)}\n\n{table(header, rows)}\n\n{scale}"
    return Part("6. Peak memory", body)


# -- section 7 -----------------------------------------------------------------------------
def training_speedups(data: Data, device: str, arch: str) -> dict[str, float]:
    """Speed-up of each variant vs the first (fp32 NCHW) of one net on one device."""
    variants = data["devices"][device][arch]["variants"]
    medians = {name: stats(info["stats"]).median for name, info in variants.items()}
    base = next(iter(medians.values()))
    return {name: base / median for name, median in medians.items()}


def training_default(data: Data, arch: str = "c_resunet") -> tuple[float, float] | None:
    """(crops/s, speed-up vs fp32) of the CPU training default of ``arch``; None if not run."""
    info = data["devices"].get("cpu", {}).get(arch)
    default = data["default_variant"]
    if info is None or default not in info["variants"]:
        return None
    rate = stats(info["variants"][default]["stats"]).rate(data["batch_size"]).median
    return rate, training_speedups(data, "cpu", arch)[default]


def _training_rows(data: Data) -> tuple[list[list[object]], bool]:
    """The section 7 rows and whether any timing is noisy."""
    rows: list[list[object]] = []
    noisy = False
    for device, archs in data["devices"].items():
        gpu = device == "cuda"
        for arch, info in archs.items():
            warm = f"{info['warmup']}"
            if info["warm_crop"] != data["crop"]:
                warm += f" at {info['warm_crop']}x{info['warm_crop']}"
            speedups = training_speedups(data, device, arch)
            for name, result in info["variants"].items():
                seconds = stats(result["stats"])
                noisy |= seconds.noisy
                rate = fmt_stats(seconds.rate(data["batch_size"]), lambda v: f"{v:,.2f}")
                rows.append(
                    [f"`{arch}`", device.upper() if gpu else "CPU", name, warm, seconds.n,
                     f"**{rate}**", fmt_time(seconds.median), fmt_ratio(speedups[name]),
                     NONE if gpu else f"{seconds.cpu_per_wall:.2f}", f"{result['first_loss']:.4f}"]
                )  # fmt: skip
    return rows, noisy


def _training_notes(data: Data) -> str:
    """The warm-up and GPU sentences, where they apply."""
    cpu = data["devices"].get("cpu", {})
    halved = sorted(arch for arch, info in cpu.items() if info["warm_crop"] != data["crop"])
    text = ""
    if halved:
        text += (
            f" Warm-up *at NxN* (for {', '.join(halved)}, to keep the section short): one "
            "step on a smaller crop, which creates the Adam state; the oneDNN kernels of the "
            "full size are then created in the timed step, a small cost next to a step of "
            "tens of seconds."
        )
    if data["devices"].get("cuda"):
        text += (
            " On the GPU the same steps also ran in fp16 autocast with a `GradScaler` "
            f"({data['gpu_warmup']} warm-up steps, {data['gpu_repeats']} timed, synchronised "
            "by reading the loss; fp32 with PyTorch's defaults, under which cuDNN may use "
            "TF32 for convolutions)."
        )
    return text


def _training_text(data: Data) -> str:
    """What section 7 measures and how, and the CPU training default."""
    crop, batch = data["crop"], data["batch_size"]
    return (
        f"Crops per second of one training step on a batch of {batch} random {crop}x{crop} "
        "crops: zero grad, forward, weighted BCE loss (`cellcount.training.losses."
        "weighted_bce`, weight map, cell factor 1.5), backward, Adam step (lr 1e-3), "
        "BatchNorm in training mode, the loss read back each step as Lightning does. A fresh "
        "net per row (seed 0, so every variant starts from the same weights and data) and "
        "fresh Adam; untimed warm-up steps first, then timed steps, all rows of an "
        "architecture back to back in the harness process, with glibc's allocator tuned as "
        "`cellcount.train` does (`cellcount.runtime.allocator.tune_allocator`; it made a "
        "c_resunet bf16 step ~1.25x faster in a separate check). *crops/s* = batch size / "
        "seconds per step, median (min–max) over the timed steps; *speed-up* is vs the fp32 "
        "NCHW row of the same architecture and device; *CPU/wall* = busy cores; *first loss* "
        "is the loss of the first warm-up step (same weights and batch in every variant: its "
        f"differences show the precision's effect on one forward).{_training_notes(data)}"
        f"\n\nThe CPU training default is the **{data['default_variant']}** row of each net: "
        "`conf/trainer/cpu.yaml` sets `precision: ${cpu_precision:}`, which "
        "`cellcount.training.resolvers.cpu_precision` resolves to `bf16-mixed` on CPUs with "
        "native bfloat16 (oneDNN's `_is_mkldnn_bf16_supported()`) and to `32-true` elsewhere "
        f"(in this run: `{data['cpu_precision']}`), and `CellSegModule` trains channels-last "
        "(the net is converted at fit start, its inputs in `forward`)."
    )


TRAINING_HEADER = (
    "architecture",
    "device",
    "variant",
    "warm-up steps",
    "timed steps",
    "crops/s, median (min–max)",
    "s per step",
    "speed-up vs fp32",
    "CPU/wall",
    "first loss",
)


def section_training(data: Data) -> Part:
    """Section 7: training throughput of every net and variant."""
    rows, noisy = _training_rows(data)
    body = _training_text(data) + "\n\n" + table(TRAINING_HEADER, rows)
    title = (
        f"7. Training throughput ({data['crop']}x{data['crop']} crops, batch {data['batch_size']})"
    )
    return Part(title, body, noisy)


# -- section 8 -----------------------------------------------------------------------------
def precision_goals(data: Data) -> tuple[str, str]:
    """The ΔF1 and ΔMAE tolerances as goal cells."""
    return f"<= {data['max_delta_f1']}", f"within ±{data['max_delta_mae']:.0%}"


def _precision_row(name: str, result: Data, goals: tuple[str, str]) -> list[object]:
    """One dataset's row of the section 8 table."""
    f1, mae = result["f1"], result["mae"]
    time_fp32, time_bf16 = (sum(result["seconds"][p]) for p in ("fp32", "bf16"))
    return [
        name,
        result["images"],
        f"{f1['fp32']:.4f}",
        f"{f1['bf16']:.4f}",
        f"{result['delta_f1']:.4f}",
        goals[0],
        f"{mae['fp32']:.3f}",
        f"{mae['bf16']:.3f}",
        f"{result['delta_mae']:+.3f} ({result['delta_mae_pct']:+.2f}%)",
        goals[1],
        f"{len(result['count_changed'])} ({result['count_abs_diff']} cells)",
        f"{result['max_abs_prob_diff']:.3f}",
        f"{result['flipped_pixel_share']:.2e}",
        f"{fmt_time(time_fp32)} / {fmt_time(time_bf16)}",
    ]


PRECISION_HEADER = (
    "images",
    "n",
    "F1 fp32",
    "F1 bf16",
    "ΔF1 (abs)",
    "ΔF1 goal",
    "MAE fp32",
    "MAE bf16",
    "ΔMAE (% of fp32)",
    "ΔMAE goal",
    "counts differ",
    "max Δprob (abs)",
    "flipped pixels",
    "time fp32 / bf16",
)


def _precision_outcome(datasets: Data) -> str:
    """One sentence: on which datasets bf16 stays within the tolerance."""
    within = [name for name, result in datasets.items() if result["verdict"]]
    outside = [name for name, result in datasets.items() if not result["verdict"]]
    if not outside:
        return "bf16 stays within both tolerances on every dataset above."
    text = f"bf16 is outside the tolerance on: {', '.join(outside)}"
    return text + (f"; within it on: {', '.join(within)}." if within else ".")


def _precision_text(data: Data) -> str:
    """What section 8 compares and how, with the tolerance."""
    datasets = data["datasets"]
    threshold = next(iter(datasets.values()))["threshold"] if datasets else math.nan
    about = "\n".join(f"- *{name}*: {result['about']}." for name, result in datasets.items())
    return (
        f"Model `{data['model']}` (threshold {threshold:.3f}), counted with "
        "`Counter.from_checkpoint(model, 'cpu', precision=p, cell_diameter=...).count(image)` "
        "for p in fp32 and bf16 (bf16: the network under `torch.autocast('cpu', "
        "dtype=torch.bfloat16)`, weights and post-processing in float32), each image in both "
        "precisions back to back, scored with `cellcount.evaluation.scoring.score_image` "
        "(bounding-box centres, greedy matching) and `cellcount.evaluation.metrics.summarize` "
        f"(micro-averaged F1, counting MAE). Images:\n\n{about}\n\n"
        "The tolerance for bf16 as the CPU default (the *goal* columns): on the validation "
        f"images, |ΔF1| <= {data['max_delta_f1']} and |ΔMAE| <= {data['max_delta_mae']:.0%} "
        "of the fp32 MAE (Δ = bf16 - fp32). *Counts differ*: images whose bf16 count is not "
        "the fp32 count (in brackets the sum of the absolute differences); *max Δprob*: "
        "largest absolute per-pixel probability difference over all images; *flipped "
        "pixels*: mean share of pixels on different sides of the threshold; *time*: `count` "
        "(network, post-processing, cell table) of the whole dataset, fp32 / bf16, one pass "
        "without warm-up (images of new sizes create new kernels), for information only."
    )


def section_precision(data: Data) -> Part:
    """Section 8: bf16 vs fp32 counting accuracy of the shipped model."""
    goals = precision_goals(data)
    rows = [_precision_row(name, result, goals) for name, result in data["datasets"].items()]
    body = (
        _precision_text(data)
        + "\n\n"
        + table(PRECISION_HEADER, rows)
        + "\n\n"
        + _precision_outcome(data["datasets"])
    )
    return Part("8. bf16 vs fp32 inference accuracy", body)


# -- section 9 -----------------------------------------------------------------------------
def throughput_ratios(folder: Data) -> dict[str, float]:
    """The default mode (the last) over model-only; one at a time as before (the first)
    and as now (the second) over the default (speed-up, speedup_now); auto over the
    default given size, and (``estimate``) auto over given the size auto chose, image by
    image."""
    medians = [stats(times).median for times in folder["modes"].values()]
    cost = folder.get("estimate")
    return {"over_model": medians[-1] / stats(folder["model_only"]).median,
            "speedup": medians[0] / medians[-1], "speedup_now": medians[1] / medians[-1],
            "auto": folder["auto"] / medians[-1],
            "estimate": cost["auto"] / cost["given its size"] if cost else math.nan}  # fmt: skip


def section_throughput(data: Data) -> Part:
    """Section 9: a folder counted with reading and writing overlapped, or not."""
    rows, noisy = [], False
    for folder in data["folders"]:
        model = stats(folder["model_only"])
        ratios = throughput_ratios(folder)
        rows.append([f"{folder['shape']}, {folder['images']} images, {folder['diameter']:g} px "
                     "cells", "model only "
                     "(`Counter.probabilities`)", fmt_stats(model), f"{1 / model.median:.2f}",
                     NONE])  # fmt: skip
        for label, times in folder["modes"].items():
            per_image = stats(times)
            noisy |= per_image.noisy
            over = per_image.median / model.median
            rows.append(["", f"`cellcount count` {label}", fmt_stats(per_image),
                         f"{1 / per_image.median:.2f}", f"{over:.2f}x"])  # fmt: skip
        auto = folder["auto"]
        rows.append(["", "`cellcount count`, defaults, `--cell-diameter auto`",
                     fmt_time(auto), f"{1 / auto:.2f}",
                     f"{auto / model.median:.2f}x ({ratios['auto']:.2f}x given size)"])  # fmt: skip
        if "estimate" in folder:
            given = folder["estimate"]["given its size"]
            rows.append(["", "`Counter.count`, each image given the size `auto` chose",
                         fmt_time(given), f"{1 / given:.2f}",
                         f"auto {ratios['estimate']:.2f}x this (the estimate's cost)"])  # fmt: skip
    body = (
        "A folder counted with the shipped model, cells given (`--cell-diameter`: 40 px "
        "FNC neurons, 16 px DSB nuclei) unless the row says `auto`, labels + overlays "
        "written, on CPU. *Per image* = the interval "
        "between finished rows of `counts.csv`, mean over a run (checkpoint load excluded); "
        "cells show the median (min–max) over the alternated runs. *Model only* is the "
        "network alone on each image of the folder, already in memory. The overlapped "
        "counting reads the next image in one thread and writes the previous one's files in "
        "another while the network and post-processing run "
        "(`cellcount.runtime.pipeline`); *batched* also predicts consecutive images of one "
        "size, counted at one cell size, in one forward pass (`--batch-images`). The last "
        "row times the API on each image with `auto` and then given the diameter `auto` "
        "chose for it: counting at a smaller size costs more pixels, so that ratio is the "
        "estimate's own cost. Goals: a 1600x1200 folder at most "
        f"{GOAL_FOLDER_OVER_MODEL}x the model-only time per image; a 256x256 folder at "
        f"least {GOAL_SMALL_SPEEDUP:g}x the images/s of one at a time as before (the first "
        "row: the nets' ELU layers on PyTorch's kernel, as before commit 2ef4dcc); the size "
        "estimate at "
        f"most {GOAL_AUTO_SIZE}x a given size.\n\n"
        + table(
            ["folder", "how", "s per image, median (min–max)", "images/s", "over model only"], rows
        )
    )
    return Part("9. Folder throughput: reading and writing overlapped", body, noisy)


# -- section 10 ----------------------------------------------------------------------------
def short_name(tool: str) -> str:
    """A tool's name without its bracketed note: "Cellpose 3 (from scratch)" -> "Cellpose 3"."""
    return tool.split(" (")[0]


def peer_speedups(data: Data) -> dict[str, dict[str, float]]:
    """Per peer (key), per timing image: the peer's end-to-end median over cellcount's."""

    def ratio(times: Data, key: str) -> float:
        return Stats(times[key]["total"]).median / Stats(times["cellcount"]["total"]).median

    return {key: {label: ratio(times, key) for label, times in data["timing"].items()}
            for key in data["peers"]}  # fmt: skip


def peer_accuracy(data: Data) -> dict[str, dict[str, Data]]:
    """Accuracy rows by set, then by tool."""
    by_set: dict[str, dict[str, Data]] = {}
    for row in data["accuracy"]:
        by_set.setdefault(row["set"], {})[row["tool"]] = row
    return by_set


def _peer_speed_rows(data: Data) -> tuple[list[Row], bool]:
    """Network and end-to-end time per timing image and tool; whether one is noisy."""
    tools = {"cellcount": data["cellcount"], **{k: p["tool"] for k, p in data["peers"].items()}}
    rows, noisy = [], False
    for label, times in data["timing"].items():
        for key, name in tools.items():
            total = Stats(times[key]["total"])
            noisy |= total.noisy
            network = fmt_stats(Stats(times[key]["network"]))
            rows.append([f"{label} (`{data['images'][label]}`)", name, network,
                         f"**{fmt_stats(total)}**"])  # fmt: skip
    return rows, noisy


def section_peers(data: Data) -> Part:
    """Section 10 (and ``docs/results/peers.md``): each trained peer beside cellcount."""
    peers = data["peers"].values()
    accuracy = [[r["set"], r["tool"], r["images"], f"{r['precision']:.3f}", f"{r['recall']:.3f}",
                 f"**{r['f1']:.3f}**", f"{r['mae']:.2f}", f"{r['mpe']:+.1%}"]
                for r in data["accuracy"]]  # fmt: skip
    speed, noisy = _peer_speed_rows(data)
    ratios = "; ".join(
        f"{short_name(data['peers'][key]['tool'])} " + ", ".join(
            f"{label} {fmt_ratio(value)}" for label, value in by_image.items())
        for key, by_image in peer_speedups(data).items())  # fmt: skip
    images = next(iter(peers))["training"]["images"]
    body = (
        "Each peer was trained from scratch with its own training API "
        "(`benchmarks/peers/`, `make peers`) on the same "
        f"{images} DSB 2018 images of the sources the shipped model trained on, on this "
        "machine's CPU, for about the time `make pretrained` takes:\n\n"
        + "\n".join(f"- {p['tool']}: {p['trained']}." for p in peers)
        + "\n\nAll tools count the held-out DSB sources with no size given (cellcount "
        "estimates it; each peer's name says how it handles size) and are matched to the "
        "truth by the same code within 1.25 true median diameters.\n\n"
        + table(["set", "tool", "images", "precision", "recall", "F1", "MAE", "MPE"], accuracy)
        + "\n\nSpeed per image on CPU, from the decoded image: *network* = every forward "
        "pass inside the counting call; *end to end* = the whole call (cellcount: "
        "normalise, size estimate, prediction, post-processing, cell table; "
        + "; ".join(f"{short_name(p['tool'])}: {p['timed']}" for p in peers)
        + "). Median (min–max) over the repeats after a warm-up, all in this run. A peer's "
        f"end to end over cellcount's: {ratios}.\n\n"
        + table(["image", "tool", "network", "end to end"], speed)
    )
    names = " and ".join(short_name(p["tool"]) for p in peers)
    return Part(f"10. Peers: {names} side by side", body, noisy)


def peers_page(data: Data, command: str, date: str) -> str:
    """``docs/results/peers.md``: section 10's figures as ``make peers`` measured them."""
    part = section_peers(data)
    names = part.title.split(": ", 1)[1].removesuffix(" side by side")
    return f"# cellcount beside {names}\n\n`{command}`, {date}.\n\n{part.body}\n"


# -- section 11 ----------------------------------------------------------------------------
def section_finetune(data: Data) -> Part:
    """Section 11: the fine-tuning curve, as ``scripts.finetune_curve`` measured it."""
    rows = [[r["set"], int(r["images"]), f"{r['minutes']:g}", int(r["epochs"]),
             f"{r['trained_min']:.1f}", r["model"], int(r["test_images"]), f"{r['f1']:.3f}",
             f"{r['mae']:.2f}", f"{r['mpe']:+.1%}"] for r in data["rows"]]  # fmt: skip
    body = (
        "Fine-tuning the shipped model from clicked points (`cellcount finetune`) on N "
        "annotated images of a stain it never saw, scored against the clicks of held-out "
        "images of that stain. Minutes of training do not fit this run: the figures are "
        f"those of `{data['command']}` (`{data['source']}`, plot "
        "`docs/results/finetune_curve.png`), on the same 2-core machine. *Budget* is "
        "`--minutes`; *trained* is the whole training run's wall time, which early stopping "
        "may end before the budget.\n\n"
        + table(
            [
                "set",
                "annotated images",
                "budget (min)",
                "epochs",
                "trained (min)",
                "model",
                "test images",
                "F1",
                "MAE",
                "MPE",
            ],
            rows,
        )
    )
    return Part("11. Fine-tuning from clicks (measured by scripts.finetune_curve)", body)


RENDERERS: dict[str, Callable[[Data], Part]] = {
    "1": section_weight_map,
    "2": section_postprocess,
    "3": section_matmul,
    "4": section_inference,
    "5": section_counting,
    "6": section_memory,
    "7": section_training,
    "8": section_precision,
    "9": section_throughput,
    "10": section_peers,
    "11": section_finetune,
}


# -- goals at a glance -----------------------------------------------------------------------
Row = list[str]


def _goal_weight_map(data: Data) -> list[Row]:
    """The weight map speed-up goal."""
    speedup = fmt_ratio(weight_map_speedup(data))
    return [["weight map speed-up vs per-cell reference", weight_map_goal(data), speedup]]


def _goal_postprocess(data: Data) -> list[Row]:
    """The post-processing goal at 100 cells."""
    if "100" not in data["counts"]:
        return []
    seconds = stats(data["counts"]["100"]["total"]).median
    goal = goal_at(f"< {GOAL_POST_100_CELLS} s / image", is_reference(data))
    return [["post-processing + matching, 100 cells", goal, fmt_time(seconds)]]


def _goal_inference(data: Data) -> list[Row]:
    """The c_resunet inference goals, as fractions of the matmul peak."""
    if "c_resunet" not in data["archs"]:
        return []
    rows = []
    for precision, goal in GOAL_INFERENCE.items():
        rate, fraction = inference_fraction(data, "c_resunet", precision)
        name = f"c_resunet CPU inference, {precision}, as a fraction of {precision} matmul"
        rows.append([name, f">= {goal:.0%}", f"{fraction:.0%} ({rate:,.0f} GFLOP/s)"])
    return rows


def _goal_counting(data: Data) -> list[Row]:
    """The end-to-end counting goal."""
    seconds = stats(data["cli"][0]["per_image"]).median
    size = f"{data['width']}x{data['height']}"
    name = f"end to end, `cellcount count --model pretrained`, {size}, per image"
    goal = goal_at(f"< {GOAL_END_TO_END} s / image", is_reference(data))
    return [[name, goal, fmt_time(seconds)]]


def _goal_memory(data: Data) -> list[Row]:
    """The large-image peak memory goal."""
    side = data["large_side"]
    peaks = [case["peak_rss"] for case in data["cases"] if case["large_default"]]
    if not peaks:
        return []
    goal = goal_at(GOAL_LARGE_PEAK, side == GOAL_LARGE_SIDE, "8000x8000")
    return [[f"peak RSS, counting {side}x{side}", goal, fmt_bytes(peaks[0])]]


def _goal_training(data: Data) -> list[Row]:
    """The CPU training default's throughput (no goal: reported)."""
    default = training_default(data)
    if default is None:
        return []
    crop, (rate, speedup) = data["crop"], default
    name = f"c_resunet training, CPU default ({data['default_variant']}), {crop}x{crop} crops"
    return [[name, NONE, f"{rate:.2f} crops/s, {fmt_ratio(speedup)} fp32"]]


def _goal_precision(data: Data) -> list[Row]:
    """The bf16 accuracy tolerance."""
    model = "shipped model" if data["shipped"] else f"model `{Path(data['model']).name}`"
    name = f"bf16 inference vs fp32 ({model}; DSB validation and FNC samples)"
    goal = f"ΔF1 within ±{data['max_delta_f1']}, ΔMAE within ±{data['max_delta_mae']:.0%} of fp32"
    measured = "; ".join(
        f"{dataset}: ΔF1 {d['delta_f1']:.4f}, ΔMAE {d['delta_mae_pct']:+.2f}%"
        for dataset, d in data["datasets"].items()
    )
    return [[name, goal, measured]]


def _goal_throughput(data: Data) -> list[Row]:
    """The folder throughput and size-estimate goals."""
    large, small = (throughput_ratios(folder) for folder in data["folders"])
    shapes = [folder["shape"] for folder in data["folders"]]
    return [
        [f"counting a folder of {shapes[0]}, per image, over model-only prediction",
         f"<= {GOAL_FOLDER_OVER_MODEL}x", fmt_ratio(large["over_model"])],
        [f"counting a folder of {shapes[1]}, images/s, overlapped and batched over one at "
         "a time as before (torch's ELU kernel); in brackets over one at a time now",
         f">= {GOAL_SMALL_SPEEDUP:g}x",
         f"{fmt_ratio(small['speedup'])} ({fmt_ratio(small['speedup_now'])})"],
        [f"auto cell size over a given size, per image ({shapes[0]}; {shapes[1]}); in "
         "brackets over given the size auto chose",
         f"<= {GOAL_AUTO_SIZE}x", f"{_auto_ratios(large)}; {_auto_ratios(small)}"],
    ]  # fmt: skip


def _auto_ratios(ratios: dict[str, float]) -> str:
    """Auto over a given size, and in brackets over the size it chose (when measured)."""
    chosen = "" if math.isnan(ratios["estimate"]) else f" ({fmt_ratio(ratios['estimate'])})"
    return fmt_ratio(ratios["auto"]) + chosen


def _goal_peers(data: Data) -> list[Row]:
    """cellcount's speed-up over each peer, and its F1 and MAE beside the peer's per set."""
    rows = []
    for key, by_image in peer_speedups(data).items():
        tool = data["peers"][key]["tool"]
        rows += [[f"cellcount vs {short_name(tool)} end to end, {label}, per image",
                  f">= {GOAL_PEER_SPEEDUP[key]:g}x faster" if key in GOAL_PEER_SPEEDUP else "—",
                  f"{fmt_ratio(ratio)} faster"]
                 for label, ratio in by_image.items()]  # fmt: skip
        for name, tools in peer_accuracy(data).items():
            a, b = tools[data["cellcount"]], tools[tool]
            figures = f"{a['f1']:.3f} vs {b['f1']:.3f} / {a['mae']:.2f} vs {b['mae']:.2f}"
            rows.append([f"F1 / MAE on {name} (held out), cellcount vs {short_name(tool)}",
                         f"F1 >=, MAE <= {short_name(tool)}'s", figures])  # fmt: skip
    return rows


GOAL_ROWS: dict[str, Callable[[Data], list[Row]]] = {
    "1": _goal_weight_map,
    "2": _goal_postprocess,
    "5": _goal_counting,
    "6": _goal_memory,
    "4": _goal_inference,
    "7": _goal_training,
    "8": _goal_precision,
    "9": _goal_throughput,
    "10": _goal_peers,
}


def goals_table(sections: dict[str, Data], carried: dict[str, Data] | None = None) -> str:
    """The goals at a glance, from the figures of the sections that ran; a section carried
    over from an earlier run (:func:`carried_sections`) gets one row pointing to it."""
    rows = [row for key, rows_of in GOAL_ROWS.items() if key in sections
            for row in rows_of(sections[key])]  # fmt: skip
    for key, old in (carried or {}).items():
        if key in GOAL_ROWS:
            rows.append([f"section {old['title']}", f"see section {key}",
                         f"not measured in this run; carried over from {old['run']}"])  # fmt: skip
    return table(["measure", "goal", "this run (median)"], rows)


def carried_sections(page: str, measured: set[str]) -> dict[str, Data]:
    """The sections of an earlier page (its Markdown) that this run did not measure:
    number -> ``title``, ``body`` and ``run`` (that page's run line: command and date)."""
    found = re.search(r"^This run: (.+?), [0-9.]+ min in all\.$", page, re.MULTILINE)
    run = f"the run {found.group(1)}" if found else "an earlier run"
    carried: dict[str, Data] = {}
    for match in re.finditer(r"^## ((\d+)\. .+?)\n\n(.*?)(?=^## |\Z)", page, re.M | re.S):
        title, key, body = match.groups()
        if key in SECTIONS and key not in measured:
            earlier = re.match(r"\*Not measured in this run.*?carried over unchanged from "
                               r"(.+?)\.\*\n\n", body, re.S)  # fmt: skip
            if earlier:  # carried before: keep the run it came from
                carried[key] = {"title": title, "body": body[earlier.end() :].rstrip(),
                                "run": earlier.group(1)}  # fmt: skip
            else:
                carried[key] = {"title": title, "body": body.rstrip(), "run": run}
    return carried


# -- the page --------------------------------------------------------------------------------
SECTION_LIST = (
    "1. **Weight map**: training-target weight map of a 1600x1200 mask with 50 cells, "
    "package vs the authors' per-cell algorithm (`benchmarks/weight_map_baseline.py`).",
    "2. **Post-processing + matching**: probability map -> labelled cells -> matched to the "
    "truth, per image, at 10/100/1000 cells; shows the per-cell cost.",
    "3. **Machine limit**: large fp32 and bf16 matmuls, the practical compute peak.",
    "4. **Inference**: model-only forward time per 1600x1200 image for each paper net in "
    "fp32 and bf16 as counting runs it, its GFLOP/s and the fraction of the matmul peak of "
    "the same precision; then what each option gave (channels-last, bf16 autocast, glibc "
    "allocator tuning, threads, `torch.compile`, ONNX Runtime); on a CUDA device also "
    "images/s at batch 1 and at the best batch.",
    "5. **End to end**: counting real images with the shipped model through `Counter` (per "
    "stage) and the `cellcount count` CLI (also with each paper net).",
    "6. **Peak memory**: resident set size of counting one 1600x1200 and one 8000x8000 "
    "image, each in a fresh process.",
    "7. **Training throughput**: crops per second of a training step (forward, weighted "
    "BCE, backward, Adam) for each paper net in fp32, channels-last and bf16 autocast (the "
    "CPU training default); on a GPU also with AMP.",
    "8. **bf16 accuracy**: the shipped model's F1 and MAE with bf16 vs fp32 inference on "
    "its DSB validation images and the FNC samples, against the tolerance for making bf16 "
    "the CPU default.",
    "9. **Folder throughput**: a folder of 1600x1200 and one of 256x256 images counted by "
    "the CLI one image at a time and with reading and writing overlapped, against the "
    "model-only time per image; and the cost of estimating the cell size.",
    "10. **Peers**: Cellpose 3 and StarDist 2D, each trained from scratch on the same images "
    "for the same time, beside cellcount: accuracy on the held-out DSB sources and speed "
    "per 256x256 and 1600x1200 image (the peers trained by `make peers`; needs "
    "`make peers-env stardist-env` and `make peers` first).",
    "11. **Fine-tuning from clicks**: F1 and MAE against annotated images and minutes, "
    "from `scripts.finetune_curve` (not re-measured here).",
)


def _intro(results: Data) -> list[str]:
    """Title, how the page is made, this run and how to read it."""
    quick = (
        ["> **QUICK SMOKE RUN** (`--quick`): small sizes and 1–2 repeats. These numbers check "
         "that the harness works; they are not the reference figures.", ""]
        if results["config"] == "quick" else []
    )  # fmt: skip
    json_name = results.get("json", "BENCHMARKS.json")
    out_name = results.get("out", "BENCHMARKS.md")
    return [
        "# cellcount benchmarks",
        "",
        *quick,
        "Generated by `make bench`, i.e. `.venv/bin/python -m benchmarks.run --out "
        "BENCHMARKS.md` (code in `benchmarks/`; `--quick` is a ~2 min smoke run, `--only 1,2` "
        "runs some sections, `--skip-large` skips the slow 8000x8000 rows; a section a run "
        "does not measure is carried over from the page it replaces, marked with the run "
        "that measured it). It also saves the "
        f"raw figures next to this page, as `{json_name}`, from which `.venv/bin/python -m "
        f"benchmarks.render --from {json_name} --out {out_name}` writes the page again without "
        "measuring. The speed and memory goals are measured here, not by timed tests.",
        "",
        f"This run: `{results['command']}`, {results['date']}, "
        f"{results['elapsed_s'] / 60:.1f} min in all.",
        "",
        "How to read it: every figure is wall time from `time.perf_counter` over repeated "
        "calls, all measured side by side in this one run after untimed warm-up calls; cells "
        "show the **median** and, in brackets, the **min–max** of the repeats (the number of "
        "repeats is in each table). Ratios are computed from medians of this run. A `!` marks "
        f"a spread above {NOISY_SPREAD:.0%} of the median. Threads are left at their "
        "defaults. Absolute times depend on the machine and on what else runs on it (on a "
        "shared 2-vCPU virtual machine, separate runs 20 minutes apart have differed by up "
        "to 2x, e.g. fp32 matmul 89 vs 182 GFLOP/s, c_resunet 3.8 vs 7 s per image), so "
        "compare figures within one run, not across runs.",
        "",
        *SECTION_LIST,
        "",
    ]


def cuda_note(sections: dict[str, Data]) -> str | None:
    """One neutral line about the GPU rows when sections 4 or 7 ran without a CUDA device."""
    missing = []
    if "4" in sections and not sections["4"].get("cuda"):
        missing.append("section 4 (images/s at batch 1 and at the best batch)")
    if "7" in sections and not sections["7"]["devices"].get("cuda"):
        missing.append("section 7 (training steps in fp32, bf16 and fp16 AMP)")
    if not missing:
        return None
    return (
        f"The GPU rows of {' and '.join(missing)} need a CUDA device: run `make bench` on a "
        "machine with one to add them."
    )


def machine_rows(facts: Data) -> list[list[str]]:
    """(name, value) rows of the machine, its threads and the package versions."""
    env = ", ".join(f"{name}={value}" for name, value in facts["thread_env"].items())
    rows = [
        ["CPU", f"{facts['cpu']} ({facts['arch']}; {', '.join(facts['isa']) or 'no AVX2'})"],
        [
            "cores",
            f"{facts['logical_cores']} logical, {facts['usable_cores']} usable by this process",
        ],
        ["memory", fmt_bytes(facts["memory_bytes"])],
        [
            "torch threads",
            f"{facts['torch_threads']} intra-op, {facts['interop_threads']} inter-op",
        ],
        ["thread env", env],
        ["oneDNN (mkldnn)", str(facts["mkldnn"])],
        ["OS", facts["os"]],
        ["Python", facts["python"]],
    ]
    rows += [[name, version] for name, version in facts["packages"].items()]
    return [*rows, ["cellcount", facts["revision"]]]


def _machine(results: Data, parts: dict[str, Part]) -> list[str]:
    """The machine table, the load seen during the run and the caveats."""
    cores = results["machine"]["logical_cores"]
    loads = [load[0] for load in results["loads"]]
    lines = [
        "## Machine",
        "",
        table(["", ""], machine_rows(results["machine"])),
        "",
        f"Load average (1 min) during the run: {', '.join(f'{x:.2f}' for x in loads)} "
        f"({cores} cores).",
        "",
    ]
    caveats = []
    busy = max(loads)
    if busy > 1.5 * cores or busy > cores + 0.5:
        caveats.append(
            "Other processes were using the CPU during this run (1-min load average up to "
            f"{busy:.1f} on {cores} cores), so absolute times are pessimistic and spreads "
            "wider than on an idle machine; ratios measured back to back are more robust."
        )
    noisy = [part.title for part in parts.values() if part.noisy]
    if noisy:
        caveats.append(f"Spread above {NOISY_SPREAD:.0%} of the median in: {'; '.join(noisy)}.")
    if caveats:
        lines += ["**Caveats.** " + " ".join(caveats), ""]
    return lines


def render(results: Data) -> str:
    """The whole Markdown page of one run's plain results (as :mod:`benchmarks.run` saves)."""
    sections: dict[str, Data] = results["sections"]
    failures: dict[str, str] = results.get("failures", {})
    parts = {key: RENDERERS[key](sections[key]) for key in SECTIONS if key in sections}
    lines = _intro(results)
    note = cuda_note(sections)
    if note:
        lines += [note, ""]
    carried: dict[str, Data] = results.get("carried", {})
    lines += ["## Goals at a glance", "", goals_table(sections, carried), ""]
    lines += _machine(results, parts)
    for key in SECTIONS:
        if key in parts:
            lines += [f"## {parts[key].title}", "", parts[key].body, ""]
        elif key in carried:
            why = f" (it failed: {_last_line(failures[key])})" if key in failures else ""
            lines += [f"## {carried[key]['title']}", "",
                      f"*Not measured in this run{why}: carried over unchanged from "
                      f"{carried[key]['run']}.*", "", carried[key]["body"], ""]  # fmt: skip
        elif key in failures:
            lines += [f"## Section {key} failed", "", "```", failures[key].rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception."""
    return [line for line in text.splitlines() if line.strip()][-1].strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.render --from RESULTS.json --out PAGE.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.render",
        description="Write BENCHMARKS.md again from the raw results of `benchmarks.run`.",
    )
    parser.add_argument("--from", dest="source", type=Path, default=Path("BENCHMARKS.json"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    atomic_write_text(args.out, render(json.loads(args.source.read_text())))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
