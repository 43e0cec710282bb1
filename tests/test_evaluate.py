"""`python -m cellcount.evaluate` scores a checkpoint and writes its report files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from cellcount.training.evaluate import table_row

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_entry_point_writes_report(tiny_run: Path, tmp_path: Path) -> None:
    split = json.loads((tiny_run / "split.json").read_text())
    data_root = tiny_run.parent / "outputs" / "data" / "synthetic-v2"
    command = [
        sys.executable, "-m", "cellcount.evaluate",
        f"ckpt={tiny_run / 'checkpoints' / 'best.ckpt'}",
        f"paths.output_dir={tmp_path}", f"data.root={data_root}",
        "data.crop_size=64", "data.crop_step=64",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| c_resunet |" in result.stdout
    (run_dir,) = (tmp_path / "evaluate").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_images"] == len(split["test"])
    assert 0 <= metrics["f1"] <= 1 and metrics["mae"] >= 0
    with (run_dir / "counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == sorted(split["test"])
    for row in rows:
        assert int(row["tp"]) + int(row["fn"]) == int(row["true_count"])
        assert int(row["tp"]) + int(row["fp"]) == int(row["predicted_count"])
    assert sum(int(r["tp"]) for r in rows) == metrics["tp"]
    assert sorted(p.stem for p in (run_dir / "overlays").glob("*.png")) == sorted(split["test"])


def test_table_row_layout() -> None:
    metrics = {k: 0.5 for k in ("f1", "precision", "recall", "accuracy", "mae", "medae", "mpe")}
    metrics.update({"arch": "unet", "threshold": 0.875, "n_images": 70})
    header, rule, row = table_row(metrics).splitlines()
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row.startswith("| unet | 0.500") and row.endswith("0.875 | 70 |")
