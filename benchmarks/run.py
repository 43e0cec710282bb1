"""Speed and memory benchmarks of cellcount -> BENCHMARKS.md.

    make bench                                   # the reference run (~12 min on 2 cores)
    .venv/bin/python -m benchmarks.run --out BENCHMARKS.md
    .venv/bin/python -m benchmarks.run --quick --out /tmp/bench.md   # smoke run, ~2 min

Every figure is measured in this one run, side by side, with plain
``time.perf_counter`` after warm-up calls, and reported as the median and the
min-max spread of the repeats; every ratio is computed from figures of the same
run. Sections (each in ``benchmarks/bench_*.py``):

1. weight map: windowed ``weight_map`` vs the per-cell reference;
2. post-processing + matching at 10, 100 and 1000 cells;
3. fp32 and bf16 matmul GFLOP/s (the machine's practical peak);
4. model-only inference per image for the paper nets in fp32 and bf16, as GFLOP/s and a
   fraction of 3, and what each speed option gave; on a CUDA device also images/s at
   batch 1 and at the best batch;
5. end-to-end counting of real images (Counter API stages, and the CLI per net);
6. peak resident memory of counting a 1600x1200 and an 8000x8000 image;
7. training throughput (512x512 crops/s) of the paper nets in fp32, channels-last
   and bf16 autocast (the CPU training default), and with AMP on a GPU if present;
8. bf16 vs fp32 inference accuracy of the shipped model (F1, MAE): may bf16 be
   the CPU default?

Progress goes to stderr; the Markdown file is written atomically at the end.
The exit status is 1 when a section failed (its error is in the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import (
    bench_batched_inference,
    bench_counting,
    bench_inference,
    bench_machine,
    bench_memory,
    bench_postprocess,
    bench_precision,
    bench_training,
    bench_weight_maps,
)
from benchmarks.bench_common import (
    REAL_IMAGES,
    REAL_MASKS,
    REPO,
    Section,
    Stats,
    fmt_bytes,
    fmt_ratio,
    fmt_time,
    load_average,
    machine_facts,
    progress,
    table,
)
from benchmarks.bench_inference import PAPER_ARCHS, Plan
from cellcount.counter import DEFAULT_TILE_SIZE
from cellcount.runtime.files import atomic_write_text


@dataclass(frozen=True)
class Config:
    """Sizes and repeats of one harness run."""

    name: str
    weight_shape: tuple[int, int]
    weight_cells: int
    weight_repeats: int
    post_shape: tuple[int, int]
    post_counts: tuple[int, ...]
    post_repeats: int
    matmul_size: int
    matmul_repeats: int
    image_shape: tuple[int, int] | None  # crop of the real images; None = full size
    plans: tuple[Plan, ...]
    option_repeats: int
    count_images: int
    count_repeats: int
    count_archs: tuple[str, ...]  # section 5: CLI rows with untrained nets
    count_unet_images: int
    large_side: int
    large_tiles: tuple[int, ...]
    train_plans: tuple[Plan, ...]  # section 7: warmup_side scales the warm-up crop
    train_crop: int
    train_batch: int
    train_gpu_repeats: int
    precision_dsb_images: int | None  # section 8: None = all validation images
    precision_fnc_images: int | None


FULL = Config(
    name="full",
    weight_shape=(1200, 1600),
    weight_cells=50,
    weight_repeats=5,
    post_shape=(1200, 1600),
    post_counts=(10, 100, 1000),
    post_repeats=7,
    matmul_size=2048,
    matmul_repeats=10,
    image_shape=None,
    plans=(
        Plan("c_resunet", 3),
        Plan("resunet", 2),
        Plan("small_unet", 2),
        Plan("unet", 2, warmup_side=0.5),
    ),
    option_repeats=3,
    count_images=4,
    count_repeats=5,
    count_archs=PAPER_ARCHS,
    count_unet_images=2,
    large_side=8000,
    large_tiles=(DEFAULT_TILE_SIZE, 2048),
    # One full-size warm-up step, except unet (~40 s per fp32 step on 2 cores): a
    # warm-up at half the side and one timed step keep the section near 4 minutes.
    train_plans=(
        Plan("c_resunet", 3),
        Plan("resunet", 2),
        Plan("small_unet", 2),
        Plan("unet", 1, warmup_side=0.5),
    ),
    train_crop=512,
    train_batch=4,
    train_gpu_repeats=10,
    precision_dsb_images=None,
    precision_fnc_images=None,
)

QUICK = Config(
    name="quick",
    weight_shape=(600, 800),
    weight_cells=12,
    weight_repeats=2,
    post_shape=(600, 800),
    post_counts=(10, 30, 100),
    post_repeats=2,
    matmul_size=1024,
    matmul_repeats=3,
    image_shape=(200, 256),
    plans=(Plan("c_resunet", 2), Plan("resunet", 1), Plan("small_unet", 1), Plan("unet", 1)),
    option_repeats=1,
    count_images=2,
    count_repeats=1,
    count_archs=("small_unet",),
    count_unet_images=1,
    large_side=768,
    large_tiles=(DEFAULT_TILE_SIZE,),
    train_plans=(
        Plan("c_resunet", 1),
        Plan("resunet", 1),
        Plan("small_unet", 1),
        Plan("unet", 1, warmup_side=0.5),
    ),
    train_crop=128,
    train_batch=4,
    train_gpu_repeats=2,
    precision_dsb_images=4,
    precision_fnc_images=1,
)

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")
INFERENCE_TARGETS = {"fp32": 0.70, "bf16": 0.60}  # of the same-precision matmul peak


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="BENCHMARKS.md", help="Markdown report to write")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 1-2 repeats: a smoke run, not reference figures",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated section numbers to run (4 also runs 3)",
    )
    parser.add_argument(
        "--skip-large",
        action="store_true",
        help="skip the large-image memory rows (the slowest part: 4-7 min)",
    )
    parser.add_argument(
        "--precision-model",
        type=Path,
        default=None,
        help="section 8: checkpoint to compare instead of the shipped pretrained model "
        "(its model card <stem>.json with `val_images` must lie next to it)",
    )
    parser.add_argument("--json", default=None, help="also write the raw samples as JSON")
    return parser.parse_args(argv)


def real_images(count: int) -> list[Path]:
    images = sorted(REAL_IMAGES.glob("*.png"))[:count]
    if not images:
        raise SystemExit(f"no real images in {REAL_IMAGES}")
    return images


def cropped_images(images: list[Path], shape: tuple[int, int], folder: Path) -> list[Path]:
    """Copies of the real images (and masks) cropped to ``shape``, in images/ and masks/."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    out = []
    for path in images:
        for kind, source in (("images", path), ("masks", REAL_MASKS / path.name)):
            with Image.open(source) as picture:
                picture.crop((0, 0, shape[1], shape[0])).save(folder / kind / path.name)
        out.append(folder / "images" / path.name)
    return out


