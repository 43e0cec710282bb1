"""The run record ``results.json``: one reader and one writer for every run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellcount.runtime.files import atomic_write_text

RESULTS = "results.json"


def read_results(run_dir: Path | str) -> dict[str, Any]:
    """``results.json`` of a run folder, or {} when there is none (or it is unreadable)."""
    try:
        return dict(json.loads((Path(run_dir) / RESULTS).read_text()))
    except (OSError, ValueError):
        return {}


def write_results(run_dir: Path | str, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` as the run folder's ``results.json`` (atomically); return it."""
    atomic_write_text(Path(run_dir) / RESULTS, json.dumps(record, indent=1))
    return record
