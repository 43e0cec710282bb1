"""Property tests: random small images and option values through reading, normalisation
and counting. Every outcome is a count within bounds or a clear error, never a raw
exception or a half-written file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellcount.counter import Counter
from cellcount.data.errors import DataError
from cellcount.training.module import CellSegModule

DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64", "bool")


@pytest.fixture(scope="module")
def counter() -> Counter:
    """An untrained tiny net: its counts are arbitrary, its contract is not."""
    return Counter(CellSegModule(arch_kwargs={"n_features_start": 4}, cell_diameter=16.0))


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    """Random arrays: any dtype, 2-D or channels-last with 1-5 channels (or a 4-D
    stack), any value range, sometimes constant, sometimes with NaN/inf."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    shape: tuple[int, ...] = (height, width)
    layout = draw(st.sampled_from(["grey", "channels", "stack"]))
    if layout == "channels":
        shape = (height, width, draw(st.integers(1, 5)))
    elif layout == "stack":
        shape = (2, 2, height, width)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    scale = 10.0 ** draw(st.integers(-3, 9))
    array = rng.random(shape) * scale - (scale / 2 if draw(st.booleans()) else 0)
    if draw(st.booleans()):
        array[...] = array.flat[0]  # constant image
    if dtype.kind == "f" and draw(st.booleans()):
        array.flat[rng.integers(array.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        array = np.clip(np.nan_to_num(array), info.min, info.max)
    return array.astype(dtype)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(array=images(), diameter=st.one_of(st.just("auto"), st.floats(4.0, 128.0)),
       threshold=st.floats(0.01, 0.99))  # fmt: skip
def test_counting_random_files_counts_or_says_why(
    counter: Counter, tmp_path_factory: pytest.TempPathFactory, array: np.ndarray,
    diameter: float | str, threshold: float,
) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("fuzz") / "image.tif"
    tifffile.imwrite(path, array)
    counter.cell_diameter, counter.threshold = diameter, threshold
    try:
        result = counter.count(path)
    except DataError as err:
        assert str(path) in str(err) or "image" in str(err)  # names the file or what it is
        return
    height, width = result.labels.shape
    assert 0 <= result.count <= height * width
    assert result.count == int(result.labels.max(initial=0)) and result.labels.min() >= 0
    assert (height, width) == array.shape[-2:] or (height, width) == array.shape[:2]


@settings(max_examples=16, deadline=None)
@given(
    batch=st.sampled_from(["1", "2", "0", "-1", "x"]),
    tile=st.sampled_from(["1600", "256", "0", "7", "big"]),
    diameter=st.sampled_from(["auto", "20", "0", "-3", "nan", "inf", "1e9", "0.01"]),
    threshold=st.sampled_from(["0.5", "0", "1", "1.5", "nan"]),
)
def test_count_cli_with_random_options_never_crashes_or_half_writes(
    tmp_path_factory: pytest.TempPathFactory, batch: str, tile: str, diameter: str,
    threshold: str,
) -> None:  # fmt: skip
    from cellcount import samples
    from cellcount.cli.count import main

    out = tmp_path_factory.mktemp("out")
    image = samples.images("dsb2018")[0]
    args = [str(image), "--model", "pretrained", "--out", str(out), "--quiet", "--no-overlays",
            "--batch-size", batch, "--tile-size", tile, "--cell-diameter", diameter,
            "--threshold", threshold]  # fmt: skip
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            status = main(args)
        except SystemExit as exit_:  # argparse: a usage error
            status = int(exit_.code or 0)
    assert status in (0, 1, 2), errors.getvalue()[-800:]
    if status == 2:
        assert "error" in errors.getvalue()
    assert not list(Path(out).rglob("*.tmp*"))  # nothing half-written
    if status == 0:
        assert (Path(out) / "counts.csv").is_file()
