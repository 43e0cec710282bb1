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

from benchmarks.bench_common import Result, Stats, measure, progress
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
    """The CPU with its variants, and the first CUDA device with the GPU ones if present."""
    devices: list[tuple[torch.device, tuple[Variant, ...]]] = [(torch.device("cpu"), CPU_VARIANTS)]
    if torch.cuda.is_available():
        devices.append((torch.device("cuda"), GPU_VARIANTS))
    return devices


def _time_plan(
    plan: Plan,
    variants: tuple[Variant, ...],
    device: torch.device,
    batch: dict[str, torch.Tensor],
    gpu_repeats: int,
) -> Result:
    """Every variant of one net on one device, back to back.

    Returns:
        ``warmup`` (steps), ``warm_crop`` (their crop side), ``variants``: name ->
        ``stats`` (seconds per step) and ``first_loss``.
    """
    batch_size, crop = batch["image"].shape[0], batch["image"].shape[-1]
    if device.type == "cuda":
        warm_crop, warmup, repeats = crop, GPU_WARMUP, gpu_repeats
    else:
        warm_crop = max(32, int(crop * plan.warmup_side) // 8 * 8)
        warmup, repeats = 1, plan.repeats
    warmup_batch = batch if warm_crop == crop else make_batch(batch_size, warm_crop, device)
    results: dict[str, Any] = {}
    for variant in variants:
        stats, first_loss = time_variant(
            plan, variant, device, batch, warmup_batch, repeats, warmup
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results[variant.name] = {"stats": stats, "first_loss": first_loss}
        progress(
            f"training {plan.arch} {device.type} {variant.name}: "
            f"{stats.rate(batch_size).median:.2f} crops/s ({stats.median:.2f} s/step)"
        )
    return {"warmup": warmup, "warm_crop": warm_crop, "variants": results}


def run(
    plans: list[Plan],
    crop: int,
    batch_size: int,
    gpu_repeats: int,
    devices: list[tuple[torch.device, tuple[Variant, ...]]] | None = None,
) -> Result:
    """Time a training step of every plan's net in every variant (CPU, and GPU if any).

    Returns:
        The batch (``crop``, ``batch_size``), the GPU steps (``gpu_warmup``,
        ``gpu_repeats``), what the CPU trains in (``cpu_precision``,
        ``default_variant``) and ``devices``: device type -> arch -> what
        :func:`_time_plan` measured.
    """
    from cellcount.runtime.allocator import tune_allocator
    from cellcount.training.resolvers import cpu_precision

    tune_allocator()  # as `cellcount.train` does
    timings: dict[str, dict[str, Result]] = {}
    for device, variants in devices if devices is not None else _devices():
        batch = make_batch(batch_size, crop, device)
        timings[device.type] = {
            plan.arch: _time_plan(plan, variants, device, batch, gpu_repeats) for plan in plans
        }
    precision = cpu_precision()
    return {
        "crop": crop,
        "batch_size": batch_size,
        "gpu_warmup": GPU_WARMUP,
        "gpu_repeats": gpu_repeats,
        "cpu_precision": precision,
        "default_variant": default_variant(precision),
        "devices": timings,
    }
