"""Overlap reading and writing with the computation in between, in bounded memory.

:func:`run_overlapped` runs ``read`` in a reader thread, ``compute`` in the calling
thread and ``write`` in a writer thread, connected by queues of at most ``depth``
items, so that at most ``2 * depth + 2`` items are held at once whatever the
number of items. The network and the post-processing (numpy, scipy, PIL and
zlib release the GIL) run while the next image is decoded and the previous one's
files are encoded. ``done`` is called in the calling thread with each result of
``write``, in the order of ``items``.

On an exception or Ctrl-C in the calling thread, the items already computed are
still written and passed to ``done`` before the exception goes on, so no
finished work is lost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")
Computed = TypeVar("Computed")
Written = TypeVar("Written")
_POLL_S = 0.1


@dataclass(frozen=True)
class _Failed:
    """An exception raised in a worker thread, to be raised again in the caller."""

    error: BaseException


class _End:
    """Marks the end of a queue."""


_END = _End()


@dataclass
class _Stages(Generic[Item, Loaded, Computed, Written]):
    read: Callable[[Item], Loaded]
    compute: Callable[[Loaded], Computed]
    write: Callable[[Computed], Written]
    done: Callable[[Written], None]


def run_overlapped(
    items: Iterable[Item],
    read: Callable[[Item], Loaded],
    compute: Callable[[Loaded], Computed],
    write: Callable[[Computed], Written],
    done: Callable[[Written], None],
    depth: int = 2,
) -> None:
    """``done(write(compute(read(item))))`` for every item, stages overlapped.

    Args:
        depth: queue length between stages (>= 0); 0 runs every stage in the calling
            thread, one item at a time.

    Raises:
        ValueError: ``depth`` < 0.
        whatever a stage raises (the first such exception; later items are dropped).
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        for item in items:
            done(write(compute(read(item))))
        return
    _Pipeline(_Stages(read, compute, write, done), depth).run(items)


class _Pipeline(Generic[Item, Loaded, Computed, Written]):
    """The three threads of :func:`run_overlapped` and their queues."""

    def __init__(self, stages: _Stages[Item, Loaded, Computed, Written], depth: int) -> None:
        self.stages = stages
        self.loaded: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.computed: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.finished: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()

    def run(self, items: Iterable[Item]) -> None:
        reader = threading.Thread(target=self._read_all, args=(items,), daemon=True)
        writer = threading.Thread(target=self._write_all, daemon=True)
        reader.start()
        writer.start()
        try:
            while not isinstance(entry := self.loaded.get(), _End):
                self.computed.put(self.stages.compute(_unwrap(entry)))
                self._deliver(block=False)
        finally:  # write what was computed, also after an error or Ctrl-C
            self.stop.set()
            self.computed.put(_END)
            writer.join()
            reader.join()
            self._deliver(block=False)

    def _read_all(self, items: Iterable[Item]) -> None:
        try:
            for item in items:
                if not self._offer(self.stages.read(item)):
                    return
        except BaseException as err:  # raised again in the caller
            self._offer(_Failed(err))
        self._offer(_END)

    def _offer(self, entry: Any) -> bool:
        """Put ``entry`` on the read queue unless the run stops; True if it was put."""
        while not self.stop.is_set():
            try:
                self.loaded.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _write_all(self) -> None:
        while not isinstance(entry := self.computed.get(), _End):
            try:
                self.finished.put(self.stages.write(entry))
            except BaseException as err:  # raised again in the caller
                self.finished.put(_Failed(err))

    def _deliver(self, block: bool) -> None:
        """Pass finished results to ``done`` (raising a writer's exception)."""
        while True:
            try:
                entry = self.finished.get(block=block)
            except queue.Empty:
                return
            self.stages.done(_unwrap(entry))


def _unwrap(entry: Any) -> Any:
    if isinstance(entry, _Failed):
        raise entry.error
    return entry
