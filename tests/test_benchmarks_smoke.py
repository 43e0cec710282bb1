"""Smoke tests of the benchmark harness: the sections measure (tiny sizes), render.py
turns results into BENCHMARKS.md, run.py saves JSON and renders it.

Tiny sizes only: they check that the sections run and report, not the figures.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import (
    bench_batched_inference,
    bench_inference,
    bench_precision,
    bench_throughput,
    bench_training,
)
from benchmarks import render as rendering
from benchmarks import run as harness
from benchmarks.bench_common import Result, Stats, plain
from benchmarks.bench_inference import Plan
from cellcount.data.io import find_samples
from cellcount.inference.checkpoints import save_checkpoint
from cellcount.training.module import CellSegModule


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: tiny steps on a busy machine are otherwise dominated by the
    synchronisation of oversubscribed OpenMP threads (100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def training_result() -> Result:
    """Section 7 on one tiny net, CPU only."""
    cpu = [(torch.device("cpu"), bench_training.CPU_VARIANTS)]
    return bench_training.run([Plan("small_unet", 1)], 32, 2, 1, devices=cpu)


def test_training_section_runs_all_variants(training_result: Result) -> None:
    """Every CPU variant is timed from the same weights; render reads the default's figures."""
    variants = training_result["devices"]["cpu"]["small_unet"]["variants"]
    assert list(variants) == [v.name for v in bench_training.CPU_VARIANTS]
    for info in variants.values():
        assert isinstance(info["stats"], Stats) and info["stats"].median > 0
        assert np.isfinite(info["first_loss"])
    # Same weights and batch: the precisions only perturb the first loss slightly.
    losses = [info["first_loss"] for info in variants.values()]
    assert max(losses) - min(losses) < 0.05 * abs(losses[0])
    assert training_result["cpu_precision"] in ("bf16-mixed", "32-true")
    data = plain(training_result)
    default = variants[data["default_variant"]]["stats"]
    rate, speedup = rendering.training_default(data, "small_unet")  # type: ignore[misc]
    assert rate == pytest.approx(2 / default.median)
    assert speedup == pytest.approx(variants["fp32"]["stats"].median / default.median)
    body = rendering.section_training(data).body
    assert "crops/s" in body and "| `small_unet` | CPU | fp32 | 1 | 1 |" in body


