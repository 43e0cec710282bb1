"""Section 7: training throughput, crops per second, for each paper architecture.

One training step is what ``CellSegModule.training_step`` plus Lightning's
optimisation loop do per batch: zero the gradients, forward, weighted BCE loss
(:func:`cellcount.training.losses.weighted_bce`, cell factor 1.5, with a weight map),
backward and an Adam step (lr 1e-3). The batch is random data of a fixed seed
(the time of a step does not depend on the values). Each (architecture,
variant) gets a fresh net with the same weights (seed 0) and a fresh Adam, so
the first (untimed) steps also create the optimiser state and the oneDNN
kernels. Variants, all in this process and back to back per architecture:

* ``fp32``: the net and the input in the default NCHW layout;
* ``fp32 channels_last``: net and input converted to channels-last;
* ``bf16 autocast + channels_last``: that under ``torch.autocast(device, bfloat16)``
  (forward and loss; backward outside, as Lightning's ``bf16-mixed``);
* on a GPU also ``fp16 autocast + channels_last`` with a ``GradScaler``
  (Lightning's ``16-mixed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.bench_common import (
    Section,
    Stats,
    fmt_ratio,
    fmt_stats,
    fmt_time,
    measure,
    progress,
    table,
)
from benchmarks.bench_inference import Plan
from cellcount.nets import build_net
from cellcount.training.losses import weighted_bce

CELL_WEIGHT = 1.5  # the module's default class factor of cell pixels
LEARNING_RATE = 1e-3  # the module's default Adam learning rate
GPU_WARMUP = 3  # untimed steps per GPU variant (cuDNN autotuning, allocator caching)


@dataclass(frozen=True)
class Variant:
    """How one training step is run: memory format and autocast dtype (None: fp32)."""

    name: str
    channels_last: bool
    dtype: torch.dtype | None = None


CPU_VARIANTS = (
    Variant("fp32", False),
    Variant("fp32 channels_last", True),
    Variant("bf16 autocast + channels_last", True, torch.bfloat16),
)
GPU_VARIANTS = (*CPU_VARIANTS, Variant("fp16 autocast + channels_last", True, torch.float16))


def default_variant(precision: str) -> str:
    """The CPU row that ``cellcount.train trainer=cpu`` runs at a Lightning ``precision``."""
    return CPU_VARIANTS[-1].name if precision == "bf16-mixed" else CPU_VARIANTS[1].name


def make_batch(
    batch: int, crop: int, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random training batch: RGB image in [0, 1], binary mask, weight map in [1, 5]."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 1, crop, crop)
    out = {
        "image": torch.rand((batch, 3, crop, crop), generator=generator),
        "mask": (torch.rand(shape, generator=generator) > 0.7).float(),
        "weight": 1 + 4 * torch.rand(shape, generator=generator),
    }
    return {key: value.to(device) for key, value in out.items()}


class TrainStep:
    """One net + Adam in one variant; calling it runs one training step on a batch."""

    def __init__(self, arch: str, variant: Variant, device: torch.device) -> None:
        torch.manual_seed(0)
        self.net = build_net(arch).to(device).train()
        if variant.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LEARNING_RATE)
        self.scaler = torch.amp.GradScaler(device.type) if variant.dtype == torch.float16 else None
        self.variant = variant
        self.device = device
        self.losses: list[float] = []

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        variant = self.variant
        image = batch["image"]
        if variant.channels_last:  # as CellSegModule.forward
            image = image.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        dtype = variant.dtype or torch.float32
        with torch.autocast(self.device.type, dtype=dtype, enabled=variant.dtype is not None):
            logits = self.net(image)
            loss = weighted_bce(logits, batch["mask"], batch["weight"], CELL_WEIGHT)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        # Lightning reads the loss every step (logging, the module's finiteness check);
        # on a GPU this also waits for the step to finish, so the timing is complete.
        self.losses.append(float(loss.detach()))


def time_variant(
    plan: Plan,
    variant: Variant,
    device: torch.device,
    batch: dict[str, torch.Tensor],
    warmup_batch: dict[str, torch.Tensor],
    repeats: int,
    warmup: int,
) -> tuple[Stats, float]:
    """Seconds per step (after ``warmup`` untimed steps) and the first step's loss."""
    step = TrainStep(plan.arch, variant, device)
    for _ in range(warmup):
        step(warmup_batch)
    stats = measure(lambda: step(batch), repeats, warmup=0)
    return stats, step.losses[0]


def _devices() -> list[tuple[torch.device, tuple[Variant, ...]]]:
    devices: list[tuple[torch.device, tuple[Variant, ...]]] = [(torch.device("cpu"), CPU_VARIANTS)]
    if torch.cuda.is_available():
        devices.append((torch.device("cuda"), GPU_VARIANTS))
    return devices


