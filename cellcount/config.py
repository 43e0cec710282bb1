"""OmegaConf resolvers used by the configs in ``conf/``.

* ``${resource:NAME}``: a file shipped in ``cellcount/resources``.
* ``${checkpoint_name:PATH}``: a readable name for a checkpoint (run folder + file stem).
* ``${checkpoint_run_dir:PATH}``: the training run folder a checkpoint belongs to
  (``<run>/checkpoints/best.ckpt`` -> ``<run>``).
"""

from __future__ import annotations

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


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    for name, function in (
        ("resource", resource_path),
        ("checkpoint_run_dir", checkpoint_run_dir),
        ("checkpoint_name", checkpoint_name),
    ):
        OmegaConf.register_new_resolver(name, function, replace=True)
