"""Section 8: is bf16 inference accurate enough to be the CPU default?

The rule (from the issue): bf16 may become the default only if, on the
validation images, its F1 stays within 0.005 of fp32's and its counting MAE
within 1 % of fp32's MAE. The shipped pretrained model
(``cellcount/resources/models/c_resunet_fluo.ckpt``) counts, once in fp32 and
once under bf16 autocast (``Counter(precision=...)``):

* the DSB 2018 fluorescence images named in its model card's ``val_images``
  (``c_resunet_fluo.json`` next to the checkpoint), at the model's own cell
  size, matched within 17.5 px (1.25 x the 14 px nuclei diameter);
* the 4 real FNC yellow samples, counted as 40 px cells, matched within 50 px
  (the paper's rule).

Each image is counted in both precisions back to back; besides the scores,
the two probability maps are compared pixel by pixel.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from benchmarks.bench_common import (
    DSB_ROOT,
    FNC_CELL_DIAMETER,
    FNC_RADIUS,
    FNC_YELLOW,
    REPO,
    Result,
    progress,
)
from cellcount.counter import Counter
from cellcount.data.io import Sample, find_samples, load_pair
from cellcount.evaluation.matching import ImageMatch
from cellcount.evaluation.metrics import summarize
from cellcount.evaluation.scoring import score_image
from cellcount.inference.pretrained import PRETRAINED, pretrained_path

DSB_RADIUS = 17.5  # px: 1.25 x the 14 px DSB nuclei diameter (conf/data/dsb.yaml)
PRECISIONS = ("fp32", "bf16")
MAX_DELTA_F1 = 0.005  # absolute
MAX_DELTA_MAE = 0.01  # fraction of the fp32 MAE


@dataclass(frozen=True)
class Dataset:
    """Images counted in both precisions, with how they are counted and matched."""

    name: str
    samples: list[Sample]
    cell_diameter: float | None  # None: the model's own
    radius: float
    about: str


class _Recording(Counter):
    """A Counter that keeps the probability map of its last image (for the comparison)."""

    last: np.ndarray | None = None

    def probabilities(self, image: np.ndarray, cell_diameter: float | None = None) -> np.ndarray:
        """The probability map, kept as ``last``."""
        self.last = super().probabilities(image, cell_diameter)
        return self.last


def shipped_model() -> Path:
    """The shipped pretrained checkpoint; a clear error when it is not there yet."""
    try:
        return pretrained_path("pretrained")
    except FileNotFoundError:
        expected = REPO / "cellcount" / "resources" / "models" / PRETRAINED["pretrained"][0]
        raise FileNotFoundError(
            f"the shipped pretrained model {expected} does not exist (yet). Section 8 "
            "compares its fp32 and bf16 counts: train it with `make pretrained` "
            "(scripts/make_pretrained.py, which also writes its model card .json), or "
            "pass another checkpoint with `--precision-model CKPT` (its model card, CKPT "
            "with the suffix .json and a list `val_images`, must lie next to it)."
        ) from None


def validation_names(model: Path) -> list[str]:
    """``val_images`` of the model card next to the checkpoint (``<stem>.json``)."""
    card = model.with_suffix(".json")
    try:
        names = json.loads(card.read_text())["val_images"]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no model card {card} next to {model}: section 8 needs its `val_images` "
            "(scripts/make_pretrained.py writes it)."
        ) from None
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"model card {card} has no list `val_images` ({err!r})") from err
    return [str(name) for name in names]


def default_datasets(
    model: Path,
    dsb_root: Path = DSB_ROOT,
    fnc_root: Path = FNC_YELLOW,
    dsb_limit: int | None = None,
    fnc_limit: int | None = None,
) -> list[Dataset]:
    """The DSB validation images of ``model``'s card and the FNC yellow samples."""
    wanted = set(validation_names(model))
    dsb = [s for s in find_samples(dsb_root, "instances") if s.name in wanted]
    if not dsb:
        raise ValueError(
            f"none of the {len(wanted)} validation images of {model.with_suffix('.json')} "
            f"is in {dsb_root}"
        )
    fnc = find_samples(fnc_root, "folder")
    return [
        Dataset(
            "DSB 2018 validation",
            dsb[:dsb_limit],
            None,
            DSB_RADIUS,
            f"the {len(dsb)} images of the model card's `val_images` found in `{dsb_root.name}`"
            + (f" (first {dsb_limit} in this run)" if dsb_limit and dsb_limit < len(dsb) else "")
            + f", at the model's own cell size, matched within {DSB_RADIUS:g} px",
        ),
        Dataset(
            "FNC yellow samples",
            fnc[:fnc_limit],
            FNC_CELL_DIAMETER,
            FNC_RADIUS,
            f"the {len(fnc)} real samples in `{_shown(fnc_root)}`"
            + (f" (first {fnc_limit} in this run)" if fnc_limit and fnc_limit < len(fnc) else "")
            + f", counted as {FNC_CELL_DIAMETER:g} px cells, matched within {FNC_RADIUS:g} px",
        ),
    ]