def command_line() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(REPO)
    return shlex.join([str(python), "-m", "benchmarks.run", *sys.argv[1:]])


# -- the report ---------------------------------------------------------------------------
def summary(sections: dict[str, Section], config: Config) -> str:
    """Targets at a glance, from the figures of the sections that ran."""
    rows = []
    if "1" in sections:
        speedup = float(sections["1"].data["speedup"])
        rows.append(
            [
                "weight map speed-up vs per-cell reference",
                ">= 20x",
                fmt_ratio(speedup),
                "met" if speedup >= 20 else "NOT met",
            ]
        )
    if "2" in sections and "100" in sections["2"].data:
        seconds = Stats(sections["2"].data["100"]["total_s"]).median
        rows.append(
            [
                "post-processing + matching, 100 cells",
                "< 0.3 s / image",
                fmt_time(seconds),
                "met" if seconds < 0.3 else "NOT met",
            ]
        )
    if "5" in sections:
        cli = Stats(sections["5"].data["cli_per_image_s"]).median
        rows.append(
            [
                "end to end, `cellcount count --model pretrained`, 1600x1200, per image",
                "< 1.2 s / image",
                fmt_time(cli),
                "met" if cli < 1.2 else "NOT met",
            ]
        )
    if "6" in sections and "large_peak_rss" in sections["6"].data:
        peak = float(sections["6"].data["large_peak_rss"])
        side = config.large_side
        rows.append(
            [
                f"peak RSS, counting {side}x{side}",
                "< 4 GB",
                fmt_bytes(peak),
                "met" if peak < 4e9 else "NOT met",
            ]
        )
    if "4" in sections and "c_resunet" in sections["4"].data:
        info = sections["4"].data["c_resunet"]
        for precision, goal in INFERENCE_TARGETS.items():
            fraction = info[precision]["fraction"]
            rows.append(
                [
                    f"c_resunet CPU inference, {precision}, as a fraction of {precision} matmul",
                    f">= {goal:.0%}",
                    f"{fraction:.0%} ({info[precision]['rate']:,.0f} GFLOP/s)",
                    "met" if fraction >= goal else "NOT met",
                ]
            )
    if "7" in sections:
        train_speedup = bench_training.default_speedup(sections["7"])
        default = sections["7"].data["default_variant"]
        info = sections["7"].data["cpu"].get("c_resunet", {}).get(default)
        if train_speedup is not None and info is not None:
            crop = sections["7"].data["crop"]
            rows.append(
                [
                    f"c_resunet training, CPU default ({default}), {crop}x{crop} crops",
                    "report",
                    f"{info['crops_per_s']:.2f} crops/s, {fmt_ratio(train_speedup)} fp32",
                    "—",
                ]
            )
    if "8" in sections:
        data = sections["8"].data
        ok = bool(data["verdict"])
        misses = [
            f"{name}: ΔF1 {d['delta_f1']:.4f}, ΔMAE {d['delta_mae_pct']:+.1f}%"
            for name, d in data["datasets"].items()
            if not d["verdict"]
        ]
        model = "shipped model" if data["shipped"] else f"model `{Path(data['model']).name}`"
        rows.append(
            [
                f"bf16 inference within tolerance of fp32 ({model}; DSB validation "
                "and FNC samples)",
                f"ΔF1 within ±{bench_precision.MAX_DELTA_F1}, "
                f"ΔMAE within ±{bench_precision.MAX_DELTA_MAE:.0%} of fp32",
                "yes" if ok else "no (" + "; ".join(misses) + ")",
                "met" if ok else "NOT met",
            ]
        )
    if config.name == "quick":
        rows = [[*row[:3], "n/a (quick run)"] for row in rows]
    return table(["target", "goal", "this run (median)", "status"], rows)


