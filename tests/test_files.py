"""Atomic writes: all or nothing, and readable by others like any new file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellcount.runtime.files import atomic_path, atomic_write_text


def test_written_file_has_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "counts.csv", "a,b\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "counts.csv").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
