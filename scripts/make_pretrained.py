"""Train the shipped ``pretrained`` model and write it into the package.

    CELLCOUNT_DSB=... CELLCOUNT_FNC=... make pretrained    # about 40 min on 2 CPU cores
    python -m scripts.make_pretrained --recalibrate         # counting choices only (~10 min)
    python -m scripts.make_pretrained --size-model          # size model only (~5 min)

Trains c_resunet on the synthetic FNC-like set pooled with the DSB 2018
fluorescence nuclei of two sources and the FNC sample neurons (``data=generalist``:
percentile normalisation, every image resized to 16 px cells, the generalist
augmentation). The other DSB sources and four FNC images are held out as the test
split (:func:`scripts.common.held_out_names`). Writes the best checkpoint with
float16 weights to ``cellcount/resources/models/c_resunet_fluo.ckpt`` and a model
card (command, data, normalisation, thresholds, validation and test scores,
held-out images) next to it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cellcount.data.splits import Split
from cellcount.inference.checkpoints import load_module, save_checkpoint
from cellcount.inference.pretrained import PRETRAINED
from cellcount.runtime.files import atomic_write_text, write_csv
from cellcount.runtime.results import read_results
from cellcount.training.module import CellSegModule
from scripts.common import (
    DSB_FULL,
    FNC_SAMPLES,
    REPO,
    TRAIN_DSB_SOURCES,
    held_out_names,
    require_folder,
)

MODELS = REPO / "cellcount" / "resources" / "models"


def data_overrides(dsb: Path, fnc: Path, held_out: Path) -> list[str]:
    """The ``cellcount.train`` overrides that choose the shipped model's data and split."""
    return [
        "data=generalist", f"data.extra_sources.0.root={dsb}",
        f"data.extra_sources.1.root={fnc / 'yellow'}", f"data.extra_sources.2.root={fnc / 'red'}",
        f"data.test_names_file={held_out}",
    ]  # fmt: skip


