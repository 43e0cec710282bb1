"""Accuracy on real images: the networks against the classical baseline on DSB 2018.

    make dsb-table1                    # c_resunet + classical, CPU (about 40 min on 2 cores)
    .venv/bin/python -m scripts.dsb_table1 --models c_resunet small_unet resunet unet \\
        --trainer gpu --epochs 60      # the full comparison, on a GPU

Each model is trained with ``python -m cellcount.train data=dsb`` on the same
seeded split of the 498 DSB 2018 fluorescence images (65 % train, 15 %
validation, 20 % test); its threshold is chosen on the full-size validation
images (kneedle); the held-out test images are then counted and matched
(centroids within 17.5 px, 1.25 nucleus diameters as the paper's 50 px for
40 px neurons). The classical baseline (``model=classical``: smoothing, Otsu,
watershed, size filter) is scored on the same test images with the same code.
Every run lives in ``OUT/<model>``; a finished one is reused, an interrupted
one resumes. The table (``OUT/table1.md``, ``table1.csv``) comes from
``cellcount report``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cellcount.evaluation.report import write_report
from scripts.common import DSB_FULL, REPO, require_folder

BASELINE = "classical"


def train_command(
    model: str, data_root: Path, out: Path, epochs: int, trainer: str, seed: int
) -> list[str]:
    """The ``cellcount.train`` command of one model (the baseline trains nothing)."""
    command = [
        sys.executable, "-m", "cellcount.train", f"model={model}", "data=dsb",
        f"data.root={data_root}", f"trainer={trainer}", f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false", "logger=csv", f"seed={seed}",
        f"hydra.run.dir={out / model}",
    ]  # fmt: skip
    return command


def run(
    models: list[str], data_root: Path, out: Path, epochs: int, trainer: str, seed: int
) -> Path:
    """Train/score every model (baseline first: it takes seconds); return the table path."""
    require_folder(data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    for model in [BASELINE, *[m for m in models if m != BASELINE]]:
        command = train_command(model, data_root, out, epochs, trainer, seed)
        print("+", " ".join(command), file=sys.stderr, flush=True)
        log = out / f"{model}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
        if status.returncode != 0:
            print(f"{model} failed (exit {status.returncode}); see {log}", file=sys.stderr)
    return write_report(out)["markdown"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["c_resunet"],
                        help="nets to train (the classical baseline always runs)")  # fmt: skip
    parser.add_argument("--data-root", type=Path, default=DSB_FULL)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "dsb_benchmark")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trainer", default="cpu", help="trainer preset: cpu | gpu | ddp")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    table = run(args.models, args.data_root, args.out, args.epochs, args.trainer, args.seed)
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
