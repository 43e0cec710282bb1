"""Fine-tune a counting model on a lab's own point-annotated images, within a time budget.

:func:`finetune` pairs each image with its annotation, lays them out as a
``data=points`` dataset in a work folder, trains from the base model's weights
(``init_ckpt``) with the usual pipeline, writes the checkpoint, and scores the base
and the fine-tuned model on images the fine-tuned model did not train on
(:func:`held_out_rows`): a model card (JSON), a report (Markdown) and an overlay.

With enough images, a held-out share of them is the validation split on which both
thresholds are chosen and the scores are taken. With few (under :data:`CV_BELOW`, or
``folds`` asked for), one held-out image says little, so it cross-validates: each of
k folds trains on the other images and is scored on its own; the checkpoint is then
trained on all images, at most the folds' median epochs, and takes the median of the
folds' thresholds. The k + 1 runs share one deadline (:func:`run_minutes`). Each run is
its own folder, so an interrupted fine-tuning goes on with the runs not yet finished.
"""

from __future__ import annotations

import json
import shutil
import time
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
CV_BELOW = 5  # fewer dataset images than this: leave-one-out cross-validation
ScoreRows = dict[str, list[dict[str, Any]]]  # "before"/"after" -> one score row per image


@dataclass(frozen=True)
class FinetuneOptions:
    """What :func:`finetune` needs.

    Attributes:
        images: (path, name) of every annotated image.
        points: the folder of annotations (``<name>.csv`` etc.).
        out: the checkpoint to write (``.ckpt``); its card, report and overlay go beside it.
        base: checkpoint or shipped model name to start from.
        minutes: training time budget (> 0).
        held_out: share of the images kept for choosing thresholds and the report (0, 1),
            when it does not cross-validate.
        seed: seed of the split and folds, the weights' order of visits and augmentation.
        progress: show Lightning's progress bar.
        folds: 0 chooses (leave-one-out under :data:`CV_BELOW` images, else a held-out
            share); 1 a held-out share; k >= 2 k-fold cross-validation (at most one
            fold per image).
    """

    images: list[tuple[Path, str]]
    points: Path
    out: Path
    base: str = "pretrained"
    minutes: float = 10.0
    held_out: float = 0.3
    seed: int = 0
    progress: bool = True
    folds: int = 0


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


def train_overrides(options: FinetuneOptions, work: Path, run: Path, minutes: float,
                    epochs: int | None = None) -> list[str]:  # fmt: skip
    """The ``cellcount.train`` overrides of a fine-tuning run in ``run`` (data in ``work``)
    that trains for ``minutes`` or ``epochs`` (None: no cap), whichever ends first."""
    seconds = max(1, round(minutes * 60))
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return [
        "data=points", f"data.root={work / 'data'}", f"data.val_fraction={options.held_out}",
        "data.test_fraction=0.0", f"init_ckpt={options.base}", f"seed={options.seed}",
        f"paths.output_dir={work}", f"paths.run_dir={run}", "logger=csv",
        "test=false", f"trainer.max_epochs={epochs or 10000}", f"+trainer.max_time={budget}",
        f"trainer.enable_progress_bar={str(options.progress).lower()}",
        "callbacks.threshold_sweep.every_n_epochs=0",
    ]  # fmt: skip


def fold_count(options: FinetuneOptions, images: int) -> int:
    """Cross-validation folds for a dataset of ``images`` (1: a held-out share instead)."""
    if options.folds:
        return max(1, min(options.folds, images))
    return images if 2 <= images < CV_BELOW else 1


def folds_of(names: list[str], folds: int, seed: int) -> list[list[str]]:
    """``names`` dealt into ``folds`` groups after a seeded shuffle (sorted in each)."""
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    return [sorted(order[k::folds]) for k in range(folds)]


@dataclass(frozen=True)
class Run:
    """One training run of a fine-tuning: its results record and its best model."""

    results: dict[str, Any]
    model: Any  # CellSegModule


