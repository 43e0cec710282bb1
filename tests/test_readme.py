"""The README's commands run as written: quick start, sub-commands and make targets exist."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from cellcount.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _quick_start() -> list[str]:
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def test_quick_start_count_command_runs_from_another_folder(tmp_path: Path) -> None:
    count = next(c for c in _quick_start() if " count " in c)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    command = count.replace(".venv/bin/", "")
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "counts" / "counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(int(r["count"]) > 0 for r in rows)


def test_every_documented_subcommand_and_make_target_exists() -> None:
    documented = set(re.findall(r"`cellcount ([a-z]+)", README))
    assert documented and documented <= set(COMMANDS)
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M))
    for target in set(re.findall(r"make ([a-z][a-z0-9-]+)", README)):
        assert target in targets, f"README mentions `make {target}`, which the Makefile lacks"


def test_no_reference_to_files_outside_the_repository() -> None:
    for path in [ROOT / "README.md", *ROOT.glob("conf/**/*.yaml"), *ROOT.glob("cellcount/**/*.py")]:
        text = path.read_text()
        assert "shared/" not in text and "SPEC" not in text, path
