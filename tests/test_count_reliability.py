"""`cellcount count` under real use: stale results, its own outputs, bad options, bad files."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from cellcount import samples
from cellcount.cli.count import main
from cellcount.counter import Counter
from cellcount.data.normalize import Normalized


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def _failing_on(name: str, error: BaseException) -> Callable[..., object]:
    """``Counter.count_normalized`` that raises ``error`` for the file called ``name``."""
    real_count = Counter.count_normalized

    def count(self: Counter, normalized: Normalized, source: object = "", first: object = None
              ) -> object:  # fmt: skip
        if Path(str(source)).name == name:
            raise error
        return real_count(self, normalized, source, first)  # type: ignore[arg-type]

    return count


@pytest.fixture
def setup(tiny_run: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder of three shipped DSB images; the tiny model's counting arguments."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in samples.images("dsb2018")[:3]:
        shutil.copy(path, folder / path.name)
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    return folder, ["--ckpt", str(ckpt), "--device", "cpu", "--quiet", "--cell-diameter", "25"]


def test_changed_image_and_deleted_outputs_are_redone(
    setup: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, model = setup
    out = tmp_path / "out"
    assert main([str(folder), "--out", str(out), *model]) == 0
    first = _rows(out / "counts.csv")
    a, b = sorted(folder.iterdir())[:2]
    # Re-export b under a's name: a's count must follow the new content.
    shutil.copy(b, a)
    (out / "overlays" / f"{b.stem}.png").unlink()
    assert main([str(folder), "--out", str(out), *model]) == 0
    second = _rows(out / "counts.csv")
    assert second[a.stem]["count"] == first[b.stem]["count"]
    assert (out / "overlays" / f"{b.stem}.png").is_file()  # regenerated


def test_other_inputs_into_the_same_folder_keep_earlier_rows(
    setup: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, model = setup
    out = tmp_path / "out"
    files = sorted(folder.iterdir())
    assert main([str(files[0]), "--out", str(out), *model]) == 0
    assert main([str(files[1]), "--out", str(out), *model]) == 0
    assert set(_rows(out / "counts.csv")) == {files[0].stem, files[1].stem}


def test_outputs_inside_the_input_tree_are_not_counted(setup: tuple[Path, list[str]]) -> None:
    folder, model = setup
    out = folder / "results"
    for _ in range(2):
        assert main([str(folder), "--recursive", "--out", str(out), *model]) == 0
    assert len(_rows(out / "counts.csv")) == 3  # not the overlays of the first run


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--batch-size", "0", "must be >= 1"), ("--batch-size", "-1", "must be >= 1"),
     ("--tile-size", "7", "must be >= 256"), ("--tile-size", "0", "must be >= 256"),
     ("--cell-diameter", "inf", "positive number"), ("--cell-diameter", "0", "positive")],
)  # fmt: skip
def test_bad_options_stop_before_any_image(
    setup: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    folder, model = setup
    with pytest.raises(SystemExit):
        main([str(folder), "--out", str(tmp_path / "o"), *model, option, value])
    err = capsys.readouterr().err
    assert option in err and message in err


@pytest.mark.parametrize("diameter", ["10000", "0.01"])
def test_diameters_outside_the_models_range_are_refused(
    setup: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    diameter: str,
) -> None:
    folder, model = setup
    args = [str(folder), "--out", str(tmp_path / "o"), *model[:-2], "--cell-diameter", diameter]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--cell-diameter" in err and "outside what this model counts" in err
    assert not (tmp_path / "o" / "counts.csv").exists()


def test_unusable_output_folders_are_refused_up_front(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model = setup
    (tmp_path / "file").write_text("x")
    assert main([str(folder), "--out", str(tmp_path / "file"), *model]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main([str(folder), "--out", "/proc/cellcount-test", *model]) == 2
    assert "not writable" in capsys.readouterr().err


def test_one_failing_image_never_sinks_the_run(
    setup: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, model = setup
    files = sorted(folder.iterdir())
    error = RuntimeError("CPU out of memory (tried to allocate 9 GB)")
    monkeypatch.setattr(Counter, "count_normalized", _failing_on(files[1].name, error))
    out = tmp_path / "out"
    assert main([str(folder), "--out", str(out), *model]) == 1
    rows = _rows(out / "counts.csv")
    assert len(rows) == 3 and rows[files[0].stem]["count"] and rows[files[2].stem]["count"]
    assert "RuntimeError" in rows[files[1].stem]["error"]
    assert "smaller --tile-size" in rows[files[1].stem]["error"]


def test_oversized_images_are_refused_with_how_to_tile(
    setup: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, model = setup
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # every sample is "huge" now
    out = tmp_path / "out"
    assert main([str(folder), "--out", str(out), *model]) == 1
    errors = [row["error"] for row in _rows(out / "counts.csv").values()]
    assert len(errors) == 3 and all("too large to open safely" in e and "tiles" in e
                                    for e in errors)  # fmt: skip


def test_an_interrupted_run_keeps_its_finished_rows(
    setup: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, model = setup
    files = sorted(folder.iterdir())
    real_count = Counter.count_normalized
    monkeypatch.setattr(
        Counter, "count_normalized", _failing_on(files[2].name, KeyboardInterrupt())
    )
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        main([str(folder), "--out", str(out), *model])
    assert len(_rows(out / "counts.csv")) == 2  # every finished image
    monkeypatch.setattr(Counter, "count_normalized", real_count)
    assert main([str(folder), "--out", str(out), *model]) == 0
    assert len(_rows(out / "counts.csv")) == 3


def test_a_mistyped_model_name_lists_the_shipped_ones(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = setup
    assert main([str(folder), "--model", "pretraind", "--out", str(tmp_path / "o")]) == 2
    assert "pretraind is neither a checkpoint file nor a shipped model name (pretrained)" in (
        capsys.readouterr().err
    )


def test_the_api_checks_its_options_too(tiny_run: Path) -> None:
    from cellcount.inference.checkpoints import load_module

    module = load_module(tiny_run / "checkpoints" / "best.ckpt")
    for options, message in [({"batch_size": 0}, "batch_size must be >= 1"),
                             ({"batch_images": 0}, "batch_images must be >= 1"),
                             ({"tile_size": 7}, "tile_size must be >= 256"),
                             ({"threshold": 1.5}, "threshold must be in")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            Counter(module, **options)  # type: ignore[arg-type]
