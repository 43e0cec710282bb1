"""The one `cellcount` command: every sub-command listed, dispatched, and Hydra's passed through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cellcount import __version__, samples
from cellcount.cli.main import COMMANDS, main
from tests.conftest import TINY_TRAIN_OVERRIDES

EXPECTED = {"count", "train", "evaluate", "report", "export", "convert", "samples"}


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert set(COMMANDS) >= EXPECTED
    for name in EXPECTED | {"--version"}:
        assert name in out


def test_version_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cellcount {__version__}"
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main([]) == 2


def test_every_subcommand_has_help() -> None:
    for name in EXPECTED - {"train", "evaluate"}:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name


def test_cellcount_train_takes_hydra_overrides(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cellcount", "train", *TINY_TRAIN_OVERRIDES,
               "trainer.max_epochs=1", "test=false", f"paths.output_dir={tmp_path / 'out'}",
               f"hydra.run.dir={run}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "results.json").read_text())
    assert record["status"] == "finished" and record["model"] == "c_resunet"
    assert record["epochs"] == 1


def test_cellcount_train_reports_a_bad_override(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cellcount", "train", "model=no_such_net"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "no_such_net" in result.stderr
    assert not (tmp_path / "outputs" / "runs").exists() or not any(
        (tmp_path / "outputs" / "runs").rglob("results.json")
    )


def test_run_folders_default_to_outputs_of_the_working_folder(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cellcount.train", *TINY_TRAIN_OVERRIDES,
               "trainer=debug", "test=false"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "run_info.json").is_file()


def test_samples_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples"]) == 0
    listing = capsys.readouterr().out
    for name in samples.names():
        assert name in listing
    assert main(["samples", "fnc_yellow", "--images"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == samples.path("fnc_yellow") / "images" and folder.is_dir()
    assert main(["samples", "dsb2018", "--truth"]) == 0
    assert Path(capsys.readouterr().out.strip()).name == "labels"
    assert main(["samples", "nope"]) == 2
    assert "available: dsb2018, fnc_red, fnc_yellow" in capsys.readouterr().err
    assert main(["samples", "--licence"]) == 0
    assert "CC BY-SA 4.0" in capsys.readouterr().out
