"""What a run folder records so the run can be reproduced: seed, command line,
package versions, git commit, machine."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cellcount.runtime.files import atomic_write_text

PACKAGES = (
    "cellcount",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "segmentation-models-pytorch",
    "albumentations",
    "scikit-image",
    "scipy",
    "numpy",
    "kneed",
    "torchmetrics",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    """Installed version of each package that can change results (None if absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(cwd: Path | None = None) -> str | None:
    """Commit of the source tree (with ``-dirty`` when it has uncommitted changes), or None."""
    source = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit or None


def run_info(seed: int) -> dict[str, Any]:
    """Everything :func:`write_run_info` records."""
    return {
        "seed": seed,
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": package_versions(),
    }


def write_run_info(run_dir: Path, seed: int) -> dict[str, Any]:
    """Write ``run_info.json`` into the run folder and return its content."""
    info = run_info(seed)
    atomic_write_text(Path(run_dir) / "run_info.json", json.dumps(info, indent=1))
    return info