def _disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """A label image with one disc per centre."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for index, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = index
    return labels


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """An untrained tiny checkpoint with a model card naming three validation images."""
    torch.manual_seed(0)
    module = CellSegModule(arch="small_unet", arch_kwargs={"n_features_start": 4})
    path = save_checkpoint(module, tmp_path / "model.ckpt")
    (tmp_path / "model.json").write_text(json.dumps({"val_images": ["a", "b", "synthetic_0"]}))
    return path


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """Three 64x64 images with labelled discs, in the DSB instances layout."""
    root = tmp_path / "dsb"
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for name, centres in (("a", [(16, 16), (40, 44)]), ("b", [(20, 40)]), ("c", [(30, 30)])):
        labels = _disks((64, 64), centres, 7)
        Image.fromarray(((labels > 0) * 200 + 20).astype(np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        Image.fromarray(labels).save(root / "labels" / f"{name}.png")
    return root


def test_precision_section_compares_fp32_and_bf16(tiny_model: Path, tiny_root: Path) -> None:
    """Both precisions are scored; the rendered table has goal columns, no verdict column."""
    samples = [s for s in find_samples(tiny_root, "instances") if s.name in {"a", "b"}]
    dataset = bench_precision.Dataset("tiny", samples, None, 10.0, "two images")
    data = plain(bench_precision.run(tiny_model, [dataset]))
    result = data["datasets"]["tiny"]
    assert result["images"] == 2
    assert set(result["f1"]) == {"fp32", "bf16"}
    assert isinstance(data["verdict"], bool) and data["verdict"] == result["verdict"]
    body = rendering.section_precision(data).body
    assert "| ΔF1 goal |" in body and "| <= 0.005 |" in body and "within tolerance |" not in body
    assert f"| tiny | 2 | {result['f1']['fp32']:.4f} |" in body


@pytest.mark.skipif(not bench_precision.FNC_YELLOW.exists(), reason="FNC samples absent")
def test_precision_picks_the_validation_images(tiny_model: Path, tiny_root: Path) -> None:
    """Only the images named in the model card are compared."""
    datasets = bench_precision.default_datasets(tiny_model, dsb_root=tiny_root)
    assert [s.name for s in datasets[0].samples] == ["a", "b"]


def test_precision_needs_a_model_card(tmp_path: Path, tiny_model: Path) -> None:
    """Without a model card the error says what is missing."""
    tiny_model.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="model card"):
        bench_precision.validation_names(tiny_model)


@pytest.mark.parametrize(
    ("f1", "mae", "ok"),
    [
        ((0.90, 0.904), (2.0, 2.0), True),
        ((0.90, 0.906), (2.0, 2.0), False),
        ((0.90, 0.90), (2.0, 2.02), True),
        ((0.90, 0.90), (2.0, 1.97), False),
        ((1.0, 1.0), (0.0, 0.0), True),
        ((1.0, 1.0), (0.0, 0.5), False),
    ],
)
def test_tolerance_rule(f1: tuple[float, float], mae: tuple[float, float], ok: bool) -> None:
    """|ΔF1| <= 0.005 and |ΔMAE| <= 1% of the fp32 MAE."""
    pair = lambda v: {"fp32": v[0], "bf16": v[1]}  # noqa: E731
    assert bench_precision.within_tolerance(pair(f1), pair(mae)) is ok


def test_batched_inference_reports_batch_one_and_the_best_batch() -> None:
    """The sweep measures each batch; render shows images/s at batch 1 and the best batch."""
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    result = bench_batched_inference.run(
        [Plan("small_unet", 1)], image, torch.device("cpu"), {"fp32": None}, (1, 2), 1
    )
    sweep = result["archs"]["small_unet"]["fp32"]
    assert set(sweep) == {1, 2} and all(s.median > 0 for s in sweep.values())
    best = min(sweep, key=lambda batch: sweep[batch].median)
    text = rendering._cuda_rows(plain(result), {"small_unet": {"gflop": 1.0}})
    assert f"| `small_unet` | fp32 | **{1 / sweep[1].median:,.1f}** | {best} |" in text


def test_batch_sweep_stops_at_the_first_batch_that_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of memory ends the sweep; the batches that fitted are kept."""

    def fake(net: object, image: object, batch: int, dtype: object, repeats: int) -> object:
        """Batches above 2 do not fit."""
        if batch > 2:
            raise torch.OutOfMemoryError("out of memory")
        return Stats([1.0 / batch])

    monkeypatch.setattr(bench_batched_inference, "seconds_per_image", fake)
    sweep = bench_batched_inference.batch_sweep(None, torch.zeros(1), None, (1, 2, 4, 8), 1)  # type: ignore[arg-type]
    assert list(sweep) == [1, 2]


# -- render.py on fake results ---------------------------------------------------------------
def _stats(*samples: float) -> dict[str, Any]:
    """The plain form of a Stats of ``samples``."""
    return Stats(list(samples), 1).to_plain()


MACHINE = {
    "cpu": "Test CPU",
    "arch": "x86_64",
    "isa": ["avx2"],
    "logical_cores": 2,
    "usable_cores": 2,
    "memory_bytes": 8 * 2**30,
    "torch_threads": 2,
    "interop_threads": 2,
    "thread_env": {"OMP_NUM_THREADS": "unset"},
    "mkldnn": True,
    "os": "Linux",
    "python": "3.11",
    "packages": {"torch": "2.0"},
    "revision": "abc1234",
}


def _post_count(total: float) -> dict[str, Any]:
    """One number-of-cells entry of section 2."""
    return {
        "found": 100,
        "tp": 100,
        "postprocess": _stats(total * 0.8),
        "matching": _stats(total * 0.2),
        "total": _stats(total),
        "cpu_share": 1.0,
    }