def write_held_out(dsb: Path, run_dir: Path) -> Path:
    """``run_dir/held_out.txt``: the names of the test split, one per line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    held_out = run_dir / "held_out.txt"
    atomic_write_text(held_out, "\n".join(held_out_names(dsb)) + "\n")
    return held_out


def train(dsb: Path, fnc: Path, run_dir: Path, epochs: int, trainer: str) -> list[str]:
    """Run (or resume, or reuse) the training; return its command."""
    command = [
        sys.executable, "-m", "cellcount.train",
        *data_overrides(dsb, fnc, write_held_out(dsb, run_dir)),
        f"trainer={trainer}", f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false", "logger=csv", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return command


def shipped_datamodule(dsb: Path, fnc: Path, run_dir: Path) -> tuple[Any, Any, Path, dict]:
    """The shipped model's data, split as it was trained (its card's validation images),
    the train config, the checkpoint path and its card.

    Raises:
        SystemExit: the validation images are not the ones the model card lists.
    """
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from cellcount.data.datamodule import CellDataModule

    target = MODELS / PRETRAINED["pretrained"][0]
    card = json.loads(target.with_suffix(".json").read_text())
    overrides = [*data_overrides(dsb, fnc, write_held_out(dsb, run_dir)),
                 f"paths.output_dir={run_dir}", f"paths.run_dir={run_dir}"]  # fmt: skip
    with initialize_config_module("cellcount.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = CellDataModule(instantiate(cfg.data))
    datamodule.prepare_data()
    if sorted(s.name for s in datamodule.part_samples("val")) != sorted(card["val_images"]):
        raise SystemExit(f"the validation split differs from the val_images of "
                         f"{target.with_suffix('.json')}: use the data the model was "
                         "trained on")  # fmt: skip
    return datamodule, cfg, target, card


def recalibrate(dsb: Path, fnc: Path, run_dir: Path) -> Path:
    """Choose the shipped checkpoint's counting threshold and split profile again on its
    own validation images (after a change to the candidates, without retraining), and
    rewrite the checkpoint and its card; return the checkpoint."""
    from hydra.utils import instantiate

    from cellcount.evaluation.postprocess import COUNTING_SPLITS
    from cellcount.training.callbacks import ThresholdSweep, counting_rows

    datamodule, cfg, target, card = shipped_datamodule(dsb, fnc, run_dir)
    module = load_module(target, "cpu")
    sweep: ThresholdSweep = instantiate(cfg.callbacks.threshold_sweep)
    tables, chosen = sweep.sweep(module, datamodule.full_images("val"), COUNTING_SPLITS,
                                 progress=True)  # fmt: skip
    print(
        f"kneedle threshold {chosen:.3f} (card: {card['threshold']:.3f}); counting "
        f"{sweep.count_threshold:.3f} with {sweep.count_split.as_dict()}: {sweep.count_result}"
    )
    write_csv(run_dir / "counting_sweep.csv", counting_rows(tables))
    save_checkpoint(module, target, half=True)
    card.update(threshold=chosen, count_threshold=sweep.count_threshold,
                count_split=sweep.count_split.as_dict(), val_counting=sweep.count_result,
                recalibrated="python -m scripts.make_pretrained --recalibrate")  # fmt: skip
    atomic_write_text(target.with_suffix(".json"), json.dumps(card, indent=1))
    return target


def fit_size(dsb: Path, fnc: Path, run_dir: Path) -> Path:
    """Fit the shipped checkpoint's size model on its own train / val split
    (:mod:`cellcount.training.size_fit`) and rewrite the checkpoint and its card;
    return the checkpoint."""
    from cellcount.training.size_fit import fit_on_split

    datamodule, _, target, card = shipped_datamodule(dsb, fnc, run_dir)
    module = load_module(target, "cpu")
    fit = fit_on_split(module, datamodule)
    error, within = 100 * fit.val_median_error, 100 * fit.val_within_25
    print(f"size model: alpha {fit.model.alpha:g}, validation median error {error:.1f} %, "
          f"{within:.0f} % within 25 %")  # fmt: skip
    module.hparams["size_model"] = fit.model.as_dict()
    save_checkpoint(module, target, half=True)
    card["size_model"] = {**fit.summary(), "command": "python -m scripts.make_pretrained "
                          "--size-model", "data": "the training images at their own size "
                          "and rescaled to random cell sizes (6-128 px); alpha and the "
                          "errors from the validation images, rescaled the same way"}  # fmt: skip
    atomic_write_text(target.with_suffix(".json"), json.dumps(card, indent=1))
    return target


def _portable(command: str, dsb: Path, fnc: Path) -> str:
    """The command with the data folders as ``$CELLCOUNT_DSB`` / ``$CELLCOUNT_FNC``."""
    return (
        command.replace(str(dsb), "$CELLCOUNT_DSB")
        .replace(str(fnc), "$CELLCOUNT_FNC")
        .replace(f"{REPO}/", "")
    )


def model_card(
    args: argparse.Namespace, command: list[str], module: CellSegModule
) -> dict[str, Any]:
    """What the shipped model is: command, data, normalisation, thresholds, scores."""
    results = read_results(args.run_dir)
    split = Split.load(args.run_dir / "split.json")
    return {
        "name": "pretrained", "description": PRETRAINED["pretrained"][1],
        "command": _portable(" ".join(["python", *command[1:]]), args.data_root, args.fnc_root),
        "arch": module.hparams["arch"], "cell_diameter": module.hparams["cell_diameter"],
        "normalization": module.normalization.as_dict(),
        "threshold": results["threshold"], "count_threshold": results.get("count_threshold"),
        "count_split": module.count_split.as_dict(),
        "epochs": results["epochs"], "val": results["val"],
        "val_counting": results.get("val_counting"), "test": results.get("test"),
        "data": f"synthetic FNC-like set (40 images) + DSB 2018 sources "
                f"{' + '.join(TRAIN_DSB_SOURCES)} + FNC sample neurons; every image resized "
                "to 16 px cells",
        "train_images": len(split.train), "val_images": split.val, "held_out_images": split.test,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DSB_FULL, help="DSB 2018 folder")
    parser.add_argument("--fnc-root", type=Path, default=FNC_SAMPLES, help="FNC samples folder")
    parser.add_argument("--run-dir", type=Path, default=REPO / "outputs" / "pretrained")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trainer", default="cpu")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="only choose the counting threshold and split again (minutes)",
    )
    parser.add_argument(
        "--size-model", action="store_true", help="only fit the size model again (minutes)"
    )
    args = parser.parse_args(argv)
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    require_folder(args.fnc_root / "yellow", "the FNC yellow samples", "CELLCOUNT_FNC")
    if args.recalibrate:
        target = recalibrate(args.data_root, args.fnc_root, args.run_dir / "recalibrate")
        print(f"recalibrated {target}")
        return 0
    if args.size_model:
        target = fit_size(args.data_root, args.fnc_root, args.run_dir / "size_model")
        print(f"fitted the size model of {target}")
        return 0
    command = train(args.data_root, args.fnc_root, args.run_dir, args.epochs, args.trainer)
    module = load_module(read_results(args.run_dir)["best_checkpoint"])
    target = save_checkpoint(module, MODELS / PRETRAINED["pretrained"][0], half=True)
    card = model_card(args, command, module)
    atomic_write_text(target.with_suffix(".json"), json.dumps(card, indent=1))
    fit_size(args.data_root, args.fnc_root, args.run_dir / "size_model")
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
