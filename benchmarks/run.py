"""Speed and memory benchmarks of cellcount -> BENCHMARKS.json and BENCHMARKS.md.

    make bench                                   # the reference run (~12 min on 2 cores)
    .venv/bin/python -m benchmarks.run --out BENCHMARKS.md
    .venv/bin/python -m benchmarks.run --quick --out /tmp/bench.md   # smoke run, ~2 min
    .venv/bin/python -m benchmarks.render --from BENCHMARKS.json --out BENCHMARKS.md

Every figure is measured in this one run, side by side, with plain
``time.perf_counter`` after warm-up calls, and reported as the median and the
min-max spread of the repeats; every ratio is computed from figures of the same
run. Sections (each in ``benchmarks/bench_*.py``, which only measure):

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
8. bf16 vs fp32 inference accuracy of the shipped model (F1, MAE) against the
   tolerance for bf16 as the CPU default.

Progress goes to stderr. At the end the raw results are written atomically as
JSON next to the Markdown (``--out`` with the suffix ``.json``, or ``--json``),
then :func:`benchmarks.render.render` writes the Markdown from them. The exit
status is 1 when a section failed (its error is in both files).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_batched_inference,
    bench_counting,
    bench_inference,
    bench_machine,
    bench_memory,
    bench_peers,
    bench_postprocess,
    bench_precision,
    bench_throughput,
    bench_training,
    bench_weight_maps,
)
from benchmarks.bench_common import (
    REAL_IMAGES,
    REAL_MASKS,
    REPO,
    Result,
    load_average,
    machine_facts,
    plain,
    progress,
)
from benchmarks.bench_inference import PAPER_ARCHS, Plan
from benchmarks.render import SECTIONS, carried_sections, render
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
    folder_copies: int  # section 9: each real image linked this many times
    folder_small: int  # section 9: 256x256 DSB images
    folder_repeats: int
    peer_repeats: int  # section 10


def paper_plans(
    c_resunet: int, resunet: int, small_unet: int, unet: int, unet_warmup_side: float = 0.5
) -> tuple[Plan, ...]:
    """A :class:`Plan` per paper net with its timed repeats (unet: a smaller warm-up)."""
    repeats = {"c_resunet": c_resunet, "resunet": resunet, "small_unet": small_unet}
    plans = [Plan(arch, count) for arch, count in repeats.items()]
    return (*plans, Plan("unet", unet, warmup_side=unet_warmup_side))


# Every Config field but the name: (reference run, quick smoke run).
SETTINGS: dict[str, tuple[Any, Any]] = {
    "weight_shape": ((1200, 1600), (600, 800)),
    "weight_cells": (50, 12),
    "weight_repeats": (5, 2),
    "post_shape": ((1200, 1600), (600, 800)),
    "post_counts": ((10, 100, 1000), (10, 30, 100)),
    "post_repeats": (7, 2),
    "matmul_size": (2048, 1024),
    "matmul_repeats": (10, 3),
    "image_shape": (None, (200, 256)),
    "plans": (paper_plans(3, 2, 2, 2), paper_plans(2, 1, 1, 1, unet_warmup_side=1.0)),
    "option_repeats": (3, 1),
    "count_images": (4, 2),
    "count_repeats": (5, 1),
    "count_archs": (PAPER_ARCHS, ("small_unet",)),
    "count_unet_images": (2, 1),
    "large_side": (8000, 768),
    "large_tiles": ((DEFAULT_TILE_SIZE, 2048), (DEFAULT_TILE_SIZE,)),
    # One full-size warm-up step, except unet (~40 s per fp32 step on 2 cores): a
    # warm-up at half the side and one timed step keep the section near 4 minutes.
    "train_plans": (paper_plans(3, 2, 2, 1), paper_plans(1, 1, 1, 1)),
    "train_crop": (512, 128),
    "train_batch": (4, 4),
    "train_gpu_repeats": (10, 2),
    "precision_dsb_images": (None, 4),
    "precision_fnc_images": (None, 1),
    "folder_copies": (2, 1),
    "folder_small": (48, 8),
    "folder_repeats": (3, 1),
    "peer_repeats": (5, 1),
}
FULL = Config("full", **{name: values[0] for name, values in SETTINGS.items()})
QUICK = Config("quick", **{name: values[1] for name, values in SETTINGS.items()})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.run``."""
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
    parser.add_argument(
        "--json", default=None, help="raw results to write (default: --out with suffix .json)"
    )
    return parser.parse_args(argv)


def wanted_sections(only: str) -> list[str]:
    """The sections of ``--only`` in run order; section 4 brings section 3 (its peak)."""
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "4" in wanted:
        wanted.add("3")
    return [key for key in SECTIONS if key in wanted]


def real_images(count: int) -> list[Path]:
    """The first ``count`` real FNC images."""
    images = sorted(REAL_IMAGES.glob("*.png"))[:count]
    if not images:
        raise SystemExit(f"no real images in {REAL_IMAGES}")
    return images