@pytest.fixture
def fake_results() -> dict[str, Any]:
    """Plain results of a run of sections 1, 2, 4 (no CUDA) and 6, with 7 failed."""
    counts = {"10": _post_count(0.05), "100": _post_count(0.09), "1000": _post_count(0.5)}
    arch = {"params": 1.7e6, "gflop": 200.0, "warmup_side": 1.0}
    arch |= {"fp32": _stats(1.0, 1.05), "bf16": _stats(0.5, 0.52)}
    large = {"name": "count 8000x8000 (default)", "large_default": True, "peak_rss": 3 * 2**30}
    large |= {"baseline_rss": 2**29, "seconds": 40.0, "count": "700", "status": 0}
    return {
        "config": "full",
        "command": "python -m benchmarks.run",
        "date": "2026-01-01 00:00 UTC",
        "elapsed_s": 600.0,
        "loads": [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]],
        "machine": MACHINE,
        "sections": {
            "1": {"height": 1200, "width": 1600, "cells": 50, "radii": [12, 20], "repeats": 2,
                  "fast": _stats(0.05, 0.05), "per_cell": _stats(2.0, 2.0), "max_abs": 3e-4},
            "2": {"height": 1200, "width": 1600, "radii": [12, 18], "spacing": 40,
                  "repeats": 2, "counts": counts},
            "4": {"height": 1200, "width": 1600, "net_height": 1200, "net_width": 1600,
                  "peaks": {"fp32": 250.0, "bf16": 500.0}, "archs": {"c_resunet": arch},
                  "options": None, "cuda": None},
            "6": {"model": "pretrained", "default_tile": 1600, "malloc_env": "X",
                  "large_side": 8000, "include_large": True, "cases": [large]},
        },
        "failures": {"7": "Traceback: boom\n"},
    }  # fmt: skip


def test_render_shows_goal_columns_next_to_the_figures(fake_results: dict[str, Any]) -> None:
    """Goals at a glance and in the section tables; computed figures; no status columns."""
    page = rendering.render(fake_results)
    assert "| weight map speed-up vs per-cell reference | >= 20x | 40.0x |" in page
    assert "| post-processing + matching, 100 cells | < 0.3 s / image | 90.0 ms |" in page
    # c_resunet fp32: 200 GFLOP / 1.025 s = 195 GFLOP/s = 78% of the 250 GFLOP/s peak.
    assert "| c_resunet CPU inference, fp32, as a fraction of fp32 matmul | >= 80% | 78% (195" in (
        page
    )
    assert "| peak RSS, counting 8000x8000 | < 4 GB | 3.00 GiB |" in page
    assert "| **speed-up** | **40.0x** (40.0x–40.0x) |  | >= 20x |" in page
    assert "| post-process + matching | goal | per cell | CPU/wall |" in page
    row_100 = next(line for line in page.splitlines() if line.startswith("| 100 | 100 / 100"))
    assert "| < 0.3 s |" in row_100
    assert "| **3.00 GiB** | < 4 GB | 512 MiB | 2.50 GiB | 40.00 s | 700 |" in page
    assert "| status |" not in page and not re.search(r"\bmet\b", page, re.IGNORECASE)
    assert "## Section 7 failed" in page and "boom" in page


def test_render_says_once_that_gpu_rows_need_cuda(fake_results: dict[str, Any]) -> None:
    """No CUDA rows: one neutral line on how to get them, no asides in the sections."""
    page = rendering.render(fake_results)
    assert page.count("need a CUDA device") == 1 and "`make bench`" in page
    assert "No CUDA device here" not in page and "this machine" not in page
    fake_results["sections"]["4"]["cuda"] = {
        "device": "cuda",
        "device_name": "Test GPU",
        "batches": [1, 2],
        "warmup": 3,
        "repeats": 1,
        "archs": {"c_resunet": {"fp32": {"1": _stats(0.1), "2": _stats(0.04)}}},
    }
    page = rendering.render(fake_results)
    assert "need a CUDA device" not in page
    assert (
        "| `c_resunet` | fp32 | **10.0** | 2 | **25.0** (40.0 ms (1 run) per image) | 5,000 |"
        in (page)
    )


def test_render_from_json_file_is_the_same_page(
    fake_results: dict[str, Any], tmp_path: Path
) -> None:
    """`python -m benchmarks.render --from X.json --out X.md` writes what render() returns."""
    source = tmp_path / "bench.json"
    source.write_text(json.dumps(fake_results))
    assert rendering.main(["--from", str(source), "--out", str(tmp_path / "b.md")]) == 0
    assert (tmp_path / "b.md").read_text() == rendering.render(fake_results)


