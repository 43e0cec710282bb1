"""Shared pieces of the benchmark harness: timing statistics, child processes, machine facts.

Every figure is a :class:`Stats` of repeated ``time.perf_counter`` samples taken
after warm-up calls. Sections return plain data (dicts of :class:`Stats`,
numbers and strings); :func:`plain` turns that into JSON-ready values and
:meth:`Stats.from_plain` reads a :class:`Stats` back. Turning results into
Markdown is :mod:`benchmarks.render`'s job, not this module's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cellcount import samples
from scripts.common import DSB_FULL

REPO = Path(__file__).resolve().parents[1]
# The full DSB 2018 fluorescence set (498 images, CC0) is not shipped: sections that
# need it say so and are skipped when DSB_ROOT is absent (see scripts/common.py).
DSB_ROOT = DSB_FULL
FNC_YELLOW = samples.path("fnc_yellow")  # the shipped real FNC yellow samples
REAL_IMAGES = FNC_YELLOW / "images"
REAL_MASKS = FNC_YELLOW / "masks"
FNC_CELL_DIAMETER = samples.get("fnc_yellow").cell_diameter or 40.0  # px: the FNC neurons
FNC_RADIUS = samples.get("fnc_yellow").match_radius or 50.0  # px: the paper's radius

# A spread (max - min) above this fraction of the median is flagged as noisy.
NOISY_SPREAD = 0.15

Result = dict[str, Any]  # what a section's ``run`` returns: Stats, numbers, strings

_START = time.perf_counter()


@contextmanager
def torch_elu() -> Iterator[None]:
    """Within the block, the nets' ELU layers run PyTorch's own kernel (``F.elu``), as
    before commit 2ef4dcc wrote it out (``cellcount.nets.blocks.ELU``): the "before"
    rows of sections 4 and 9. Same function, so the same weights give the same cells."""
    import torch.nn.functional as F

    from cellcount.nets.blocks import ELU

    written_out = ELU.forward
    ELU.forward = lambda self, x: F.elu(x)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ELU.forward = written_out  # type: ignore[method-assign]


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
    user: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.samples)

    @property
    def median(self) -> float:
        """Median sample."""
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        """Smallest sample."""
        return min(self.samples)

    @property
    def high(self) -> float:
        """Largest sample."""
        return max(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median; 0 for a single sample."""
        return (self.high - self.low) / self.median if self.median > 0 else 0.0

    @property
    def noisy(self) -> bool:
        """Whether the spread is above :data:`NOISY_SPREAD`."""
        return self.n > 1 and self.spread > NOISY_SPREAD

    def rate(self, work: float) -> Stats:
        """``work / sample`` for each sample (e.g. GFLOP/s); note min and max swap."""
        return Stats([work / s for s in self.samples], self.warmup)

    def scaled(self, factor: float) -> Stats:
        """Every sample times ``factor`` (e.g. seconds per image of a batch)."""
        return Stats([s * factor for s in self.samples], self.warmup)

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
        """Median minor page faults per sample; nan if not taken."""
        return statistics.median(self.faults) if self.faults else float("nan")

    def to_plain(self) -> dict[str, Any]:
        """A JSON-ready dict (empty CPU and fault lists left out)."""
        out: dict[str, Any] = {"samples": list(self.samples), "warmup": self.warmup}
        for name in ("user", "system", "faults"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Stats:
        """The :class:`Stats` of a :meth:`to_plain` dict."""
        return cls(**data)


def plain(value: object) -> Any:
    """``value`` as JSON-ready data: Stats and dataclasses as dicts, numpy as Python, else str."""
    if isinstance(value, Stats):
        return value.to_plain()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _faults() -> int:
    """Minor page faults of this process so far."""
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


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of ``path`` (e.g. ``/proc/meminfo``)."""
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """High-water mark of this process's resident set, in bytes (Linux ``VmHWM``).

    Unlike ``getrusage(...).ru_maxrss``, it is not inherited: Linux folds the
    parent's peak into a child's ru_maxrss at exec, so a child started from a
    4 GB parent would report >= 4 GB.
    """
    value = _proc_field("/proc/self/status", "VmHWM")
    if value:
        return int(value.split()[0]) * 1024
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


# -- machine ---------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``."""
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo``."""
    value = _proc_field("/proc/cpuinfo", "flags")
    return set(value.split()) if value else set()


def memory_total() -> int:
    """Total memory in bytes (``MemTotal`` of ``/proc/meminfo``); 0 if unknown."""
    value = _proc_field("/proc/meminfo", "MemTotal")
    return int(value.split()[0]) * 1024 if value else 0


def git_revision() -> str:
    """Short commit of the checkout, marked when tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        """Stdout of one git command in the repository."""
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
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _version(name: str) -> str:
    """The installed version of package ``name``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, Any]:
    """The machine, its threads and the package versions, as plain values."""
    import torch

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "isa": [name for name in ISA_FLAGS if name in flags],
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory_total(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "thread_env": {name: os.environ.get(name, "unset") for name in THREAD_ENV},
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "revision": git_revision(),
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (nan where unavailable)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3
