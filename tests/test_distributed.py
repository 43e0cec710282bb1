"""`cellcount count --dask`: the same counts.csv as a local run, also when a worker dies."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from cellcount import samples
from cellcount.cli.count import main

distributed = pytest.importorskip("distributed")


def _table(out: Path) -> list[dict[str, str]]:
    with (out / "counts.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The shipped DSB samples (12 images)."""
    images = tmp_path / "images"
    images.mkdir()
    for path in samples.images("dsb2018"):
        shutil.copy(path, images / path.name)
    return images


def _model(tiny_run: Path) -> list[str]:
    return ["--ckpt", str(tiny_run / "checkpoints" / "best.ckpt"), "--device", "cpu",
            "--quiet", "--cell-diameter", "25"]  # fmt: skip


def test_a_local_cluster_writes_the_rows_of_a_local_run(
    tiny_run: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model(tiny_run)
    assert main([str(folder), "--out", str(tmp_path / "here"), *model]) == 0
    assert main([str(folder), "--out", str(tmp_path / "dask"), "--dask", "local:2", *model]) == 0
    assert _table(tmp_path / "dask") == _table(tmp_path / "here")
    assert len(list((tmp_path / "dask" / "overlays").iterdir())) == len(_table(tmp_path / "here"))
    assert main([str(folder), "--out", str(tmp_path / "x"), "--dask", "local:two", *model]) == 2
    assert "give local:N with N >= 1" in capsys.readouterr().err


def test_a_killed_worker_loses_no_image(tiny_run: Path, folder: Path, tmp_path: Path) -> None:
    model = _model(tiny_run)
    assert main([str(folder), "--out", str(tmp_path / "here"), *model]) == 0
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        status: list[int] = []
        run = threading.Thread(
            target=lambda: status.append(
                main([str(folder), "--out", str(out), "--dask", cluster.scheduler_address, *model])
            )
        )
        run.start()
        records = out / ".cellcount" / "records"
        deadline = time.monotonic() + 120
        while not (records.is_dir() and any(records.glob("*.json"))):
            assert time.monotonic() < deadline, "no image was counted"
            time.sleep(0.05)
        assert run.is_alive()  # the kill comes mid-way
        victim = sorted(client.scheduler_info()["workers"])[0]
        with contextlib.suppress(Exception):  # the worker dies before it can answer
            client.run(os._exit, 1, workers=[victim])
        run.join(timeout=300)
    assert status == [0]
    assert _table(out) == _table(tmp_path / "here")
