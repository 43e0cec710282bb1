"""Fine-tune a counting model on a lab's own point-annotated images, within a time budget.

:func:`finetune` pairs each image with its annotation, lays them out as a
``data=points`` dataset in a work folder, trains from the base model's weights
(``init_ckpt``) for ``minutes`` with the usual pipeline (the held-out share of the
images is the validation split on which both thresholds are chosen), writes the
checkpoint, and scores the base and the fine-tuned model on the held-out images
(:func:`before_after`): a model card (JSON), a report (Markdown) and an overlay.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellcount.data.errors import DataError
from cellcount.data.points import (
    POINT_SUFFIXES,
    annotation_names,
    find_annotation,
    read_truth_points,
)

TABLE_KEYS = ("precision", "recall", "f1", "mae", "mpe")


@dataclass(frozen=True)
class FinetuneOptions:
    """What :func:`finetune` needs.

    Attributes:
        images: (path, name) of every annotated image.
        points: the folder of annotations (``<name>.csv`` etc.).
        out: the checkpoint to write (``.ckpt``); its card, report and overlay go beside it.
        base: checkpoint or shipped model name to start from.
        minutes: training time budget (> 0).
        held_out: share of the images kept for choosing thresholds and the report (0, 1).
        seed: seed of the split, the weights' order of visits and augmentation.
        progress: show Lightning's progress bar.
    """

    images: list[tuple[Path, str]]
    points: Path
    out: Path
    base: str = "pretrained"
    minutes: float = 10.0
    held_out: float = 0.3
    seed: int = 0
    progress: bool = True


def prepare_dataset(options: FinetuneOptions, root: Path) -> int:
    """Lay out ``root/images`` and ``root/points`` (copies); return the number of images.

    With a single image, its two halves are the dataset (:func:`write_halves`): one
    trains, the other is held out.

    Raises:
        DataError: an image without annotation (all listed), or no image.
    """
    pairs, missing = [], []
    for path, name in options.images:
        found = find_annotation(options.points, name)
        if found is None or found.suffix.lower() not in POINT_SUFFIXES:
            missing.append(f"{name} (looked for {annotation_names(name)})")
        else:
            pairs.append((path, name, found))
    if missing:
        raise DataError(f"no point annotation in {options.points} for: {'; '.join(missing)}")
    if not pairs:
        raise DataError("fine-tuning needs at least 1 annotated image")
    for sub in ("images", "points"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    if len(pairs) == 1:  # one image: its halves are the training and the held-out part
        write_halves(*pairs[0], root)
        return 1
    for path, name, found in pairs:
        shutil.copy2(path, root / "images" / f"{name}{path.suffix.lower()}")
        shutil.copy2(found, root / "points" / found.name)
    return len(pairs)


def write_halves(path: Path, name: str, annotation: Path, root: Path) -> None:
    """Cut one annotated image across its longer side into ``<name>__half1`` and
    ``__half2`` (raw pixels as TIFF, clicks as X, Y CSV in each half's coordinates),
    so one image can give both training and held-out clicks.

    Raises:
        DataError: a microscope file (export the plane as TIFF first), or an image
            under 2 x 128 px along its longer side.
    """
    from cellcount.data.io import read_raw
    from cellcount.data.microscope import is_microscope_file

    if is_microscope_file(path):
        raise DataError(f"{path}: fine-tuning on a single microscope file is not supported; "
                        f"export the plane as TIFF, or annotate a second image")  # fmt: skip
    raw = read_raw(path)
    spatial = (0, 1) if raw.array.ndim == 2 or raw.array.shape[-1] <= 4 else (1, 2)
    shape = [raw.array.shape[axis] for axis in spatial]
    axis = spatial[int(shape[1] > shape[0])]
    cut = raw.array.shape[axis] // 2
    if cut < 128:
        raise DataError(f"{path}: one image of {shape[1]}x{shape[0]} px is too small to hold "
                        f"out half of it; annotate a second image")  # fmt: skip
    points = read_truth_points(annotation, shape)
    along = points[:, spatial.index(axis)]
    for half, (start, stop) in enumerate(((0, cut), (cut, raw.array.shape[axis])), start=1):
        part = np.take(raw.array, np.arange(start, stop), axis=axis)
        photometric = "rgb" if raw.rgb and part.ndim == 3 and part.shape[-1] in (3, 4) else None
        tifffile.imwrite(root / "images" / f"{name}__half{half}.tif", part,
                         photometric=photometric)  # fmt: skip
        inside = points[(along >= start) & (along < stop)].copy()
        inside[:, spatial.index(axis)] -= start
        rows = "".join(f"{col:.2f},{row:.2f}\n" for row, col in inside)
        (root / "points" / f"{name}__half{half}.csv").write_text("X,Y\n" + rows)


def base_overrides(base: Any) -> list[str]:
    """Overrides that make the run's model and data settings those of the base module:
    architecture, cell size (images rescaled to it) and normalisation."""
    kwargs = ",".join(f"{key}:{_hydra_value(value)}"
                      for key, value in base.hparams["arch_kwargs"].items())  # fmt: skip
    diameter = float(base.hparams["cell_diameter"])
    norm = base.normalization.as_dict()
    return [
        f"model={base.hparams['arch']}", f"module.arch_kwargs={{{kwargs}}}",
        f"data.cell_diameter={diameter}", f"data.rescale_to={diameter}",
        f"data.match_radius={1.25 * diameter}",
        *(f"data.normalization.{key}={_hydra_value(value)}" for key, value in norm.items()),
    ]  # fmt: skip


def _hydra_value(value: Any) -> str:
    """A scalar or list as Hydra override text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra_value(item) for item in value) + "]"
    return str(value)