def render(
    sections: dict[str, Section],
    failures: dict[str, str],
    config: Config,
    elapsed: float,
    loads: list[tuple[float, float, float]],
) -> str:
    quick = config.name == "quick"
    noisy = [s.title for s in sections.values() if s.noisy]
    busy = max(load[0] for load in loads)
    cores = os.cpu_count() or 1
    seen = ", ".join(f"{load[0]:.2f}" for load in loads)
    lines = [
        "# cellcount benchmarks",
        "",
        *(
            [
                "> **QUICK SMOKE RUN** (`--quick`): small sizes and 1–2 repeats. These numbers "
                "check that the harness works; they are not the reference figures.",
                "",
            ]
            if quick
            else []
        ),
        "Generated by `make bench`, i.e. `.venv/bin/python -m benchmarks.run --out "
        "BENCHMARKS.md` (code in `benchmarks/`; `--quick` is a ~2 min smoke run, "
        "`--only 1,2` runs some sections, `--skip-large` skips the slow 8000x8000 rows). "
        "Not part of the tests: speed goals are checked here, not by timed tests.",
        "",
        f"This run: `{command_line()}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{elapsed / 60:.1f} min in all.",
        "",
        "How to read it: every figure is wall time from `time.perf_counter` over repeated "
        "calls, all measured side by side in this one run after untimed warm-up calls; "
        "cells show the **median** and, in brackets, the **min–max** of the repeats (the "
        "number of repeats is in each table). Ratios are computed from medians of this run. "
        "A `!` marks a spread above 15% of the median. Threads are left at their defaults. "
        "This is a shared 2-vCPU virtual machine: absolute times of separate runs have "
        "differed by up to 2x (e.g. fp32 matmul 89 vs 182 GFLOP/s, c_resunet 3.8 vs 7 s per "
        "image, 20 minutes apart), so compare figures within one run, not across runs.",
        "",
        "1. **Weight map**: training-target weight map of a 1600x1200 mask with 50 cells, "
        "package vs the authors' per-cell algorithm (`benchmarks/weight_map_baseline.py`).",
        "2. **Post-processing + matching**: probability map -> labelled cells -> matched to "
        "the truth, per image, at 10/100/1000 cells; shows the per-cell cost.",
        "3. **Machine limit**: large fp32 and bf16 matmuls, the practical compute peak.",
        "4. **Inference**: model-only forward time per 1600x1200 image for each paper net "
        "in fp32 and bf16 as counting runs it, its GFLOP/s and the fraction of the matmul "
        "peak of the same precision; then what each option gave (channels-last, bf16 "
        "autocast, glibc allocator tuning, threads, `torch.compile`, ONNX Runtime).",
        "5. **End to end**: counting real images with the shipped model through `Counter` "
        "(per stage) and the `cellcount count` CLI (also with each paper net).",
        "6. **Peak memory**: resident set size of counting one 1600x1200 and one 8000x8000 "
        "image, each in a fresh process.",
        "7. **Training throughput**: crops per second of a training step (forward, weighted "
        "BCE, backward, Adam) for each paper net in fp32, channels-last and bf16 autocast "
        "(the CPU training default); on a GPU also with AMP.",
        "8. **bf16 accuracy**: the shipped model's F1 and MAE with bf16 vs fp32 inference on "
        "its DSB validation images and the FNC samples, against the rule for making bf16 the "
        "CPU default.",
        "",
        "## Targets at a glance",
        "",
        summary(sections, config),
        "",
        "## Machine",
        "",
        table(["", ""], machine_facts()),
        "",
        f"Load average (1 min) seen during the run: {seen} (the machine has {cores} cores).",
        "",
    ]
    caveats = []
    if busy > 1.5 * cores or busy > cores + 0.5:
        caveats.append(
            f"Other processes were using the CPU during this run (1-min load average up to "
            f"{busy:.1f} on {cores} cores), so absolute times are pessimistic and spreads "
            "wider than on an idle machine; ratios measured back to back are more robust."
        )
    if noisy:
        caveats.append("Spread above 15% of the median in: " + "; ".join(noisy) + ".")
    if caveats:
        lines += ["**Caveats.** " + " ".join(caveats), ""]
    for key in SECTIONS:
        if key in sections:
            lines += [f"## {sections[key].title}", "", sections[key].body, ""]
        elif key in failures:
            lines += [f"## Section {key} failed", "", "```", failures[key].rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- the run -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = QUICK if args.quick else FULL
    wanted = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "4" in wanted:
        wanted.add("3")
    start = time.perf_counter()
    sections: dict[str, Section] = {}
    failures: dict[str, str] = {}
    loads = [load_average()]
    progress(f"{config.name} run of sections {', '.join(sorted(wanted))}")

    with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as scratch:
        folder = Path(scratch)
        images = real_images(max(config.count_images, 1))
        if config.image_shape is not None:
            images = cropped_images(images, config.image_shape, folder / "crops")
        peaks: dict[str, Stats] = {}

        def section_3() -> Section:
            section, rates = bench_machine.run(config.matmul_size, config.matmul_repeats)
            peaks.update(rates)
            return section

        def section_4() -> Section:
            plans = list(config.plans)
            section = bench_inference.run(images[0], plans, peaks, config.option_repeats)
            return bench_batched_inference.add_accelerator_rows(section, plans, images[0])

        jobs: dict[str, Callable[[], Section]] = {
            "1": lambda: bench_weight_maps.run(
                *config.weight_shape, config.weight_cells, config.weight_repeats
            ),
            "2": lambda: bench_postprocess.run(
                *config.post_shape, config.post_counts, config.post_repeats
            ),
            "3": section_3,
            "4": section_4,
            "5": lambda: bench_counting.run(
                images[: config.count_images],
                config.count_repeats,
                bench_counting.default_cases(config.count_archs, config.count_unet_images),
            ),
            "6": lambda: bench_memory.run(
                images[0],
                "pretrained",
                config.large_side,
                config.large_tiles,
                include_large=not args.skip_large,
            ),
            "7": lambda: bench_training.run(
                list(config.train_plans),
                config.train_crop,
                config.train_batch,
                config.train_gpu_repeats,
            ),
            "8": lambda: bench_precision.run(
                args.precision_model,
                dsb_limit=config.precision_dsb_images,
                fnc_limit=config.precision_fnc_images,
            ),
        }
        for key in SECTIONS:
            if key not in wanted:
                continue
            if key == "4" and "3" not in sections:
                failures[key] = "needs section 3 (the matmul peak), which failed"
                continue
            try:
                sections[key] = jobs[key]()
            except Exception:
                failures[key] = traceback.format_exc()
                progress(f"section {key} FAILED:\n{failures[key]}")
            loads.append(load_average())

    elapsed = time.perf_counter() - start
    out = Path(args.out)
    atomic_write_text(out, render(sections, failures, config, elapsed, loads))
    if args.json:
        raw = {key: section.data for key, section in sections.items()}
        atomic_write_text(Path(args.json), json.dumps(raw, indent=1, default=_plain))
    progress(f"wrote {out} ({elapsed / 60:.1f} min)")
    return 1 if failures else 0


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