def small_images(count: int) -> list[Path]:
    """The first ``count`` 256x256 images of the DSB 2018 set (section 9)."""
    from PIL import Image

    from scripts.common import DSB_FULL, require_folder

    folder = require_folder(DSB_FULL, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    found = []
    for path in sorted((folder / "images").glob("*.png")):
        with Image.open(path) as image:
            if image.size == (256, 256):
                found.append(path)
        if len(found) == count:
            break
    return found


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
    """This run's command, with the interpreter relative to the repository."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(REPO)
    return shlex.join([str(python), "-m", "benchmarks.run", *sys.argv[1:]])


# -- the sections ----------------------------------------------------------------------------
def finetune_results() -> Result:
    """Section 11: the fine-tuning curve's rows and command, as its script wrote them."""
    from scripts.finetune_curve import OUT, read_rows

    command = (OUT / "finetune.md").read_text().splitlines()[0].strip("`")
    return {"rows": read_rows(OUT / "finetune.csv"), "command": command,
            "source": "docs/results/finetune.csv"}  # fmt: skip


def _inference(config: Config, image: Path, done: dict[str, Result]) -> Result:
    """Section 4 on CPU with the peaks of section 3, plus the CUDA rows where there is one."""
    plans = list(config.plans)
    peaks = bench_machine.peaks(done["3"])
    result = bench_inference.run(image, plans, peaks, config.option_repeats)
    result["cuda"] = bench_batched_inference.on_cuda(plans, image)
    return result


def section_jobs(
    config: Config, args: argparse.Namespace, images: list[Path], done: dict[str, Result]
) -> dict[str, Callable[[], Result]]:
    """Section number -> the call that measures it (``done`` holds earlier results)."""
    c = config
    cases = bench_counting.default_cases(c.count_archs, c.count_unet_images)
    return {
        "1": lambda: bench_weight_maps.run(*c.weight_shape, c.weight_cells, c.weight_repeats),
        "2": lambda: bench_postprocess.run(*c.post_shape, c.post_counts, c.post_repeats),
        "3": lambda: bench_machine.run(c.matmul_size, c.matmul_repeats),
        "4": lambda: _inference(c, images[0], done),
        "5": lambda: bench_counting.run(images[: c.count_images], c.count_repeats, cases),
        "6": lambda: bench_memory.run(
            images[0], "pretrained", c.large_side, c.large_tiles, not args.skip_large
        ),
        "7": lambda: bench_training.run(
            list(c.train_plans), c.train_crop, c.train_batch, c.train_gpu_repeats
        ),
        "8": lambda: bench_precision.run(
            args.precision_model, dsb_limit=c.precision_dsb_images, fnc_limit=c.precision_fnc_images
        ),
        "9": lambda: bench_throughput.run(
            real_images(c.count_images),
            c.folder_copies,
            small_images(c.folder_small),
            c.folder_repeats,
        ),
        "10": lambda: bench_peers.run(c.peer_repeats),
        "11": finetune_results,
    }


def run_sections(
    wanted: list[str], jobs: dict[str, Callable[[], Result]], done: dict[str, Result]
) -> tuple[dict[str, str], list[tuple[float, float, float]]]:
    """Run the wanted sections in order into ``done``; their failures and the load averages."""
    failures: dict[str, str] = {}
    loads = [load_average()]
    for key in wanted:
        if key == "4" and "3" not in done:
            failures[key] = "needs section 3 (the matmul peak), which failed"
            continue
        try:
            done[key] = jobs[key]()
        except Exception:
            failures[key] = traceback.format_exc()
            progress(f"section {key} FAILED:\n{failures[key]}")
        loads.append(load_average())
    return failures, loads


def measure_all(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Every wanted section and the facts of the run, as plain (JSON-ready) data."""
    wanted = wanted_sections(args.only)
    progress(f"{config.name} run of sections {', '.join(wanted)}")
    start = time.perf_counter()
    done: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as scratch:
        images = real_images(max(config.count_images, 1))
        if config.image_shape is not None:
            images = cropped_images(images, config.image_shape, Path(scratch) / "crops")
        jobs = section_jobs(config, args, images, done)
        failures, loads = run_sections(wanted, jobs, done)
    results = {
        "config": config.name,
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "elapsed_s": time.perf_counter() - start,
        "loads": loads,
        "machine": machine_facts(),
        "sections": done,
        "failures": failures,
    }
    return plain(results)


def main(argv: list[str] | None = None) -> int:
    """Measure, save the raw results as JSON, then render them as Markdown."""
    args = parse_args(argv)
    config = QUICK if args.quick else FULL
    out = Path(args.out)
    raw = Path(args.json) if args.json else out.with_suffix(".json")
    results = measure_all(args, config)
    results.update(json=raw.name, out=out.name)
    if out.exists():  # what this run did not measure stays, marked as carried over
        results["carried"] = carried_sections(out.read_text(), set(results["sections"]))
    atomic_write_text(raw, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out, render(results))
    progress(f"wrote {raw} and {out} ({results['elapsed_s'] / 60:.1f} min)")
    lost = set(results["failures"]) - set(results.get("carried", {}))
    return 1 if lost else 0  # a failed section carried over from the last page is reported


if __name__ == "__main__":
    sys.exit(main())
