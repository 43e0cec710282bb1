"""Cellpose 3 as a peer: train from scratch, predict, time. Runs in ``.venv-peers``.

This file imports Cellpose and never cellcount, so it runs in the peers
environment that ``make peers-env`` makes (Cellpose 3 pins a numpy that the
package's environment does not use). It talks to the harness through files:

    python cellpose_peer.py train   --pairs pairs.json --minutes 55 --out DIR
    python cellpose_peer.py predict --model DIR --images list.json --out LABELS_DIR
    python cellpose_peer.py time    --model DIR --images a.png b.png --repeats 5

``train`` follows Cellpose's own recipe for a model from scratch (``train_seg``
with AdamW at its default learning rate, masks rescaled to a 17 px mean diameter
as Cellpose's nuclei model, then ``train_size``, the size regressor that gives
its automatic diameter, on 60 of the images) and spends at most ``--minutes`` in
all: one timed epoch sets how many more fit, with time kept for the size model. ``predict`` counts
with the size model's diameter and writes one 32-bit label TIFF per image plus
``diameters.json``. ``time`` prints JSON: per image, the network's share (every
forward pass of Cellpose's net, timed inside ``eval``) and the whole ``eval``
including the size model and the flow dynamics, over ``--repeats`` after a
warm-up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from cellpose import dynamics, models, train
from peer_common import ForwardClock, grey, parse_args, read_labels, time_counts

DIAM_MEAN = 17.0  # Cellpose's convention for nuclei
SIZE_RESERVE_S = 360.0  # kept for train_size at the end of the budget
SIZE_IMAGES = 60  # train_size's images (its 10 epochs of 512 px passes over all would take ~20 min)
SIZE_BATCH = 8  # train_size's default 64 crops of 512 px need over 24 GB
CHANNELS = [0, 0]  # grey image, no second channel


def train_model(pairs: list[tuple[str, str]], minutes: float, out: Path) -> dict[str, float]:
    """Train net and size model within ``minutes``; write DIR/models/cellpose_dsb(+_size).

    Each stage is kept once done (``net.json``, the ``_size.npy`` file), so an
    interrupted run goes on with what is missing.
    """
    net_facts = out / "net.json"
    images = [grey(Path(image)) for image, _ in pairs]
    labels = [read_labels(Path(path)) for _, path in pairs]
    if not net_facts.is_file():
        net_facts.write_text(json.dumps(train_net(images, labels, minutes * 60.0, out)))
    facts = json.loads(net_facts.read_text())
    path = out / "models" / "cellpose_dsb"
    if not Path(f"{path}_size.npy").is_file():
        start = time.perf_counter()
        model = models.CellposeModel(gpu=False, pretrained_model=str(path))
        chosen = np.random.default_rng(0).permutation(len(images))[:SIZE_IMAGES]
        train.train_size(model.net, str(path), [images[i] for i in chosen],
                         [labels[i] for i in chosen], channels=CHANNELS, normalize=True,
                         batch_size=SIZE_BATCH)  # fmt: skip
        facts["size_s"] = time.perf_counter() - start
        net_facts.write_text(json.dumps(facts))
    return {**facts, "train_s": facts["net_s"] + facts["size_s"], "budget_s": minutes * 60.0,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def train_net(images: list[np.ndarray], labels: list[np.ndarray], budget: float, out: Path
              ) -> dict[str, float]:  # fmt: skip
    """``train_seg`` from scratch for as many epochs as fit ``budget`` s (less the size
    model's reserve): one timed epoch, then the rest in one call."""
    start = time.perf_counter()
    flows = dynamics.labels_to_flows(labels, device=torch.device("cpu"))
    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=DIAM_MEAN)
    common = {"channels": CHANNELS, "normalize": True, "save_path": str(out),
              "model_name": "cellpose_dsb", "min_train_masks": 1}  # fmt: skip
    first = time.perf_counter()
    train.train_seg(model.net, images, flows, n_epochs=1, **common)
    epoch_s = time.perf_counter() - first
    epochs = max(0, int((budget - (time.perf_counter() - start) - SIZE_RESERVE_S) // epoch_s))
    if epochs:
        train.train_seg(model.net, images, flows, n_epochs=epochs, **common)
    return {"epochs": 1 + epochs, "epoch_s": epoch_s, "images": len(images),
            "net_s": time.perf_counter() - start}  # fmt: skip


def load(model_dir: Path) -> tuple[models.CellposeModel, models.SizeModel]:
    """The trained net and its size model."""
    path = model_dir / "models" / "cellpose_dsb"
    net = models.CellposeModel(gpu=False, pretrained_model=str(path))
    size = models.SizeModel(net, pretrained_size=f"{path}_size.npy")
    return net, size


def count(net: models.CellposeModel, size: models.SizeModel, image: np.ndarray
          ) -> tuple[np.ndarray, float]:  # fmt: skip
    """Labels (int32 (H, W)) and the diameter the size model chose."""
    diameter = float(size.eval(image, channels=CHANNELS)[0])
    masks = net.eval(image, diameter=diameter, channels=CHANNELS)[0]
    return np.asarray(masks, np.int32), diameter


def predict(model_dir: Path, images: list[str], out: Path) -> None:
    """Label TIFFs and diameters.json for every image."""
    net, size = load(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    diameters = {}
    for name in images:
        path = Path(name)
        labels, diameters[path.stem] = count(net, size, grey(path))
        tifffile.imwrite(out / f"{path.stem}.tif", labels)
    (out / "diameters.json").write_text(json.dumps(diameters, indent=1))


def time_images(model_dir: Path, images: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Per image: network seconds and end-to-end seconds of each repeat."""
    net, size = load(model_dir)
    clock = ForwardClock()
    net.net.forward = clock.wrap(net.net.forward)  # every pass, also the size model's style pass
    return time_counts(lambda image: count(net, size, image), clock, images, repeats)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.command == "train":
        args.out.mkdir(parents=True, exist_ok=True)
        facts = train_model(json.loads(args.pairs.read_text()), args.minutes, args.out)
        facts["cellpose"] = __import__("cellpose").version
        (args.out / "training.json").write_text(json.dumps(facts, indent=1))
        print(json.dumps(facts))
    elif args.command == "predict":
        predict(args.model, json.loads(args.images.read_text()), args.out)
    else:
        print(json.dumps(time_images(args.model, args.images, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
