"""OmegaConf resolvers used by the configs in ``conf/``.

* ``${resource:NAME}``: a file shipped in ``cellcount/resources``.
* ``${checkpoint_name:PATH}``: a readable name for a checkpoint (run folder + file stem).
* ``${checkpoint_run_dir:PATH}``: the training run folder a checkpoint belongs to
  (``<run>/checkpoints/best.ckpt`` -> ``<run>``).
* ``${job_dir_name:OVERRIDES}``: a sweep job's folder name (see :func:`job_dir_name`).
* ``${wandb_mode:}``: ``online`` if ``WANDB_API_KEY`` is set, else ``offline``.
* ``${cpu_precision:}``: ``bf16-mixed`` on CPUs with native bfloat16 support, else ``32-true``.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf


def resource_path(name: str) -> str:
    """Absolute path of a file shipped in ``cellcount/resources``."""
    return str(resources.files("cellcount") / "resources" / name)


def checkpoint_run_dir(path: str) -> str:
    """Run folder of a checkpoint saved by ``cellcount.train``."""
    return str(Path(path).resolve().parent.parent)


def checkpoint_name(path: str) -> str:
    """Short name of a checkpoint for folder names: ``<run folder>-<stem>``."""
    resolved = Path(path)
    return f"{resolved.parent.parent.name}-{resolved.stem}".strip("-")


MAX_JOB_DIR_NAME = 100


def job_dir_name(overrides: str) -> str:
    """Folder name of a sweep job from its overrides (``model=unet,seed=1``).

    Slashes become underscores; names longer than ``MAX_JOB_DIR_NAME`` keep a
    readable prefix plus a hash of the whole, so the name stays deterministic
    (re-runs find their job) and within file-system limits.
    """
    name = overrides.replace("/", "_") or "default"
    if len(name) <= MAX_JOB_DIR_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_JOB_DIR_NAME - 13]}-{digest}"


def wandb_mode() -> str:
    """``online`` when a W&B API key is configured, else ``offline`` (no account needed)."""
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def cpu_precision() -> str:
    """Lightning precision for CPU training: bf16 autocast where the CPU computes it natively.

    On this project's reference machine (AVX512-BF16) bf16 autocast with
    channels-last trains c_resunet about 2x faster than fp32 (BENCHMARKS.md
    section 7); CPUs without native bf16 would emulate it slowly, so they train in fp32.
    """
    import torch

    from cellcount.inference.predict import native_bf16

    return "bf16-mixed" if native_bf16(torch.device("cpu")) else "32-true"


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    for name, function in (
        ("resource", resource_path),
        ("checkpoint_run_dir", checkpoint_run_dir),
        ("checkpoint_name", checkpoint_name),
        ("wandb_mode", wandb_mode),
        ("job_dir_name", job_dir_name),
        ("cpu_precision", cpu_precision),
    ):
        OmegaConf.register_new_resolver(name, function, replace=True)
