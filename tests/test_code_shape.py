"""Readable code: no function longer than 60 lines in the package, scripts or benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


@pytest.mark.parametrize("folder", ["cellcount", "scripts", "benchmarks"])
def test_no_function_is_longer_than_60_lines(folder: str) -> None:
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})")
    assert not long, "split these functions:\n" + "\n".join(long)


def test_configs_ship_inside_the_package() -> None:
    from importlib import resources

    conf = resources.files("cellcount.conf")
    assert (conf / "train.yaml").is_file() and (conf / "evaluate.yaml").is_file()
    assert (conf / "model" / "c_resunet.yaml").is_file()
