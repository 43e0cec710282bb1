"""Paper-style report of a training sweep: Table 1 and the Fig. 5 (left) F1 curves.

Reads every job folder under a directory (one per ``model x ablation x seed``,
as written by ``python -m cellcount.train sweep=ablation_grid``) and writes:

* ``table1.md``: test metrics per (model, ablation), ``mean ± std`` over seeds,
  the best value of each column in bold, then the jobs that are missing or
  failed;
* ``table1.csv``: the same numbers unformatted, ``*_mean`` / ``*_std`` columns;
* ``f1_vs_threshold.png``: the mean validation F1-vs-threshold curve of each
  model over seeds (one ablation, ``full`` by default) with a ±std band and the
  mean chosen threshold marked.

Inputs used from a job folder:

* ``results.json``: ``status`` (only ``"finished"`` counts), ``model``,
  ``ablation``, ``seed``, ``parameters``, ``threshold`` and ``test`` (a dict
  with ``accuracy, precision, recall, f1, mae, medae, mpe``). Other keys are
  kept but unused.
* ``threshold_sweep.csv``: columns ``threshold`` and ``f1`` (any others ignored).

Conventions:

* std is the sample std (``ddof=1``) over seeds; with a single seed it is NaN
  (no spread estimate), shown as the mean alone in Markdown and ``nan`` in CSV.
  NaN metrics of a run propagate into its group's mean.
* Row order follows the paper: models ``unet, small_unet, resunet, c_resunet``
  then others alphabetically; ablations ``full`` (full design), ``no_ao``
  (weight maps only), ``no_wm`` (artifact oversampling only), then others.
* Markdown precision: 3 decimals for accuracy/precision/recall/F1 and the
  threshold, 2 for MAE/MedAE, MPE as a percentage with 1 decimal (our ``mpe``
  is the signed fraction ``(n_pred - n_true) / n_true``, so -0.051 is -5.1 %).
  Parameters as ``13.40M`` / ``887k``.
* Bold: the best mean per column over all rows, compared at the displayed
  precision (ties are all bold): highest scores, lowest MAE/MedAE, lowest
  ``|MPE|``.

This module does not import torch, so the CLI starts fast.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellcount.runtime.files import atomic_path, atomic_write_text, write_csv

RESULTS = "results.json"
SWEEP_CSV = "threshold_sweep.csv"
# Files/folders that make a directory a job folder (Hydra writes ``.hydra`` first).
JOB_MARKERS = (RESULTS, "run_info.json", ".hydra", SWEEP_CSV)
METRICS = ("accuracy", "precision", "recall", "f1", "mae", "medae", "mpe")
SCORES = ("accuracy", "precision", "recall", "f1")  # higher is better
MODEL_ORDER = ("unet", "small_unet", "resunet", "c_resunet")
ABLATION_ORDER = ("full", "no_ao", "no_wm")  # paper: full design, WM only, AO only
HEADERS = {
    "accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
    "mae": "MAE", "medae": "MedAE", "mpe": "MPE (%)",
}  # fmt: skip
DECIMALS = {"mae": 2, "medae": 2, "mpe": 1}  # others: 3
SCALE = {"mpe": 100.0}  # displayed as a percentage
OUTPUT_NAMES = {"markdown": "table1.md", "csv": "table1.csv", "figure": "f1_vs_threshold.png"}
TRAIN_HINT = "python -m cellcount.train sweep=ablation_grid"


# --------------------------------------------------------------------------- collecting


def job_folders(root: Path) -> list[Path]:
    """Job folders under ``root`` (itself included), sorted.

    A job folder holds one of :data:`JOB_MARKERS`; the walk does not descend
    into job folders (jobs do not nest) nor into hidden folders.
    """
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        names = set(dirs) | set(files)
        if any(marker in names for marker in JOB_MARKERS):
            found.append(Path(current))
            dirs.clear()
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _folder_overrides(folder: Path) -> dict[str, str]:
    """``key=value`` pairs of a sweep job's folder name (``ablation=full,model=unet,seed=1``)."""
    pairs = (part.split("=", 1) for part in folder.name.split(",") if "=" in part)
    return {key: value for key, value in pairs}