def test_plain_round_trips_stats() -> None:
    """Stats survive plain() and JSON; numpy values and paths become plain values."""
    stats = Stats([1.0, 2.0], 1, [0.5, 0.6], [0.1, 0.1], [3, 4])
    data = json.loads(json.dumps(plain({"s": stats, "n": np.float32(0.5), "p": Path("a")})))
    assert Stats.from_plain(data["s"]) == stats and data["n"] == 0.5 and data["p"] == "a"


def test_every_option_says_what_cellcount_does_with_it() -> None:
    """render.py describes every option bench_inference measures."""
    names = bench_inference.BASIC_OPTIONS + bench_inference.EXTRA_OPTIONS
    assert set(names) == set(rendering.IN_CELLCOUNT)


def test_harness_sections_and_configs() -> None:
    """Every section has a job and a renderer; 4 brings 3; unknown sections are refused."""
    args = harness.parse_args([])
    jobs = harness.section_jobs(harness.FULL, args, [Path("image.png")], {})
    assert set(jobs) == set(rendering.RENDERERS) == set(harness.SECTIONS)
    assert harness.wanted_sections("4,1") == ["1", "3", "4"]
    with pytest.raises(SystemExit):
        harness.wanted_sections("12")
    assert harness.FULL.train_crop == 512 and harness.QUICK.train_crop < harness.FULL.train_crop