def train_run(options: FinetuneOptions, work: Path, run: Path, minutes: float, base: Any,
              split: Any = None, epochs: int | None = None) -> Run:  # fmt: skip
    """Train one run in ``run`` (on ``split`` when given, else the seeded held-out share).

    With ``epochs`` (the final run of a cross-validation) it trains at most that many
    epochs and chooses no thresholds: the folds chose them."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from cellcount.inference.checkpoints import load_module
    from cellcount.training.train import train

    if split is not None and not (run / "split.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        split.save(run / "split.json")
    overrides = [*train_overrides(options, work, run, minutes, epochs), *base_overrides(base)]
    if epochs is not None:
        overrides.append("~callbacks.threshold_sweep")
    GlobalHydra.instance().clear()
    with initialize_config_module("cellcount.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    results = train(cfg)
    return Run(results, load_module(results["best_checkpoint"], "cpu"))


def run_minutes(deadline: float, shares: list[float]) -> float:
    """Training minutes for the next of the runs that share a ``deadline``
    (``time.monotonic()`` seconds); ``shares``: this run's and the later runs' parts of the
    whole budget (minutes, in proportion to their training images, so that every run
    trains about as many epochs). It gets the same proportion of the time left, so what
    earlier runs spent around their training (setup, threshold sweeps, scoring) comes off
    the later ones; never under a quarter of its share, so every run trains."""
    left = (deadline - time.monotonic()) / 60
    return max(left * shares[0] / sum(shares), shares[0] / 4)


def cross_validate(options: FinetuneOptions, work: Path, base: Any, folds: int
                   ) -> tuple[Run, list[dict[str, Any]], ScoreRows]:  # fmt: skip
    """k fold runs, each scored on its own images, then a run on all images that takes
    the median of the folds' thresholds and their most common split profile.

    Returns:
        The final run, each fold's held-out names and choices, the pooled score rows.
    """
    from cellcount.data.splits import Split

    names = sorted(path.stem for path in (work / "data" / "images").iterdir())
    groups = folds_of(names, folds, options.seed)
    images = [len(names) - len(held) for held in groups] + [len(names)]
    shares = [options.minutes * count / sum(images) for count in images]
    deadline = time.monotonic() + options.minutes * 60
    rows: ScoreRows = {"before": [], "after": []}
    chosen = []
    for k, held in enumerate(groups):
        split = Split(train=sorted(set(names) - set(held)), val=held, test=[])
        minutes = run_minutes(deadline, shares[k:])
        fold = train_run(options, work, work / f"fold{k + 1}", minutes, base, split)
        for label, scored in held_out_rows(options, work / "data", held, base, fold.model,
                                           overlay=k == 0).items():  # fmt: skip
            rows[label] += scored
        chosen.append({"held_out": held, **{key: fold.results.get(key) for key in
                       ("epochs", "threshold", "count_threshold", "count_split")}})  # fmt: skip
    epochs = max(1, round(float(np.median([c["epochs"] for c in chosen]))))
    minutes = run_minutes(deadline, shares[-1:])
    final = train_run(options, work, work / "run", minutes, base, Split(names, names, []), epochs)
    final.model.threshold.fill_(float(np.median([c["threshold"] for c in chosen])))
    final.model.hparams["count_threshold"] = float(np.median([c["count_threshold"]
                                                              for c in chosen]))  # fmt: skip
    profiles = [json.dumps(c["count_split"], sort_keys=True) for c in chosen]
    final.model.hparams["count_split"] = json.loads(max(profiles, key=profiles.count))
    return final, chosen, rows


def finetune(options: FinetuneOptions) -> dict[str, Any]:
    """Fine-tune, write the checkpoint, card, report and overlay; return the card."""
    from cellcount.data.splits import Split
    from cellcount.evaluation.truth_points import summary
    from cellcount.inference.checkpoints import load_module, save_checkpoint
    from cellcount.inference.pretrained import resolve_model

    work = options.out.with_name(f"{options.out.stem}_finetune")
    count = prepare_dataset(options, work / "data")
    base = load_module(resolve_model(options.base), "cpu")
    folds = fold_count(options, len(list((work / "data" / "images").iterdir())))
    if folds == 1:
        final = train_run(options, work, work / "run", options.minutes, base)
        held_out = Split.load(work / "run" / "split.json").val
        rows = held_out_rows(options, work / "data", held_out, base, final.model)
        chosen = [{"held_out": held_out}]
    else:
        final, chosen, rows = cross_validate(options, work, base, folds)
    save_checkpoint(final.model, options.out)
    hparams = final.model.hparams
    card = {
        "base": options.base, "images": count, "folds": folds,
        "held_out_images": sorted(name for fold in chosen for name in fold["held_out"]),
        "fold_choices": chosen if folds > 1 else [],
        "minutes": options.minutes, "epochs": final.results.get("epochs"),
        "threshold": float(final.model.threshold), "count_threshold": hparams["count_threshold"],
        "count_split": hparams["count_split"],
        "normalization": final.model.normalization.as_dict(),
        "size_model": final.results.get("size_model"),
        "held_out_scores": {label: summary(scored) for label, scored in rows.items()},
        "run_dir": str(work / "run"),
    }  # fmt: skip
    card["verdict"] = verdict(card["held_out_scores"], options.base)
    options.out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    options.out.with_suffix(".report.md").write_text(report_markdown(card))
    return card


def held_out_rows(options: FinetuneOptions, data: Path, names: list[str], base: Any, tuned: Any,
                  overlay: bool = True) -> ScoreRows:  # fmt: skip
    """Per-image score rows of the base ("before") and the fine-tuned model ("after") on
    held-out images, against their points (sizes estimated per image, as ``cellcount
    count`` runs); with ``overlay``, writes the first image as the fine-tuned model
    counts it."""
    from cellcount.counter import Counter
    from cellcount.evaluation.overlays import render_overlay, save_png
    from cellcount.evaluation.truth_points import score_labels

    models = {"before": Counter(base), "after": Counter(tuned)}
    images = {path.stem: path for path in sorted((data / "images").iterdir())}
    rows: ScoreRows = {}
    for label, counter in models.items():
        rows[label] = []
        for name in names:
            result = counter.count(images[name])
            rows[label].append(score_labels(result.labels, data / "points", name,
                                            result.cell_diameter))  # fmt: skip
            if overlay and label == "after" and name == names[0]:
                picture = render_overlay(result.image, result.labels, numbers=True)
                save_png(picture, options.out.with_suffix(".overlay.png"))
    return rows


def verdict(scores: dict[str, dict[str, float]], base: str) -> dict[str, Any]:
    """Whether the fine-tuned model ("after") beat its base ("before") on the held-out
    images: ``better`` True (higher F1, MAE not higher), False (lower F1, MAE not
    lower) or None (mixed, or nothing scored), and a sentence that says so."""
    before, after = scores["before"], scores["after"]
    if not before.get("n_images") or not after.get("n_images"):
        return {"better": None, "text": "No held-out image had points to score."}
    figures = (f"F1 {after['f1']:.3f} against {before['f1']:.3f}, MAE {after['mae']:.2f} "
               f"against {before['mae']:.2f}")  # fmt: skip
    if after["f1"] > before["f1"] and after["mae"] <= before["mae"]:
        return {"better": True, "text": f"The fine-tuned model beats `{base}` on the "
                                        f"held-out images ({figures})."}  # fmt: skip
    if after["f1"] < before["f1"] and after["mae"] >= before["mae"]:
        return {"better": False, "text": (
            f"The fine-tuned model is WORSE than `{base}` on the held-out images "
            f"({figures}): keep counting with `{base}`, or check the points and add "
            "annotated images before fine-tuning again.")}  # fmt: skip
    return {"better": None, "text": f"Mixed result on the held-out images ({figures}): "
                                    "look at the overlay before choosing a model."}  # fmt: skip


def report_markdown(card: dict[str, Any]) -> str:
    """The before/after table of a fine-tuning run's card."""
    scores = card["held_out_scores"]
    if card["folds"] > 1:
        how = (f"{card['folds']}-fold cross-validation: each image scored by the fold run "
               "that did not train on it; the checkpoint trained on all images and takes the "
               "median of the folds' thresholds")  # fmt: skip
    else:
        how = f"held out: {', '.join(card['held_out_images'])}"
    lines = [
        f"# Fine-tuning report\n\nStarted from `{card['base']}`; {card['images']} annotated "
        f"images; {how}; {card['minutes']} minutes, {card['epochs']} epochs (final run). "
        "Scores on held-out images against their points:\n",
        "| model | " + " | ".join(TABLE_KEYS) + " |",
        "|---|" + "---:|" * len(TABLE_KEYS),
    ]
    for label, name in (("before", card["base"]), ("after", "fine-tuned")):
        row = scores[label]
        lines.append(f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}"
                                                for k in TABLE_KEYS) + " |")  # fmt: skip
    return "\n".join(lines) + f"\n\n{card['verdict']['text']}\n"
