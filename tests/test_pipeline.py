"""Overlapped read / compute / write (cellcount.runtime.pipeline) and its use by `count`."""

from __future__ import annotations

import csv
import shutil
import threading
import time
from pathlib import Path

import pytest

from cellcount import samples
from cellcount.cli.count import main
from cellcount.runtime.pipeline import run_overlapped


class _Tracker:
    """Stages that record which thread ran them and how many items are held at once."""

    def __init__(self) -> None:
        self.threads: dict[str, set[str]] = {"read": set(), "compute": set(), "write": set()}
        self.held = self.most_held = 0
        self.lock = threading.Lock()

    def _enter(self, stage: str) -> None:
        self.threads[stage].add(threading.current_thread().name)

    def read(self, item: int) -> int:
        self._enter("read")
        with self.lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        return item

    def compute(self, item: int) -> int:
        self._enter("compute")
        time.sleep(0.002)
        return item * 10

    def write(self, item: int) -> int:
        self._enter("write")
        time.sleep(0.004)  # the slowest stage: queues fill up
        with self.lock:
            self.held -= 1
        return item + 1


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_every_item_arrives_in_order_with_bounded_memory(depth: int) -> None:
    tracker = _Tracker()
    results: list[int] = []
    run_overlapped(range(40), tracker.read, tracker.compute, tracker.write, results.append, depth)
    assert results == [i * 10 + 1 for i in range(40)]
    assert tracker.most_held <= 2 * depth + 3  # two queues + one item in each stage
    main_thread = threading.current_thread().name
    assert tracker.threads["compute"] == {main_thread}
    if depth:  # reading and writing happen in their own threads
        assert main_thread not in tracker.threads["read"] | tracker.threads["write"]
    else:
        assert tracker.threads["read"] == tracker.threads["write"] == {main_thread}


def test_computed_items_are_still_written_after_an_interrupt() -> None:
    written: list[int] = []

    def compute(item: int) -> int:
        if item == 5:
            raise KeyboardInterrupt
        return item

    with pytest.raises(KeyboardInterrupt):
        run_overlapped(range(100), lambda i: i, compute, lambda i: i, written.append, 2)
    assert written == [0, 1, 2, 3, 4]  # everything computed before the interrupt


@pytest.mark.parametrize("stage", ["read", "write"])
def test_an_error_in_a_worker_thread_reaches_the_caller(stage: str) -> None:
    def fail(item: int) -> int:
        if item == 3:
            raise ValueError(f"{stage} failed")
        return item

    stages = {"read": lambda i: i, "write": lambda i: i, stage: fail}
    with pytest.raises(ValueError, match=f"{stage} failed"):
        run_overlapped(range(10), stages["read"], lambda i: i, stages["write"], lambda i: None)
    with pytest.raises(ValueError, match="depth"):
        run_overlapped([], lambda i: i, lambda i: i, lambda i: i, lambda i: None, -1)


def test_overlapped_and_one_at_a_time_counting_write_the_same_results(
    tiny_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for path in samples.images("dsb2018"):
        shutil.copy(path, folder / path.name)
    model = ["--ckpt", str(tiny_run / "checkpoints" / "best.ckpt"), "--device", "cpu",
             "--quiet", "--cell-diameter", "25", "--per-cell"]  # fmt: skip
    tables = {}
    for prefetch in ("0", "3"):
        out = tmp_path / f"out{prefetch}"
        assert main([str(folder), "--out", str(out), "--prefetch", prefetch, *model]) == 0
        with (out / "counts.csv").open() as handle:
            tables[prefetch] = list(csv.DictReader(handle))
        assert len(list((out / "cells").iterdir())) == len(tables[prefetch])
    assert [row["name"] for row in tables["3"]] == sorted(p.stem for p in folder.iterdir())
    assert tables["0"] == tables["3"]
