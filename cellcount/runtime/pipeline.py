"""Overlap reading and writing with the computation in between, in bounded memory.

:func:`run_overlapped` runs ``read`` in a reader thread, ``compute`` in the calling
thread and ``write`` in a writer thread, connected by queues of at most ``depth``
items, so that at most ``2 * depth + 3`` items, plus one group, are held at once
whatever the number of items (the third: the next item, read to see whether it
joins the group). ``compute`` takes a group of consecutive items (those
that ``joins`` lets in, e.g. small images of one size that the network predicts in
one batch) and returns one result per item. The network and the post-processing
(numpy, scipy, PIL and zlib release the GIL) run while the next image is decoded and
the previous one's files are encoded. ``done`` is called in the calling thread with
each result of ``write``, in the order of ``items``.

On an exception or Ctrl-C in the calling thread, the items already computed are
still written and passed to ``done`` before the exception goes on, so no
finished work is lost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
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
    compute: Callable[[list[Loaded]], Iterable[Computed]]
    write: Callable[[Computed], Written]
    done: Callable[[Written], None]
    joins: Callable[[list[Loaded], Loaded], bool]


def alone(group: list[Any], item: Any) -> bool:
    """The default of ``joins``: every item is computed on its own."""
    return False


def groups(loaded: Iterable[Loaded], joins: Callable[[list[Loaded], Loaded], bool]
           ) -> Iterator[list[Loaded]]:  # fmt: skip
    """Consecutive items of ``loaded`` in groups: an item joins the group before it when
    ``joins(group, item)``, else starts the next one."""
    group: list[Loaded] = []
    for item in loaded:
        if group and not joins(group, item):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def run_overlapped(
    items: Iterable[Item],
    read: Callable[[Item], Loaded],
    compute: Callable[[list[Loaded]], Iterable[Computed]],
    write: Callable[[Computed], Written],
    done: Callable[[Written], None],
    depth: int = 2,
    joins: Callable[[list[Loaded], Loaded], bool] = alone,
) -> None:
    """``done(write(result))`` for every result of ``compute`` over the read items in
    groups (:func:`groups`), in the order of ``items``, stages overlapped.

    Args:
        compute: a group of read items -> one result per item, in their order (an
            iterator: each result is written as soon as it comes).
        depth: queue length between stages (>= 0); 0 runs every stage in the calling
            thread, one group at a time.
        joins: whether a read item joins the group before it (default: never).

    Raises:
        ValueError: ``depth`` < 0.
        whatever a stage raises (the first such exception; later items are dropped).
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        for group in groups(map(read, items), joins):
            for result in compute(group):
                done(write(result))
        return
    _Pipeline(_Stages(read, compute, write, done, joins), depth).run(items)


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
            for group in groups(self._loaded(), self.stages.joins):
                for result in self.stages.compute(group):
                    self.computed.put(result)
                self._deliver(block=False)
        finally:  # write what was computed, also after an error or Ctrl-C
            self.stop.set()
            self.computed.put(_END)
            writer.join()
            reader.join()
            self._deliver(block=False)

    def _loaded(self) -> Iterator[Loaded]:
        """The read items, as the reader thread queues them (raising its exception)."""
        while not isinstance(entry := self.loaded.get(), _End):
            yield _unwrap(entry)

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
