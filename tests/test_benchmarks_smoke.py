"""Smoke tests of benchmark parts: batched inference (section 4 on a GPU), training
throughput (7) and bf16 accuracy (8).

Tiny sizes only: they check that the sections run and report, not the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import bench_batched_inference, bench_precision, bench_training
from benchmarks.bench_common import Section
from benchmarks.bench_inference import Plan
from benchmarks.run import FULL, QUICK, SECTIONS, summary
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
def training_section() -> Section:
    return bench_training.run([Plan("small_unet", 1)], crop=32, batch_size=2, gpu_repeats=1)


def test_training_section_runs_all_variants(training_section: Section) -> None:
    section = training_section
    rows = section.data["cpu"]["small_unet"]
    assert list(rows) == [v.name for v in bench_training.CPU_VARIANTS]
    for info in rows.values():
        assert info["crops_per_s"] > 0
        assert np.isfinite(info["first_loss"])
    # Same weights and batch: the precisions only perturb the first loss slightly.
    losses = [info["first_loss"] for info in rows.values()]
    assert max(losses) - min(losses) < 0.05 * abs(losses[0])
    assert bench_training.default_speedup(section, "small_unet") == pytest.approx(
        rows[section.data["default_variant"]]["speedup"]
    )
    assert "crops/s" in section.body
    assert section.data["cpu_precision"] in ("bf16-mixed", "32-true")


def _disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for index, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = index
    return labels


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    module = CellSegModule(arch="small_unet", arch_kwargs={"n_features_start": 4})
    path = save_checkpoint(module, tmp_path / "model.ckpt")
    (tmp_path / "model.json").write_text(json.dumps({"val_images": ["a", "b", "synthetic_0"]}))
    return path


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
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
    samples = [s for s in find_samples(tiny_root, "instances") if s.name in {"a", "b"}]
    dataset = bench_precision.Dataset("tiny", samples, None, 10.0, "two images")
    section = bench_precision.run(tiny_model, [dataset])
    result = section.data["datasets"]["tiny"]
    assert result["images"] == 2
    assert set(result["f1"]) == {"fp32", "bf16"}
    assert isinstance(section.data["verdict"], bool)
    assert section.data["verdict"] == result["verdict"]
    assert "within tolerance" in section.body


@pytest.mark.skipif(not bench_precision.FNC_YELLOW.exists(), reason="shared FNC samples absent")
def test_precision_picks_the_validation_images(tiny_model: Path, tiny_root: Path) -> None:
    datasets = bench_precision.default_datasets(tiny_model, dsb_root=tiny_root)
    assert [s.name for s in datasets[0].samples] == ["a", "b"]


def test_precision_needs_a_model_card(tmp_path: Path, tiny_model: Path) -> None:
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
    pair = lambda v: {"fp32": v[0], "bf16": v[1]}  # noqa: E731
    assert bench_precision.within_tolerance(pair(f1), pair(mae)) is ok


def test_harness_knows_sections_7_and_8(
    training_section: Section, tiny_model: Path, tiny_root: Path
) -> None:
    assert {"7", "8"} <= set(SECTIONS)
    assert FULL.train_crop == 512 and QUICK.train_crop < FULL.train_crop
    samples = find_samples(tiny_root, "instances")[:1]
    dataset = bench_precision.Dataset("tiny", samples, None, 10.0, "one image")
    sections = {
        "7": training_section,
        "8": bench_precision.run(tiny_model, [dataset]),
    }
    text = summary(sections, FULL)
    assert "c_resunet training" not in text  # only small_unet ran
    assert "bf16 inference within tolerance" in text


def test_batched_inference_reports_batch_one_and_the_best_batch() -> None:
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    plans = [Plan("small_unet", 1)]
    text, data = bench_batched_inference.run(
        plans, image, torch.device("cpu"), {"small_unet": 1.0}, {"fp32": None}, (1, 2), 1
    )
    sweep = data["small_unet"]["fp32"]
    assert set(sweep) == {"1", "2"} and all(s[0] > 0 for s in sweep.values())
    best = min(sweep, key=lambda batch: sweep[batch][0])
    assert f"| `small_unet` | fp32 | **{1 / sweep['1'][0]:,.1f}** | {best} |" in text


def test_batch_sweep_stops_at_the_first_batch_that_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(net: object, image: object, batch: int, dtype: object, repeats: int) -> object:
        if batch > 2:
            raise torch.OutOfMemoryError("out of memory")
        return bench_batched_inference.Stats([1.0 / batch])

    monkeypatch.setattr(bench_batched_inference, "seconds_per_image", fake)
    sweep = bench_batched_inference.batch_sweep(None, torch.zeros(1), None, (1, 2, 4, 8), 1)  # type: ignore[arg-type]
    assert list(sweep) == [1, 2]
