"""Shared pieces of the benchmark harness: timing statistics, tables, machine facts.

Every figure is a :class:`Stats` of repeated ``time.perf_counter`` samples taken
after warm-up calls; tables print its median and its min-max spread.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # the project's real images (see its README)
DSB_ROOT = SHARED_DATA / "dsb2018_stage1_train_fluo"
FNC_YELLOW = SHARED_DATA / "fnc_samples" / "yellow"
REAL_IMAGES = FNC_YELLOW / "images"
REAL_MASKS = FNC_YELLOW / "masks"
FNC_CELL_DIAMETER = 40.0  # px: the FNC neurons (the paper)
FNC_RADIUS = 50.0  # px: the paper's matching radius for them

# A spread (max - min) above this fraction of the median is flagged as noisy.
NOISY_SPREAD = 0.15

_START = time.perf_counter()


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the seconds since the harness started."""
    print(f"[bench {time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Stats:
    """Wall-time samples (seconds) of one measured operation.

    ``user``, ``system`` (CPU seconds of this process, all threads) and ``faults``
    (minor page faults) are per-sample too when :func:`measure` took them.
    """

    samples: list[float]
    warmup: int = 0
    note: str = ""
    user: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median; 0 for a single sample."""
        return (self.high - self.low) / self.median if self.median > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.n > 1 and self.spread > NOISY_SPREAD

    def rate(self, work: float) -> Stats:
        """``work / sample`` for each sample (e.g. GFLOP/s); note min and max swap."""
        return Stats([work / s for s in self.samples], self.warmup, self.note)

    @property
    def cpu_per_wall(self) -> float:
        """Median of (user + system CPU time) / wall time: busy cores; nan if not taken."""
        if not self.user:
            return float("nan")
        ratios = [(u + k) / w for u, k, w in zip(self.user, self.system, self.samples, strict=True)]
        return statistics.median(ratios)

    @property
    def system_share(self) -> float:
        """Median share of CPU time spent in the kernel (page faults, mostly); nan if not taken."""
        if not self.user:
            return float("nan")
        shares = [
            k / (u + k) if u + k > 0 else 0.0 for u, k in zip(self.user, self.system, strict=True)
        ]
        return statistics.median(shares)

    @property
    def median_faults(self) -> float:
        return statistics.median(self.faults) if self.faults else float("nan")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(function: Callable[[], object], repeats: int, warmup: int = 1) -> Stats:
    """Run ``function`` ``warmup`` times untimed, then time ``repeats`` calls.

    Each timed call also records this process's user and system CPU time and its
    minor page faults.
    """
    for _ in range(warmup):
        function()
    stats = Stats([], warmup)
    for _ in range(repeats):
        cpu, faults = os.times(), _faults()
        start = time.perf_counter()
        function()
        stats.samples.append(time.perf_counter() - start)
        after = os.times()
        stats.user.append(after.user - cpu.user)
        stats.system.append(after.system - cpu.system)
        stats.faults.append(_faults() - faults)
    return stats


def peak_rss() -> int:
    """High-water mark of this process's resident set, in bytes (Linux ``VmHWM``).

    Unlike ``getrusage(...).ru_maxrss``, it is not inherited: Linux folds the
    parent's peak into a child's ru_maxrss at exec, so a child started from a
    4 GB parent would report >= 4 GB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(
    module: str, job: dict[str, Any], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m MODULE JOB_JSON`` in the repo; return the JSON of its last stdout line.

    Raises:
        RuntimeError: the child failed (its stderr's end is in the message).
    """
    done = subprocess.run(
        [sys.executable, "-m", module, json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


# -- formatting ------------------------------------------------------------------------
def fmt_time(seconds: float) -> str:
    """Seconds with a unit that keeps 3 significant digits readable."""
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_stats(stats: Stats, formatter: Callable[[float], str] = fmt_time) -> str:
    """``median (min–max)``, with a ``!`` when the spread is above ``NOISY_SPREAD``."""
    if stats.n == 1:
        return f"{formatter(stats.median)} (1 run)"
    flag = " !" if stats.noisy else ""
    return f"{formatter(stats.median)} ({formatter(stats.low)}–{formatter(stats.high)}){flag}"


def fmt_number(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def fmt_bytes(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


@dataclass
class Section:
    """One part of BENCHMARKS.md: a title, Markdown text and the raw numbers."""

    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    noisy: bool = False


# -- machine ---------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def memory_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}" if commit else "unknown"


PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "pytorch-lightning",
    "torchmetrics",
    "pillow",
    "opencv-python-headless",
    "tifffile",
    "onnxruntime",
)


def machine_facts() -> list[tuple[str, str]]:
    """(name, value) rows describing the machine, threads and package versions."""
    import torch

    flags = cpu_flags()
    isa = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if name in flags]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    rows = [
        ("CPU", f"{cpu_model()} ({platform.machine()}; {', '.join(isa) or 'no AVX2'})"),
        ("cores", f"{os.cpu_count()} logical, {affinity} usable by this process"),
        ("memory", fmt_bytes(memory_total())),
        (
            "torch threads",
            f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        ),
        (
            "thread env",
            ", ".join(
                f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
            ),
        ),
        ("oneDNN (mkldnn)", str(torch.backends.mkldnn.is_available())),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
    ]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("cellcount", git_revision()))
    return rows


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3