def within_tolerance(f1: dict[str, float], mae: dict[str, float]) -> bool:
    """The issue's rule: |ΔF1| <= 0.005 and |ΔMAE| <= 1 % of the fp32 MAE."""
    delta_f1 = abs(f1["bf16"] - f1["fp32"])
    delta_mae = abs(mae["bf16"] - mae["fp32"])
    return delta_f1 <= MAX_DELTA_F1 + 1e-12 and delta_mae <= MAX_DELTA_MAE * mae["fp32"] + 1e-12


def compare(model: Path, dataset: Dataset) -> dict[str, Any]:
    """Count every image of ``dataset`` in fp32 and bf16; scores, deltas and the verdict."""
    counters = {
        p: cast(
            _Recording,
            _Recording.from_checkpoint(
                model, "cpu", precision=p, cell_diameter=dataset.cell_diameter
            ),
        )
        for p in PRECISIONS
    }
    matches: dict[str, list[ImageMatch]] = {p: [] for p in PRECISIONS}
    counts: dict[str, list[int]] = {p: [] for p in PRECISIONS}
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    max_diff: list[float] = []
    flipped: list[float] = []
    threshold = counters["fp32"].threshold
    for sample in dataset.samples:
        image, truth = load_pair(sample)
        probs = {}
        for p in PRECISIONS:
            start = time.perf_counter()
            result = counters[p].count(image)
            seconds[p].append(time.perf_counter() - start)
            probs[p] = counters[p].last
            counts[p].append(result.count)
            matches[p].append(score_image(result.labels, truth, dataset.radius).match)
        a, b = probs["fp32"], probs["bf16"]
        assert a is not None and b is not None
        max_diff.append(float(np.abs(a - b).max()))
        flipped.append(float(np.mean((a > threshold) != (b > threshold))))
    scores = {p: summarize(matches[p]) for p in PRECISIONS}
    f1 = {p: scores[p]["f1"] for p in PRECISIONS}
    mae = {p: scores[p]["mae"] for p in PRECISIONS}
    changed = [n for n, x, y in zip(dataset.samples, counts["fp32"], counts["bf16"], strict=True)
               if x != y]  # fmt: skip
    return {
        "images": len(dataset.samples),
        "scores": scores,
        "f1": f1,
        "mae": mae,
        "delta_f1": abs(f1["bf16"] - f1["fp32"]),
        "delta_mae": mae["bf16"] - mae["fp32"],
        "delta_mae_pct": _percent(mae["bf16"] - mae["fp32"], mae["fp32"]),
        "counts": counts,
        "count_changed": [s.name for s in changed],
        "count_abs_diff": int(np.abs(np.subtract(counts["bf16"], counts["fp32"])).sum()),
        "seconds": seconds,
        "max_abs_prob_diff": max(max_diff, default=0.0),
        "flipped_pixel_share": float(np.mean(flipped)) if flipped else 0.0,
        "threshold": threshold,
        "verdict": within_tolerance(f1, mae),
    }


def _percent(delta: float, base: float) -> float:
    """``delta`` as a percentage of ``base`` (inf when base is 0 and delta is not)."""
    if base > 0:
        return 100 * delta / base
    return 0.0 if delta == 0 else float("inf")


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it."""
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return str(path)


def run(
    model: Path | None = None,
    datasets: list[Dataset] | None = None,
    dsb_limit: int | None = None,
    fnc_limit: int | None = None,
) -> Result:
    """Compare fp32 and bf16 counting of ``model`` (default: the shipped one).

    Returns:
        ``model`` (as shown), ``shipped``, the tolerance (``max_delta_f1``,
        ``max_delta_mae``), ``datasets``: name -> :func:`compare`'s result plus
        ``about``, and ``verdict``: bf16 within tolerance on every dataset.
    """
    shipped = model is None
    model = shipped_model() if model is None else Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"checkpoint {model} does not exist")
    if datasets is None:
        datasets = default_datasets(model, dsb_limit=dsb_limit, fnc_limit=fnc_limit)
    results: dict[str, Result] = {}
    for dataset in datasets:
        progress(f"precision: {dataset.name}, {len(dataset.samples)} images x {PRECISIONS}")
        result = results[dataset.name] = {**compare(model, dataset), "about": dataset.about}
        f1, mae = result["f1"], result["mae"]
        progress(
            f"precision {dataset.name}: F1 {f1['fp32']:.4f} / {f1['bf16']:.4f}, "
            f"MAE {mae['fp32']:.3f} / {mae['bf16']:.3f}, "
            f"{len(result['count_changed'])} counts differ, within: {result['verdict']}"
        )
    return {
        "model": _shown(model),
        "shipped": shipped,
        "max_delta_f1": MAX_DELTA_F1,
        "max_delta_mae": MAX_DELTA_MAE,
        "datasets": results,
        "verdict": all(d["verdict"] for d in results.values()),
    }