def run(
    plans: list[Plan],
    crop: int,
    batch_size: int,
    gpu_repeats: int,
    devices: list[tuple[torch.device, tuple[Variant, ...]]] | None = None,
) -> Section:
    """Time a training step of every plan's net in every variant (CPU, and GPU if any)."""
    from cellcount.runtime.allocator import tune_allocator
    from cellcount.training.resolvers import cpu_precision

    tune_allocator()  # as `cellcount.train` does

    rows: list[list[object]] = []
    data: dict[str, Any] = {"crop": crop, "batch_size": batch_size, "cpu": {}, "cuda": {}}
    noisy = False
    warm_sides: set[str] = set()
    for device, variants in devices if devices is not None else _devices():
        gpu = device.type == "cuda"
        batch = make_batch(batch_size, crop, device)
        for plan in plans:
            if gpu:
                warm_crop, warmup, repeats = crop, GPU_WARMUP, gpu_repeats
            else:
                warm_crop = max(32, int(crop * plan.warmup_side) // 8 * 8)
                warmup, repeats = 1, plan.repeats
            warmup_batch = batch if warm_crop == crop else make_batch(batch_size, warm_crop, device)
            warm_text = f"{warmup} at {warm_crop}x{warm_crop}" if warm_crop != crop else f"{warmup}"
            if warm_crop != crop:
                warm_sides.add(plan.arch)
            base: float | None = None
            results: dict[str, Any] = {}
            for variant in variants:
                stats, first_loss = time_variant(
                    plan, variant, device, batch, warmup_batch, repeats, warmup
                )
                if gpu:
                    torch.cuda.empty_cache()
                noisy |= stats.noisy
                base = stats.median if base is None else base
                rate = stats.rate(batch_size)
                results[variant.name] = {
                    "seconds": stats.samples,
                    "user": stats.user,
                    "system": stats.system,
                    "crops_per_s": rate.median,
                    "speedup": base / stats.median,
                    "first_loss": first_loss,
                }
                rows.append(
                    [
                        f"`{plan.arch}`",
                        device.type.upper() if gpu else "CPU",
                        variant.name,
                        warm_text,
                        stats.n,
                        f"**{fmt_stats(rate, lambda v: f'{v:,.2f}')}**",
                        fmt_time(stats.median),
                        fmt_ratio(base / stats.median),
                        "—" if gpu else f"{stats.cpu_per_wall:.2f}",
                        f"{first_loss:.4f}",
                    ]
                )
                progress(
                    f"training {plan.arch} {device.type} {variant.name}: "
                    f"{rate.median:.2f} crops/s ({stats.median:.2f} s/step)"
                )
            data[device.type][plan.arch] = results
    precision = cpu_precision()
    data["cpu_precision"] = precision
    data["default_variant"] = default = default_variant(precision)
    gpu_text = (
        " On the GPU the same steps also ran in fp16 autocast with a `GradScaler` "
        f"({GPU_WARMUP} warm-up steps, {gpu_repeats} timed, synchronised by reading the "
        "loss; fp32 with PyTorch's defaults, under which cuDNN may use TF32 for "
        "convolutions)."
        if data["cuda"]
        else " No CUDA device here, so no GPU rows (the harness adds fp32, bf16 and fp16 AMP "
        "rows when `torch.cuda.is_available()`)."
    )
    half = (
        f" Warm-up *at NxN* (for {', '.join(sorted(warm_sides))}, to keep the section "
        "short): one step on a smaller crop, which creates the Adam state; the oneDNN "
        "kernels of the full size are then created in the timed step, a small cost next "
        "to a step of tens of seconds."
        if warm_sides
        else ""
    )
    body = (
        f"Crops per second of one training step on a batch of {batch_size} random "
        f"{crop}x{crop} crops: zero grad, forward, weighted BCE loss "
        "(`cellcount.training.losses.weighted_bce`, weight map, cell factor 1.5), backward, Adam step "
        "(lr 1e-3), BatchNorm in training mode, the loss read back each step as Lightning "
        "does. A fresh net per row (seed 0, so every variant starts from the same weights "
        "and data) and fresh Adam; untimed warm-up steps first, then timed steps, all rows "
        "of an architecture back to back in the harness process, with glibc's allocator "
        "tuned as `cellcount.train` does (`cellcount.runtime.allocator.tune_allocator`; it made a "
        "c_resunet bf16 step ~1.25x faster in a separate check). *crops/s* = batch size / "
        "seconds per step, median (min–max) over the timed steps; *speed-up* is vs the "
        "fp32 NCHW row of the same architecture and device; *CPU/wall* = busy cores; "
        "*first loss* is the loss of the first warm-up step (same weights and batch in "
        "every variant: its differences show the precision's effect on one forward)."
        f"{half}{gpu_text}\n\n"
        f"The CPU training default is the **{default}** row of each net: "
        "`conf/trainer/cpu.yaml` sets `precision: ${cpu_precision:}`, which "
        "`cellcount.training.resolvers.cpu_precision` resolves to `bf16-mixed` on CPUs with native "
        "bfloat16 (oneDNN's `_is_mkldnn_bf16_supported()`) and to `32-true` elsewhere "
        f"(here: `{precision}`), and `CellSegModule` trains channels-last (the net is "
        "converted at fit start, its inputs in `forward`).\n\n"
        + table(
            [
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
            ],
            rows,
        )
    )
    title = f"7. Training throughput ({crop}x{crop} crops, batch {batch_size})"
    return Section(title, body, data, noisy)


def default_speedup(section: Section, arch: str = "c_resunet") -> float | None:
    """CPU speed-up of the training default (``data["default_variant"]``) vs fp32."""
    info = section.data.get("cpu", {}).get(arch, {})
    default = info.get(section.data.get("default_variant"))
    return float(default["speedup"]) if default else None
