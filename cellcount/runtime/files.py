"""Atomic file writing and content hashing.

Every file the package writes goes through :func:`atomic_path`: the content is
written to a temporary sibling and renamed into place, so an interrupted run
never leaves a half-written CSV, image, cache or split behind.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _file_mode() -> int:
    """Permissions of a new file as ``open()`` would make it: 0o666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file keeps the suffix of ``path`` so writers that pick a format
    from the extension work. On any exception the temporary file is removed. The
    final file gets the usual permissions (0o666 minus the umask), not the
    owner-only mode of temporary files, so colleagues can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# Temporaries older than this are left over from a killed run (a write takes seconds).
STALE_SECONDS = 300.0


def clean_stale_temporaries(folder: Path | str, older_than: float = STALE_SECONDS) -> int:
    """Remove :func:`atomic_path` temporaries (``.<name>.<random>.tmp<suffix>``) under
    ``folder`` older than ``older_than`` seconds, left by a run killed mid-write;
    return how many were removed."""
    import time

    folder, removed, now = Path(folder), 0, time.time()
    if not folder.is_dir():
        return 0
    for path in folder.rglob(".*.tmp*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > older_than:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(
    path: Path | str, rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()
) -> None:
    """Write dict rows as CSV atomically (columns: given, else the first row's keys)."""
    fieldnames = list(columns) or (list(rows[0]) if rows else [])
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def atomic_save_npy(path: Path | str, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def path_sha256(path: Path | str) -> str:
    """:func:`file_sha256` of a file; of a folder (an OME-Zarr store), the SHA-256 of
    every file's relative path, size and modification time (its chunks can be many GB)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = item.stat()
        digest.update(f"{item.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def array_sha256(*arrays: np.ndarray, extra: str = "") -> str:
    """Hex SHA-256 of arrays' shapes, dtypes and bytes, plus an ``extra`` string."""
    digest = hashlib.sha256(extra.encode())
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