def train_overrides(options: FinetuneOptions, work: Path) -> list[str]:
    """The ``cellcount.train`` overrides of a fine-tuning run in ``work``."""
    seconds = max(1, round(options.minutes * 60))
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return [
        "data=points", f"data.root={work / 'data'}", f"data.val_fraction={options.held_out}",
        "data.test_fraction=0.0", f"init_ckpt={options.base}", f"seed={options.seed}",
        f"paths.output_dir={work}", f"paths.run_dir={work / 'run'}", "logger=csv",
        "test=false", "trainer.max_epochs=10000", f"+trainer.max_time={budget}",
        f"trainer.enable_progress_bar={str(options.progress).lower()}",
        "callbacks.threshold_sweep.every_n_epochs=0",
    ]  # fmt: skip


def finetune(options: FinetuneOptions) -> dict[str, Any]:
    """Fine-tune, write the checkpoint, card, report and overlay; return the card."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from cellcount.data.splits import Split
    from cellcount.inference.checkpoints import load_module, save_checkpoint
    from cellcount.inference.pretrained import resolve_model
    from cellcount.training.train import train

    work = options.out.with_name(f"{options.out.stem}_finetune")
    count = prepare_dataset(options, work / "data")
    base = load_module(resolve_model(options.base), "cpu")
    overrides = [*train_overrides(options, work), *base_overrides(base)]
    GlobalHydra.instance().clear()
    with initialize_config_module("cellcount.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    results = train(cfg)
    tuned = load_module(results["best_checkpoint"], "cpu")
    save_checkpoint(tuned, options.out)
    held_out = Split.load(work / "run" / "split.json").val
    scores = before_after(options, work / "data", held_out, base, tuned)
    card = {
        "base": options.base, "images": count, "held_out_images": held_out,
        "minutes": options.minutes, "epochs": results.get("epochs"),
        "threshold": results.get("threshold"), "count_threshold": results.get("count_threshold"),
        "count_split": results.get("count_split"), "normalization": tuned.normalization.as_dict(),
        "held_out_scores": scores, "run_dir": str(work / "run"),
    }  # fmt: skip
    options.out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    options.out.with_suffix(".report.md").write_text(report_markdown(card))
    return card


def before_after(
    options: FinetuneOptions, data: Path, names: list[str], base: Any, tuned: Any
) -> dict[str, dict[str, float]]:
    """Scores of the base and the fine-tuned model on the held-out images, against the
    points (sizes estimated per image, as ``cellcount count`` runs); writes an overlay
    of the first held-out image as counted by the fine-tuned model."""
    from cellcount.counter import Counter
    from cellcount.evaluation.overlays import render_overlay, save_png
    from cellcount.evaluation.truth_points import score_labels, summary

    models = {"before": Counter(base), "after": Counter(tuned)}
    images = {path.stem: path for path in sorted((data / "images").iterdir())}
    scores = {}
    for label, counter in models.items():
        rows = []
        for name in names:
            result = counter.count(images[name])
            rows.append(score_labels(result.labels, data / "points", name, result.cell_diameter))
            if label == "after" and name == names[0]:
                picture = render_overlay(result.image, result.labels, numbers=True)
                save_png(picture, options.out.with_suffix(".overlay.png"))
        scores[label] = summary(rows)
    return scores


def report_markdown(card: dict[str, Any]) -> str:
    """The before/after table of a fine-tuning run's card."""
    scores = card["held_out_scores"]
    lines = [
        f"# Fine-tuning report\n\nStarted from `{card['base']}`; {card['images']} annotated "
        f"images, held out: {', '.join(card['held_out_images'])}; {card['minutes']} minutes, "
        f"{card['epochs']} epochs. Scores on the held-out images against their points:\n",
        "| model | " + " | ".join(TABLE_KEYS) + " |",
        "|---|" + "---:|" * len(TABLE_KEYS),
    ]
    for label, name in (("before", card["base"]), ("after", "fine-tuned")):
        row = scores[label]
        lines.append(f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}"
                                                for k in TABLE_KEYS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
