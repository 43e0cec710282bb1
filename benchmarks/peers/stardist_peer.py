"""StarDist 2D as a peer: train from scratch, predict, time. Runs in ``.venv-stardist``.

This file imports StarDist (TensorFlow CPU, Keras 3 through csbdeep 0.8) and never
cellcount or torch, so it runs in the environment of ``make stardist-env``. Same
interface as ``cellpose_peer.py``:

    python stardist_peer.py train   --pairs pairs.json --minutes 55 --out DIR
    python stardist_peer.py predict --model DIR --images list.json --out LABELS_DIR
    python stardist_peer.py time    --model DIR --images a.png b.png --repeats 5

``train`` follows StarDist's 2D nuclei example from scratch: grey images normalised
to their 1 and 99.8 percentiles, label holes filled, 15 % of the images (seed 42)
for validation, ``Config2D(n_rays=32, grid=(2, 2))`` on 256 px patches, flips,
rot90, intensity and noise augmentation (TensorBoard logging off). Patches must fit
in the image (``sample_patches`` refuses larger ones), so an image under 256 px on a
side is padded with its minimum and background (the smallest DSB images are 256x256).
It spends at most ``--minutes`` of the machine's CPU time (process CPU seconds over
the TensorFlow threads, so that the budget holds when other work shares the cores):
one timed epoch of ``STEPS_PER_EPOCH`` batches sets how many more fit, with time
kept for ``optimize_thresholds`` on ``THRESHOLD_IMAGES`` validation images; weights
and ``net.json`` are kept, so an interrupted run only redoes the thresholds.
``predict`` counts at native scale with the optimised thresholds: one 32-bit label
TIFF per image and ``diameters.json`` (stem -> null: no size model).
``time`` prints JSON: per image, the network's share (every ``keras_model.predict``
call, through which all of StarDist's forward passes go, tiled or not) and the whole
``predict_instances`` from the grey image, normalisation and non-maximum suppression
included, over ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import numpy as np
import stardist
import tensorflow as tf
import tifffile
from csbdeep.utils import normalize
from peer_common import ForwardClock, grey, parse_args, read_labels, time_counts
from stardist import fill_label_holes
from stardist.models import Config2D, StarDist2D

NAME = "stardist_dsb"
PATCH = (256, 256)  # StarDist's default 2D training patch
STEPS_PER_EPOCH = 50  # batches of 4 patches per epoch
VAL_SHARE = 0.15  # the example's validation split, seed 42
THRESHOLDS_RESERVE_S = 300.0  # wall seconds kept for optimize_thresholds at the end
THRESHOLD_IMAGES = 20  # optimize_thresholds' validation images (as Cellpose's SIZE_IMAGES)


def normalized(image: np.ndarray) -> np.ndarray:
    """The image scaled to its 1 and 99.8 percentiles, as StarDist's examples do."""
    return normalize(image, 1, 99.8, axis=(0, 1)).astype(np.float32)


def padded(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels padded to at least the patch size (image minimum, background)."""
    widths = [(0, max(0, p - s)) for p, s in zip(PATCH, image.shape, strict=True)]
    if not any(after for _, after in widths):
        return image, labels
    return (np.pad(image, widths, constant_values=float(image.min())),
            np.pad(labels, widths))  # fmt: skip


def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The example's augmenter: random transpose and flips, intensity change, noise."""
    perm = tuple(np.random.permutation(2))
    x, y = x.transpose(perm), y.transpose(perm)
    for axis in (0, 1):
        if np.random.rand() > 0.5:
            x, y = np.flip(x, axis=axis), np.flip(y, axis=axis)
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)
    return x + 0.02 * np.random.uniform(0, 1) * np.random.normal(0, 1, x.shape), y