def _problem(folder: Path, data: dict[str, Any] | None) -> str | None:
    """Why a job folder does not count as finished, or None when it does."""
    if data is None:
        exists = (folder / RESULTS).exists()
        return f"unreadable {RESULTS}" if exists else f"no {RESULTS} (running or crashed)"
    status = data.get("status")
    if status != "finished":
        error = f": {data['error']}" if data.get("error") else ""
        return f"status {status!r}{error}"
    if not isinstance(data.get("test"), dict):
        return "finished without test metrics"
    missing = [key for key in ("model", "ablation", "seed") if key not in data]
    return f"results.json lacks {', '.join(missing)}" if missing else None


def collect_jobs(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Finished and unfinished jobs under ``root``.

    Returns:
        ``(finished, missing)``. ``finished``: one dict per finished job, the
        content of its ``results.json`` plus ``folder`` (Path). ``missing``: one
        dict per other job folder with ``folder`` (Path), ``reason`` (str) and
        ``model``, ``ablation``, ``seed`` (from results.json, else the folder
        name's ``key=value`` pairs, else None).
    """
    finished: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for folder in job_folders(Path(root)):
        data = _read_json(folder / RESULTS)
        reason = _problem(folder, data)
        if reason is None and data is not None:
            finished.append({**data, "folder": folder})
            continue
        known = {**_folder_overrides(folder), **(data or {})}
        missing.append(
            {"folder": folder, "reason": reason}
            | {key: known.get(key) for key in ("model", "ablation", "seed")}
        )
    return finished, missing


def collect_results(root: Path) -> list[dict[str, Any]]:
    """One dict per finished job under ``root``: its ``results.json`` plus ``folder``."""
    return collect_jobs(root)[0]


# --------------------------------------------------------------------------- summarising


def _rank(name: str, order: Sequence[str]) -> tuple[int, str]:
    """Sort key: position in ``order``, unknown names after, alphabetically."""
    return (order.index(name), "") if name in order else (len(order), name)


def _row_key(row: dict[str, Any]) -> tuple[tuple[int, str], tuple[int, str]]:
    return _rank(str(row["model"]), MODEL_ORDER), _rank(str(row["ablation"]), ABLATION_ORDER)


def _num(value: Any) -> float:
    """``value`` as float; NaN for None or anything non-numeric."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of ``values``; std is NaN for fewer than 2 values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size >= 2 else math.nan
    return float(array.mean()), std


def _group(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((str(result["model"]), str(result["ablation"])), []).append(result)
    return groups


def _summarise_group(model: str, ablation: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda run: (_num(run["seed"]), str(run["seed"])))
    row: dict[str, Any] = {
        "model": model,
        "ablation": ablation,
        "n_seeds": len(runs),
        "seeds": [run["seed"] for run in runs],
        "parameters": runs[0].get("parameters"),
    }
    row["threshold_mean"], row["threshold_std"] = mean_std(
        [_num(run.get("threshold")) for run in runs]
    )
    for metric in METRICS:
        row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(
            [_num(run["test"].get(metric)) for run in runs]
        )
    return row


def summarise(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate finished runs per (model, ablation), in the paper's row order.

    Args:
        results: dicts from :func:`collect_results`.

    Returns:
        One dict per group: ``model``, ``ablation`` (str); ``n_seeds`` (number of
        runs); ``seeds`` (list, sorted); ``parameters`` (int or None, from the
        lowest seed: identical across seeds of a model); ``threshold_mean``,
        ``threshold_std``; and ``<metric>_mean``, ``<metric>_std`` for each of
        :data:`METRICS` (test set). std: ddof=1, NaN with one seed.
    """
    rows = [_summarise_group(m, a, runs) for (m, a), runs in _group(results).items()]
    return sorted(rows, key=_row_key)


# --------------------------------------------------------------------------- Markdown


def format_params(count: Any) -> str:
    """``13.40M``, ``887k`` or the plain number; ``–`` when unknown."""
    value = _num(count)
    if math.isnan(value):
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k" if value >= 1e3 else f"{value:.0f}"


def format_mean_std(mean: float, std: float, decimals: int) -> str:
    """``mean ± std`` at ``decimals``; the mean alone when std is NaN; ``–`` for NaN mean."""
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _shown(row: dict[str, Any], metric: str) -> float:
    """The mean of ``metric`` as displayed (scaled and rounded), for best-value ties."""
    value = row[f"{metric}_mean"] * SCALE.get(metric, 1.0)
    return round(value, DECIMALS.get(metric, 3))


def best_values(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Best displayed mean per metric: max for scores, min for MAE/MedAE, min |MPE|.

    Metrics with no finite mean are left out.
    """
    best: dict[str, float] = {}
    for metric in METRICS:
        shown = [_shown(row, metric) for row in rows if not math.isnan(row[f"{metric}_mean"])]
        if not shown:
            continue
        if metric in SCORES:
            best[metric] = max(shown)
        else:
            best[metric] = min(shown, key=abs)
    return best


def _metric_cell(row: dict[str, Any], metric: str, best: dict[str, float]) -> str:
    scale, decimals = SCALE.get(metric, 1.0), DECIMALS.get(metric, 3)
    text = format_mean_std(row[f"{metric}_mean"] * scale, row[f"{metric}_std"] * scale, decimals)
    is_best = metric in best and not math.isnan(row[f"{metric}_mean"])
    if is_best and abs(_shown(row, metric)) == abs(best[metric]):
        return f"**{text}**"
    return text


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown Table 1 from :func:`summarise` rows (header only when empty).

    Columns: model | ablation | seeds | params | threshold | accuracy | precision
    | recall | F1 | MAE | MedAE | MPE (%); values ``mean ± std``, best in bold.
    """
    header = ["model", "ablation", "seeds", "params", "threshold"]
    header += [HEADERS[m] for m in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    best = best_values(rows)
    for row in rows:
        cells = [
            str(row["model"]),
            str(row["ablation"]),
            str(row["n_seeds"]),
            format_params(row["parameters"]),
            format_mean_std(row["threshold_mean"], row["threshold_std"], 3),
        ]
        cells += [_metric_cell(row, metric, best) for metric in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _job_name(job: dict[str, Any]) -> str:
    parts = [
        f"{key}={job[key]}" for key in ("model", "ablation", "seed") if job.get(key) is not None
    ]
    return ", ".join(parts) or "?"


def missing_markdown(missing: Sequence[dict[str, Any]], root: Path | None = None) -> str:
    """Markdown list of unfinished jobs (from :func:`collect_jobs`); '' when none."""
    if not missing:
        return ""
    lines = [f"Missing or failed jobs ({len(missing)}):", ""]
    for job in missing:
        folder = Path(job["folder"])
        shown = folder.relative_to(root) if root and folder.is_relative_to(root) else folder
        lines.append(f"- `{shown}` ({_job_name(job)}): {job['reason']}")
    return "\n".join(lines) + "\n"


def _duplicate_note(rows: Sequence[dict[str, Any]]) -> str:
    """A warning line per group whose seed list has repeats ('' when none)."""
    notes = [
        f"- {row['model']} / {row['ablation']}: seeds {row['seeds']} (repeated seeds: "
        "several sweeps under one folder?)"
        for row in rows
        if len({str(seed) for seed in row["seeds"]}) < len(row["seeds"])
    ]
    return "Warning:\n\n" + "\n".join(notes) + "\n" if notes else ""


def report_markdown(
    rows: Sequence[dict[str, Any]], missing: Sequence[dict[str, Any]], root: Path | None = None
) -> str:
    """Full ``table1.md`` text: title, conventions, table, warnings, missing jobs."""
    intro = (
        "# Table 1: test metrics at the chosen threshold\n\n"
        "mean ± std over seeds (sample std; the mean alone for one seed). MPE in %, "
        "signed (negative: under-counting). Best per column in bold (highest score, "
        "lowest MAE/MedAE, lowest |MPE|).\n"
    )
    parts = [intro, table_markdown(rows), _duplicate_note(rows), missing_markdown(missing, root)]
    return "\n".join(part for part in parts if part)


def summary_csv_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of ``table1.csv``: summary rows with ``seeds`` joined by ``;``."""
    columns = ["model", "ablation", "n_seeds", "seeds", "parameters"]
    columns += ["threshold_mean", "threshold_std"]
    columns += [f"{metric}_{stat}" for metric in METRICS for stat in ("mean", "std")]
    flat = [{**row, "seeds": ";".join(str(s) for s in row["seeds"])} for row in rows]
    return columns, [{key: row[key] for key in columns} for row in flat]


# --------------------------------------------------------------------------- F1 curves


def read_sweep(folder: Path) -> dict[float, float] | None:
    """``{threshold: f1}`` from a job's ``threshold_sweep.csv``; None when absent/unreadable.

    Thresholds are rounded to 6 decimals so seeds' grids line up.
    """
    try:
        with (Path(folder) / SWEEP_CSV).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {round(float(row["threshold"]), 6): float(row["f1"]) for row in rows}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def mean_curves(
    results: Iterable[dict[str, Any]], ablation: str = "full"
) -> dict[str, dict[str, Any]]:
    """Mean validation F1-vs-threshold curve per model, for one ablation.

    Only thresholds present in every seed's sweep are kept.

    Returns:
        ``{model: {"threshold": (N,), "mean": (N,), "std": (N,) (NaN for one
        seed), "n": seeds with a sweep}}`` in the paper's model order; models
        without any readable sweep are left out.
    """
    curves: dict[str, dict[str, Any]] = {}
    groups = _group(r for r in results if str(r["ablation"]) == ablation)
    for (model, _), runs in sorted(groups.items(), key=lambda kv: _rank(kv[0][0], MODEL_ORDER)):
        sweeps = [s for s in (read_sweep(run["folder"]) for run in runs) if s]
        common = sorted(set.intersection(*(set(s) for s in sweeps))) if sweeps else []
        if not common:
            continue
        values = np.array([[s[t] for t in common] for s in sweeps])
        std = values.std(axis=0, ddof=1) if len(sweeps) >= 2 else np.full(len(common), np.nan)
        curves[model] = {
            "threshold": np.array(common),
            "mean": values.mean(axis=0),
            "std": std,
            "n": len(sweeps),
        }
    return curves


def plot_curves(
    curves: dict[str, dict[str, Any]],
    chosen: dict[str, tuple[float, float]],
    path: Path,
    ablation: str = "full",
) -> None:
    """Write the F1-vs-threshold figure atomically (a note instead when no curves).

    Args:
        curves: from :func:`mean_curves`.
        chosen: ``{model: (threshold mean, threshold std)}``; marked on each curve.
        path: PNG path.
        ablation: for the title.
    """
    # Figure + Agg canvas directly: no pyplot global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (model, curve) in enumerate(curves.items()):
        _plot_one(axes, model, curve, chosen.get(model), f"C{index % 10}")
    if curves:
        axes.plot([], [], "D", color="grey", label="chosen threshold (mean ± std)")
        axes.legend(loc="best", fontsize="small")
    else:
        axes.text(0.5, 0.5, f"no threshold sweeps for ablation {ablation!r}",
                  ha="center", va="center", transform=axes.transAxes)  # fmt: skip
    axes.set_xlabel("threshold")
    axes.set_ylabel("validation F1")
    axes.set_title(f"F1 vs threshold ({ablation}, mean ± std over seeds)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)


def _plot_one(
    axes: Any, model: str, curve: dict[str, Any], chosen: tuple[float, float] | None, colour: str
) -> None:
    x, mean, std = curve["threshold"], curve["mean"], curve["std"]
    axes.plot(x, mean, "-", color=colour, label=f"{model} (n={curve['n']})")
    if np.isfinite(std).any():
        axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    if chosen is not None and math.isfinite(chosen[0]):
        xerr = chosen[1] if math.isfinite(chosen[1]) else None
        y = float(np.interp(chosen[0], x, mean))
        axes.errorbar(chosen[0], y, xerr=xerr, fmt="D", color=colour, capsize=3)


# --------------------------------------------------------------------------- report


def write_report(root: Path, out: Path | None = None, ablation: str = "full") -> dict[str, Path]:
    """Write ``table1.md``, ``table1.csv`` and ``f1_vs_threshold.png`` atomically.

    Args:
        root: folder searched recursively for job folders.
        out: output folder (default: ``root``).
        ablation: ablation whose curves are plotted.

    Returns:
        ``{"markdown": path, "csv": path, "figure": path}``.
    """
    root = Path(root)
    out = root if out is None else Path(out)
    finished, missing = collect_jobs(root)
    rows = summarise(finished)
    paths = {key: out / name for key, name in OUTPUT_NAMES.items()}
    atomic_write_text(paths["markdown"], report_markdown(rows, missing, root))
    columns, csv_rows = summary_csv_rows(rows)
    write_csv(paths["csv"], csv_rows, columns)
    chosen = {
        r["model"]: (r["threshold_mean"], r["threshold_std"])
        for r in rows
        if r["ablation"] == ablation
    }
    plot_curves(mean_curves(finished, ablation), chosen, paths["figure"], ablation)
    return paths
