"""Train the shipped ``pretrained`` model and write it into the package.

    make pretrained     # about 35 min on 2 CPU cores

Trains c_resunet on the synthetic FNC-like set pooled with the DSB 2018
fluorescence nuclei (``data=fluo_mix``), then writes the best checkpoint with
float16 weights to ``cellcount/resources/models/c_resunet_fluo.ckpt`` and a
model card (command, validation and test scores, threshold, validation image
names) next to it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cellcount.data.splits import Split
from cellcount.inference.checkpoints import load_module, save_checkpoint
from cellcount.inference.pretrained import PRETRAINED
from cellcount.runtime.files import atomic_write_text
from cellcount.training.train import read_results
from scripts.common import DSB_FULL, REPO, require_folder

MODELS = REPO / "cellcount" / "resources" / "models"


def train(data_root: Path, run_dir: Path, epochs: int, trainer: str) -> list[str]:
    """Run (or resume, or reuse) the training; return its command."""
    command = [
        sys.executable, "-m", "cellcount.train", "data=fluo_mix",
        f"data.extra_sources.0.root={data_root}", f"trainer={trainer}",
        f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return command


def _portable(command: str, data_root: Path) -> str:
    """The command with the DSB folder as ``$CELLCOUNT_DSB`` and repository paths relative."""
    return command.replace(str(data_root), "$CELLCOUNT_DSB").replace(f"{REPO}/", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DSB_FULL)
    parser.add_argument("--run-dir", type=Path, default=REPO / "outputs" / "pretrained")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--trainer", default="cpu")
    args = parser.parse_args(argv)
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    command = train(args.data_root, args.run_dir, args.epochs, args.trainer)
    results = read_results(args.run_dir)
    module = load_module(results["best_checkpoint"])
    target = save_checkpoint(module, MODELS / PRETRAINED["pretrained"][0], half=True)
    card = {
        "name": "pretrained", "description": PRETRAINED["pretrained"][1],
        "command": _portable(" ".join(["python", *command[1:]]), args.data_root),
        "arch": module.hparams["arch"],
        "cell_diameter": module.hparams["cell_diameter"], "threshold": results["threshold"],
        "epochs": results["epochs"], "val": results["val"], "test": results.get("test"),
        "val_images": Split.load(args.run_dir / "split.json").val,
    }  # fmt: skip
    atomic_write_text(target.with_suffix(".json"), json.dumps(card, indent=1))
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