def train_model(pairs: list[tuple[str, str]], minutes: float, out: Path) -> dict[str, Any]:
    """Train the net within ``minutes``, then optimise its thresholds; DIR/stardist_dsb.

    Each stage is kept once done (``net.json``, ``thresholds.json``), so an
    interrupted run goes on with what is missing.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    data = [padded(normalized(grey(Path(image))), fill_label_holes(read_labels(Path(path))))
            for image, path in pairs]  # fmt: skip
    order = np.random.RandomState(42).permutation(len(data))
    n_val = max(1, round(VAL_SHARE * len(data)))
    val, train = [data[i] for i in order[:n_val]], [data[i] for i in order[n_val:]]
    net_facts = out / "net.json"
    if not net_facts.is_file():
        budget = minutes * 60.0 - (time.process_time() - cpu_start) / threads()
        facts = {**train_net(train, val, budget, out), "net_s": time.perf_counter() - start,
                 "net_cpu_s": time.process_time() - cpu_start}  # fmt: skip
        net_facts.write_text(json.dumps(facts))  # loading the images included
    facts = json.loads(net_facts.read_text())
    if "thresholds_s" not in facts:
        begin, cpu_begin = time.perf_counter(), time.process_time()
        model = StarDist2D(None, name=NAME, basedir=str(out))
        chosen = val[:THRESHOLD_IMAGES]
        model.optimize_thresholds([x for x, _ in chosen], [y for _, y in chosen])
        facts["thresholds_s"] = time.perf_counter() - begin
        facts["thresholds_cpu_s"] = time.process_time() - cpu_begin
        net_facts.write_text(json.dumps(facts))
    cpu_s = facts["net_cpu_s"] + facts["thresholds_cpu_s"]
    return {**facts, "train_s": facts["net_s"] + facts["thresholds_s"], "cpu_s": cpu_s,
            "budget_s": minutes * 60.0, "threads": threads()}  # fmt: skip


def threads() -> int:
    """TensorFlow's intra-op threads (all cores when it is left to choose)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def train_net(train: list[tuple[np.ndarray, np.ndarray]], val: list[tuple[np.ndarray, np.ndarray]],
              budget: float, out: Path) -> dict[str, Any]:  # fmt: skip
    """StarDist from scratch for as many epochs as fit ``budget`` CPU-time seconds per
    thread (less the thresholds' reserve): one timed epoch, then the rest in one call."""
    start = time.process_time()
    config = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, train_patch_size=PATCH,
                      use_gpu=False, train_tensorboard=False)  # fmt: skip
    model = StarDist2D(config, name=NAME, basedir=str(out))
    images, labels = [x for x, _ in train], [y for _, y in train]
    common = {"validation_data": ([x for x, _ in val], [y for _, y in val]),
              "augmenter": augment, "steps_per_epoch": STEPS_PER_EPOCH}  # fmt: skip
    first = time.process_time()
    model.train(images, labels, epochs=1, **common)
    epoch_s = (time.process_time() - first) / threads()
    spent = (time.process_time() - start) / threads()
    epochs = max(0, int((budget - spent - THRESHOLDS_RESERVE_S) // epoch_s))
    if epochs:
        model.train(images, labels, epochs=epochs, **common)
    return {"epochs": 1 + epochs, "epoch_s": epoch_s, "steps_per_epoch": STEPS_PER_EPOCH,
            "images": len(train) + len(val), "val_images": len(val)}  # fmt: skip


def load(model_dir: Path) -> StarDist2D:
    """The trained model with its optimised thresholds (best validation weights)."""
    return StarDist2D(None, name=NAME, basedir=str(model_dir))


def count(model: StarDist2D, image: np.ndarray) -> np.ndarray:
    """Labels (int32 (H, W)) of a grey image at native scale."""
    labels, _ = model.predict_instances(normalized(image), predict_kwargs={"verbose": 0})
    return np.asarray(labels, np.int32)


def predict(model_dir: Path, images: list[str], out: Path) -> None:
    """Label TIFFs and diameters.json (all null) for every image."""
    model = load(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in images:
        path = Path(name)
        tifffile.imwrite(out / f"{path.stem}.tif", count(model, grey(path)))
    diameters = {Path(name).stem: None for name in images}
    (out / "diameters.json").write_text(json.dumps(diameters, indent=1))


def time_images(model_dir: Path, images: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Per image: network seconds and end-to-end seconds of each repeat."""
    model = load(model_dir)
    clock = ForwardClock()
    model.keras_model.predict = clock.wrap(model.keras_model.predict)  # tiled or not
    return time_counts(lambda image: count(model, image), clock, images, repeats)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    result: Any = None
    with contextlib.redirect_stdout(sys.stderr):  # Keras' and StarDist's chatter off stdout
        if args.command == "train":
            args.out.mkdir(parents=True, exist_ok=True)
            result = train_model(json.loads(args.pairs.read_text()), args.minutes, args.out)
            result.update(stardist=stardist.__version__, tensorflow=tf.__version__)
            (args.out / "training.json").write_text(json.dumps(result, indent=1))
        elif args.command == "predict":
            predict(args.model, json.loads(args.images.read_text()), args.out)
        else:
            result = time_images(args.model, args.images, args.repeats)
    if result is not None:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