def test_run_saves_json_and_renders_it(tmp_path: Path) -> None:
    """A quick run of section 1: the JSON next to the Markdown renders to the same page."""
    out = tmp_path / "bench.md"
    assert harness.main(["--quick", "--only", "1", "--out", str(out)]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert list(results["sections"]) == ["1"] and results["config"] == "quick"
    page = out.read_text()
    assert page == rendering.render(results)
    assert "QUICK SMOKE RUN" in page and "## 1. Weight map (training targets)" in page


def _folder_result(shape: str, model: float, before: float, one: float, batched: float,
                   auto: float, chosen: float) -> Any:  # fmt: skip
    times = (_stats(before), _stats(one), _stats((one + batched) / 2), _stats(batched))
    modes = dict(zip(bench_throughput.MODES, times, strict=True))
    return {"shape": shape, "images": 8, "diameter": 16.0, "model_only": _stats(model),
            "modes": modes, "auto": auto,
            "estimate": {"auto": auto, "given its size": chosen}}  # fmt: skip


def test_throughput_goals_are_ratios_of_the_same_run(fake_results: dict[str, Any]) -> None:
    fake_results["sections"]["9"] = {"folders": [
        _folder_result("1600x1200", 0.8, 1.5, 0.95, 0.85, 1.1, 0.88),
        _folder_result("256x256", 0.05, 0.21, 0.12, 0.06, 0.08, 0.05)]}  # fmt: skip
    page = rendering.render(fake_results)
    # The default (batched) mode: 0.85 / 0.8 = 1.06; 0.21 / 0.06 = 3.5 over before and
    # 0.12 / 0.06 = 2.0 over one at a time now; auto over it 1.1 / 0.85 = 1.29 and
    # 0.08 / 0.06 = 1.33; over the size auto chose 1.25 and 1.60.
    assert "| counting a folder of 1600x1200, per image, over model-only prediction | <= 1.1x " \
        "| 1.06x |" in page  # fmt: skip
    assert "| counting a folder of 256x256, images/s, overlapped and batched over one at a " \
        "time as before (torch's ELU kernel); in brackets over one at a time now | >= 3x " \
        "| 3.50x (2.00x) |" in page  # fmt: skip
    assert "| <= 1.5x | 1.29x (1.25x); 1.33x (1.60x) |" in page
    assert "## 9. Folder throughput" in page


def test_throughput_section_counts_both_folders(tmp_path: Path) -> None:
    from cellcount import samples

    large = tmp_path / "real.png"
    Image.open(samples.images("fnc_yellow")[0]).crop((0, 0, 512, 300)).save(large)
    small = tmp_path / "small.png"
    Image.open(samples.images("fnc_yellow")[0]).crop((0, 0, 256, 256)).save(small)
    data = plain(bench_throughput.run([large], copies=2, small=[small], repeats=1))
    first, second = data["folders"]
    assert (first["shape"], first["images"]) == ("512x300", 2)
    assert (second["shape"], second["images"]) == ("256x256", 1)
    for folder in data["folders"]:
        assert set(folder["modes"]) == set(bench_throughput.MODES) and folder["auto"] > 0
        assert min(folder["estimate"].values()) > 0
    assert "| 256x256, 1 images, 16 px cells |" in rendering.section_throughput(data).body


def _peer_results() -> dict[str, Any]:
    """Section 10 as :func:`scripts.peers.compare` returns it, for two peers: Cellpose
    8x and StarDist 2x slower than cellcount end to end, both less accurate."""
    ours = "cellcount (pretrained, auto size)"
    peers = {"cellpose": {"tool": "Cellpose 3 (from scratch, size model)", "slower": 8.0,
                          "f1": 0.7, "mae": 6.0, "trained": "6 epochs in 55.0 min"},
             "stardist": {"tool": "StarDist 2D (from scratch, native scale)", "slower": 2.0,
                          "f1": 0.8, "mae": 4.0, "trained": "40 epochs in 54.0 min"}}  # fmt: skip
    accuracy = [{"set": "dsb_360x360", "tool": tool, "images": 9, "precision": 0.9,
                 "recall": 0.8, "f1": f1, "mae": mae, "mpe": -0.1}
                for tool, f1, mae in [(ours, 0.9, 3.0)]
                + [(p["tool"], p["f1"], p["mae"]) for p in peers.values()]]  # fmt: skip
    timing = {label: {"cellcount": {"network": [n] * 3, "total": [t] * 3},
                      **{key: {"network": [5 * n] * 3, "total": [p["slower"] * t] * 3}
                         for key, p in peers.items()}}
              for label, n, t in (("256x256", 0.02, 0.05), ("1600x1200", 0.5, 0.9))}  # fmt: skip
    return {
        "cellcount": ours, "accuracy": accuracy, "timing": timing,
        "peers": {key: {"tool": p["tool"], "trained": p["trained"], "timed": f"{key} things",
                        "training": {"images": 377}} for key, p in peers.items()},
        "images": {"256x256": "a.png", "1600x1200": "b.png"},
    }  # fmt: skip


def test_peer_section_compares_every_peer_on_speed_and_accuracy(
    fake_results: dict[str, Any],
) -> None:
    fake_results["sections"]["10"] = _peer_results()
    page = rendering.render(fake_results)
    assert "| cellcount vs Cellpose 3 end to end, 256x256, per image | >= 5x faster | " \
        "8.00x faster |" in page  # fmt: skip
    assert "| cellcount vs StarDist 2D end to end, 1600x1200, per image | — | " \
        "2.00x faster |" in page  # fmt: skip
    assert "| F1 / MAE on dsb_360x360 (held out), cellcount vs Cellpose 3 | F1 >=, MAE <= " \
        "Cellpose 3's | 0.900 vs 0.700 / 3.00 vs 6.00 |" in page  # fmt: skip
    assert "| F1 / MAE on dsb_360x360 (held out), cellcount vs StarDist 2D | F1 >=, MAE <= " \
        "StarDist 2D's | 0.900 vs 0.800 / 3.00 vs 4.00 |" in page  # fmt: skip
    assert "## 10. Peers: Cellpose 3 and StarDist 2D side by side" in page
    assert "- StarDist 2D (from scratch, native scale): 40 epochs in 54.0 min." in page
    assert "StarDist 2D: stardist things" in page
    assert "| 256x256 (`a.png`) | StarDist 2D (from scratch, native scale) |" in page


def test_peers_page_is_the_section_with_its_command(fake_results: dict[str, Any]) -> None:
    data = _peer_results()
    del data["peers"]["cellpose"]
    data["accuracy"] = [row for row in data["accuracy"] if not row["tool"].startswith("Cell")]
    for times in data["timing"].values():
        del times["cellpose"]
    page = rendering.peers_page(data, "make peers PEERS=stardist", "2026-12-03 12:00 UTC")
    assert page.startswith("# cellcount beside StarDist 2D\n\n`make peers PEERS=stardist`, 2026-12")
    assert "Cellpose" not in page and "| dsb_360x360 | StarDist 2D" in page


def test_peer_section_says_how_to_train_the_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import bench_peers
    from scripts import peers

    for key, peer in peers.PEERS.items():
        monkeypatch.setitem(peers.PEERS, key, dataclasses.replace(peer, model_dir=tmp_path / key))
    (tmp_path / "dsb" / "images").mkdir(parents=True)
    with pytest.raises(RuntimeError, match=r"no trained peer model .*make peers"):
        bench_peers.run(1, tmp_path / "dsb")


def test_finetune_section_shows_the_curve_script_rows() -> None:
    data = plain(harness.finetune_results())
    assert data["command"].startswith("python -m scripts.finetune_curve")
    body = rendering.section_finetune(data).body
    shipped = next(r for r in data["rows"] if r["model"] == "pretrained")
    assert f"| {shipped['set']} | 0 | 0 | 0 | 0.0 | pretrained |" in body
    assert body.count("| fine-tuned |") == sum(r["model"] == "fine-tuned" for r in data["rows"])


def test_a_partial_curve_rerun_replaces_only_the_rows_it_measured() -> None:
    from scripts.finetune_curve import merged

    def row(name: str, images: int, minutes: float, f1: float) -> dict[str, Any]:
        return {"set": name, "images": images, "minutes": minutes, "f1": f1}

    old = [row("b", 0, 0, 0.1), row("b", 2, 4, 0.2), row("a", 0, 0, 0.3), row("a", 10, 4, 0.4)]
    new = [row("a", 3, 4, 0.9), row("b", 2, 4, 0.8)]
    rows = merged(old, new)
    assert [(r["set"], r["images"], r["f1"]) for r in rows] == [
        ("b", 0, 0.1), ("b", 2, 0.8), ("a", 0, 0.3), ("a", 3, 0.9), ("a", 10, 0.4)]  # fmt: skip


def test_curve_rows_read_back_keep_whole_counts_whole(tmp_path: Path) -> None:
    from cellcount.runtime.files import write_csv
    from scripts.finetune_curve import COLUMNS, markdown, read_rows

    row = {"set": "a", "images": 10, "minutes": 4.0, "epochs": 69, "trained_min": 2.4,
           "model": "fine-tuned", "test_images": 40, "precision": 0.9, "recall": 0.8,
           "f1": 0.85, "mae": 3.2, "mpe": -0.1}  # fmt: skip
    write_csv(tmp_path / "c.csv", [row], COLUMNS)
    back = read_rows(tmp_path / "c.csv")
    assert back == [row]
    assert "| a | 10 | 4 | 69 | 2.4 | fine-tuned | 40 |" in markdown(back, "cmd")


def test_sections_a_run_did_not_measure_are_carried_over_marked(
    fake_results: dict[str, Any],
) -> None:
    fake_results["sections"]["10"] = _peer_results()
    earlier = rendering.render(fake_results)  # a page with section 10, as measured then
    del fake_results["sections"]["10"]
    fake_results["date"] = "2026-02-02 00:00 UTC"
    fake_results["failures"]["10"] = "Traceback ...\nRuntimeError: no trained peer model"
    carried = rendering.carried_sections(earlier, set(fake_results["sections"]))
    assert set(carried) == {"10"}  # 1, 2, 4 and 6 were measured again; 7 failed both times
    fake_results["carried"] = carried
    page = rendering.render(fake_results)
    title, body = earlier.split("## 10. ")[1].split("\n\n", 1)
    assert f"## 10. {title}\n\n" in page and body.rstrip() in page  # as it was, unchanged
    assert "*Not measured in this run (it failed: RuntimeError: no trained peer model): " \
        "carried over unchanged from the run `python -m benchmarks.run`, 2026-01-01 00:00 " \
        "UTC.*" in page  # fmt: skip
    assert "| see section 10 | not measured in this run; carried over from the run" in page
    assert "Section 10 failed" not in page
    # Carried again by a later run: it still names the run that measured it.
    again = rendering.carried_sections(page, set(fake_results["sections"]))
    assert again["10"]["run"] == carried["10"]["run"]
    assert again["10"]["body"] == carried["10"]["body"]


def test_torch_elu_restores_the_written_out_elu() -> None:
    import torch.nn.functional as F

    from benchmarks.bench_common import torch_elu
    from cellcount.nets.blocks import ELU

    x = torch.linspace(-3, 3, 1001)
    with torch_elu():
        assert torch.equal(ELU()(x), F.elu(x))  # PyTorch's own kernel, bit for bit
    assert ELU.forward is not None and not torch.equal(ELU()(x), F.elu(x))
    torch.testing.assert_close(ELU()(x), F.elu(x), atol=1e-6, rtol=0)
