"""Paths the scripts share, and the one check for data that is not in the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The full DSB 2018 stage-1 fluorescence set (498 images with instance labels, CC0;
# images/ + labels/). Not shipped (22 MB); point CELLCOUNT_DSB at a copy, or keep
# the project's data folder next to the repository.
DSB_FULL = Path(os.environ.get("CELLCOUNT_DSB", REPO.parent / "shared" / "data" /
                               "dsb2018_stage1_train_fluo"))  # fmt: skip


def require_folder(folder: Path, what: str, variable: str) -> Path:
    """``folder`` if it has ``images/``; else exit with a message saying what is needed.

    Raises:
        SystemExit: the folder is missing, naming the data and the variable to set.
    """
    if not (folder / "images").is_dir():
        raise SystemExit(
            f"{what} not found at {folder} (needs images/ and labels/). This script needs "
            f"the full set, which is not part of the repository: set {variable}=/path/to/it "
            f"or pass --data-root."
        )
    return folder
