"""Count a folder on a Dask distributed cluster: ``cellcount count ... --dask ADDRESS``.

``ADDRESS`` is a running scheduler (``tcp://host:8786``, e.g. one started by
``dask-jobqueue`` on SLURM) or ``local:N``, a local cluster of N worker processes.
Each image is one task: the worker counts it exactly as a local run does
(:meth:`cellcount.cli.count.ImageCounting.one`: resume record, outputs written
atomically into ``--out``, which must therefore be on a file system the workers
share), and its row comes back to this process, which keeps ``counts.csv``. Each
worker process loads the model once. When a worker dies, the scheduler gives its
images to the others (up to ``distributed.scheduler.allowed-failures`` times, 3 by
default); an image that still fails becomes a row with an error, like any bad
image. Needs ``pip install 'cellcount[dask]'``.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellcount.data.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

    from cellcount.cli.count import ImageCounting

_COUNTINGS: dict[tuple[str, str], ImageCounting] = {}
_LOCK = threading.Lock()


def count_on_dask(
    address: str,
    inputs: Sequence[tuple[Path, str]],
    local: ImageCounting,
    done: Callable[[dict[str, Any]], None],
) -> None:
    """Count ``inputs`` on the cluster at ``address``; ``done(row)`` as each finishes.

    ``local`` is this process's counting setup (its model already loaded, so the
    options were checked before any task is sent); the workers make their own.

    Raises:
        DataError: distributed is not installed, or ``address`` is malformed.
    """
    from cellcount.cli.count import error_row

    client = connect(address)
    from distributed import as_completed

    options, digest = local.options, local.checkpoint_sha256
    try:
        futures = {client.submit(count_image, pair, options, digest, pure=False,
                                 key=f"count-{index}-{pair[1]}"): pair
                   for index, pair in enumerate(inputs)}  # fmt: skip
        for future in as_completed(futures):
            path, name = futures[future]
            try:
                row = future.result()
            except Exception as err:  # the image killed its workers, or the cluster failed
                row = error_row(path, name, local.model, options, _worker_error(err))
            done(row)
    finally:
        _close(client)


def count_image(pair: tuple[Path, str], options: argparse.Namespace, digest: str) -> dict[str, Any]:
    """The task: the row of one image, counted on this worker (model loaded once)."""
    return _counting(options, digest).one(pair)


def _counting(options: argparse.Namespace, digest: str) -> ImageCounting:
    """This worker process's :class:`ImageCounting` for these options (made once)."""
    from cellcount.cli.count import ImageCounting, make_counter
    from cellcount.inference.pretrained import resolve_model

    cache_key = (digest, repr(sorted(vars(options).items())))
    with _LOCK:
        if cache_key not in _COUNTINGS:
            counter = make_counter(options, resolve_model(options.model))
            _COUNTINGS[cache_key] = ImageCounting(counter, Path(options.out), options, digest)
        return _COUNTINGS[cache_key]


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``, or of a new local cluster (``local:N``,
    N worker processes with one task at a time and an equal share of the cores each).

    Raises:
        DataError: distributed is missing, or ``local:N`` has no valid N.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DataError("--dask needs Dask distributed: pip install 'cellcount[dask]'") from None
    if not address.startswith("local"):
        return Client(address)
    workers = _local_workers(address)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, env=env)  # fmt: skip
    return Client(cluster)


def _local_workers(address: str) -> int:
    text = address.partition(":")[2]
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"--dask {address}: give local:N with N >= 1 worker processes, or a "
                        f"scheduler address such as tcp://host:8786")  # fmt: skip
    return int(text)


def _close(client: Client) -> None:
    """Close the client, and the cluster when this run started it."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _worker_error(err: Exception) -> Exception:
    """A message for a task that did not finish on any worker."""
    if type(err).__name__ == "KilledWorker":
        return DataError(
            f"the workers counting this image died repeatedly ({err}); it may need more "
            "memory than a worker has: try a smaller --tile-size"
        )
    return err
