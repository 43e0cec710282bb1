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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_common import (
    Result,
    Stats,
    measure,
    peak_rss,
    plain,
    progress,
    run_child,
    torch_elu,
)
from cellcount.data.io import read_image
from cellcount.inference.predict import predict_probabilities
from cellcount.nets import build_net
from cellcount.runtime.allocator import tune_allocator

PAPER_ARCHS = ("c_resunet", "resunet", "small_unet", "unet")
PRECISIONS = ("fp32", "bf16")  # the main table: what `--precision fp32|bf16` runs
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}
# Option rows of the c_resunet table. Both children run the basic ones, the tuned one all.
BASIC_OPTIONS = ("fp32", "fp32 channels_last", "bf16 autocast + channels_last")
EXTRA_OPTIONS = (
    "bf16 autocast + channels_last, 1 thread",
    "bf16 autocast + channels_last, torch.compile",
    "fp32, ONNX Runtime (`cellcount export`)",
    "fp32 channels_last, torch's ELU kernel (before)",
    "bf16 autocast + channels_last, torch's ELU kernel (before)",
)
ALLOCATORS = ("default", "tuned")  # glibc malloc as it is, and as tune_allocator sets it


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
    """``(height, width)`` rounded up to multiples of ``multiple`` (the nets' input)."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def _predict(net: nn.Module, image: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """Probability map of ``image`` under ``torch.inference_mode``."""
    with torch.inference_mode():
        return predict_probabilities(net, image, precision=precision)


def _time(net: nn.Module, image: np.ndarray, plan: Plan, precision: str) -> Stats:
    """Seconds per image of ``plan``'s net in ``precision`` after its warm-up."""
    run = partial(_predict, net, image, precision)
    if plan.warmup_side < 1.0:
        side_h = max(64, int(image.shape[0] * plan.warmup_side) // 8 * 8)
        side_w = max(64, int(image.shape[1] * plan.warmup_side) // 8 * 8)
        _predict(net, image[:side_h, :side_w], precision)
        return measure(run, plan.repeats, warmup=0)
    return measure(run, plan.repeats, warmup=1)


# -- child: c_resunet options in a fresh process ---------------------------------------------
@contextmanager
def _one_thread() -> Iterator[None]:
    """Within the block torch uses one thread (the thread count restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _under(
    context: Callable[[], AbstractContextManager[None]], run: Callable[[], np.ndarray]
) -> Callable[[], np.ndarray]:
    """``run``, each call inside a fresh ``context()`` (e.g. :func:`_one_thread`, or
    :func:`~benchmarks.bench_common.torch_elu` for PyTorch's ELU kernel)."""

    def call() -> np.ndarray:
        """``run()`` inside the context."""
        with context():
            return run()

    return call


def _compiled(net: nn.Module, image: np.ndarray) -> Callable[[], np.ndarray]:
    """bf16 channels-last c_resunet through ``torch.compile`` (inductor, weights frozen)."""
    import torch._inductor.config as inductor

    inductor.freezing = True  # constant-folds the eval-mode weights (and batch norms)
    compiled = cast(nn.Module, torch.compile(net))
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
        BASIC_OPTIONS[0]: lambda: partial(_predict, net, image),
        BASIC_OPTIONS[1]: lambda: partial(_predict, last, image),
        BASIC_OPTIONS[2]: lambda: partial(_predict, last, image, "bf16"),
    }
    if extras:
        runs[EXTRA_OPTIONS[0]] = lambda: _under(_one_thread, partial(_predict, last, image, "bf16"))
        runs[EXTRA_OPTIONS[1]] = lambda: _compiled(copy.deepcopy(last), image)
        runs[EXTRA_OPTIONS[2]] = lambda: _onnx_runtime(net, image, folder)
        runs[EXTRA_OPTIONS[3]] = lambda: _under(torch_elu, partial(_predict, last, image))
        runs[EXTRA_OPTIONS[4]] = lambda: _under(torch_elu, partial(_predict, last, image, "bf16"))
    return runs


def _child(job: dict[str, Any]) -> dict[str, Any]:
    """Time every option of ``job`` in this process: ``{"options": {...}, "peak_rss": B}``."""
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
            stats.warmup = 1  # the call above
            out[name] = {
                "stats": stats,
                "setup_s": setup,
                "max_abs_diff": float(np.abs(warm - reference).max()),
            }
    return plain({"options": out, "peak_rss": peak_rss()})


def _spawn(image: Path, repeats: int, tuned: bool) -> dict[str, Any]:
    """The option child with glibc's default or the tuned allocator settings."""
    env = {**os.environ, **(TUNED_MALLOC if tuned else {})}
    if not tuned:
        for key in TUNED_MALLOC:
            env.pop(key, None)
    job = {"image": str(image), "repeats": repeats, "extras": tuned}
    return run_child("benchmarks.bench_inference", job, timeout=1800, env=env)


def options(image: Path, repeats: int) -> Result:
    """The c_resunet option table's runs: one child per allocator setting.

    Returns:
        ``repeats`` and, per allocator (``default``, ``tuned``), the child's result:
        ``options`` (name -> ``stats``, ``setup_s``, ``max_abs_diff``, or ``error``)
        and its ``peak_rss``.
    """
    out: Result = {"repeats": repeats}
    for allocator in ALLOCATORS:
        result = _spawn(image, repeats, tuned=allocator == "tuned")
        for name, info in result["options"].items():
            if "stats" in info:
                info["stats"] = Stats.from_plain(info["stats"])
                median = info["stats"].median
                progress(f"inference c_resunet {name}, {allocator} malloc: {median:.2f} s")
        out[allocator] = result
    return out


def _arch_result(plan: Plan, image: np.ndarray, shape: tuple[int, int]) -> Result:
    """Parameters, GFLOP per image and a :class:`Stats` per precision of one net."""
    torch.manual_seed(0)
    net = build_net(plan.arch).eval().to(memory_format=torch.channels_last)
    gflop = count_flops(net, *shape) / 1e9
    out: Result = {
        "params": sum(p.numel() for p in net.parameters()),
        "gflop": gflop,
        "warmup_side": plan.warmup_side,
    }
    for precision in PRECISIONS:
        seconds = out[precision] = _time(net, image, plan, precision)
        rate = seconds.rate(gflop).median
        progress(f"inference {plan.arch} {precision}: {seconds.median:.2f} s, {rate:.1f} GFLOP/s")
    return out


def run(
    image_path: Path, plans: list[Plan], peaks: dict[str, float], option_repeats: int
) -> Result:
    """Time each plan in process; ``option_repeats`` > 0 adds the c_resunet option runs.

    Args:
        peaks: median matmul GFLOP/s by precision (section 3), kept with the result.

    Returns:
        The image and net input sizes, ``peaks``, ``archs`` (arch -> what
        :func:`_arch_result` measured) and ``options`` (:func:`options`, or None).
    """
    tune_allocator()  # as counting does (a Counter would set it on creation)
    image = read_image(image_path)
    height, width = image.shape[:2]
    shape = padded_shape(height, width)
    archs = {plan.arch: _arch_result(plan, image, shape) for plan in plans}
    runs_options = option_repeats and "c_resunet" in archs
    return {
        "height": height,
        "width": width,
        "net_height": shape[0],
        "net_width": shape[1],
        "peaks": dict(peaks),
        "archs": archs,
        "options": options(image_path, option_repeats) if runs_options else None,
    }


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
