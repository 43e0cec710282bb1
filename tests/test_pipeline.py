"""Overlapped read / compute / write (cellcount.runtime.pipeline) and its use by `count`."""

from __future__ import annotations

import csv
import shutil
import threading
import time
from collections.abc import Iterator
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

    def compute(self, group: list[int]) -> list[int]:
        self._enter("compute")
        time.sleep(0.002)
        return [item * 10 for item in group]

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
    # two queues + one item in each stage + the next item, read to see if it joins the group
    assert tracker.most_held <= 2 * depth + 4
    main_thread = threading.current_thread().name
    assert tracker.threads["compute"] == {main_thread}
    if depth:  # reading and writing happen in their own threads
        assert main_thread not in tracker.threads["read"] | tracker.threads["write"]
    else:
        assert tracker.threads["read"] == tracker.threads["write"] == {main_thread}


def test_computed_items_are_still_written_after_an_interrupt() -> None:
    written: list[int] = []

    def compute(group: list[int]) -> Iterator[int]:
        for item in group:
            if item == 5:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):  # in groups of three: 3 and 4 came before 5
        run_overlapped(range(100), lambda i: i, compute, lambda i: i, written.append, 2,
                       lambda group, item: len(group) < 3)  # fmt: skip
    assert written == [0, 1, 2, 3, 4]  # everything computed before the interrupt


@pytest.mark.parametrize("stage", ["read", "write"])
def test_an_error_in_a_worker_thread_reaches_the_caller(stage: str) -> None:
    def fail(item: int) -> int:
        if item == 3:
            raise ValueError(f"{stage} failed")
        return item

    stages = {"read": lambda i: i, "write": lambda i: i, stage: fail}
    with pytest.raises(ValueError, match=f"{stage} failed"):
        run_overlapped(range(10), stages["read"], list, stages["write"], lambda i: None)
    with pytest.raises(ValueError, match="depth"):
        run_overlapped([], lambda i: i, list, lambda i: i, lambda i: None, -1)


@pytest.mark.parametrize("depth", [0, 2])
def test_consecutive_items_that_join_are_computed_as_one_group(depth: int) -> None:
    seen: list[list[int]] = []

    def compute(group: list[int]) -> list[int]:
        seen.append(group)
        return [item + 100 for item in group]

    def same_tens_at_most_four(group: list[int], item: int) -> bool:
        return group[0] // 10 == item // 10 and len(group) < 4

    results: list[int] = []
    items = [1, 2, 3, 4, 5, 11, 12, 21]
    run_overlapped(items, lambda i: i, compute, lambda i: i, results.append, depth,
                   same_tens_at_most_four)  # fmt: skip
    assert seen == [[1, 2, 3, 4], [5], [11, 12], [21]]
    assert results == [item + 100 for item in items]


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
    runs = {"one at a time": ["--prefetch", "0", "--batch-images", "1"],
            "overlapped": ["--prefetch", "3", "--batch-images", "1"],
            "overlapped, batched": ["--prefetch", "3"]}  # fmt: skip
    for run, options in runs.items():
        out = tmp_path / run.replace(" ", "_").replace(",", "")
        assert main([str(folder), "--out", str(out), *options, *model]) == 0
        with (out / "counts.csv").open() as handle:
            tables[run] = list(csv.DictReader(handle))
        assert len(list((out / "cells").iterdir())) == len(tables[run])
    names = [row["name"] for row in tables["overlapped"]]
    assert names == sorted(p.stem for p in folder.iterdir())
    assert tables["one at a time"] == tables["overlapped"] == tables["overlapped, batched"]
