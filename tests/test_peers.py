"""`make peers` measuring (scripts.peers.compare) with a stand-in peer: a runner script
that answers the truth and fixed times, so the glue is tested without Cellpose or
TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import render
from cellcount import samples
from scripts import peers

RUNNER = """
import json, sys
from pathlib import Path
import tifffile
from cellcount.data.io import read_labels

command, argv = sys.argv[1], sys.argv[2:]
if command == "predict":
    options = dict(zip(argv[::2], argv[1::2]))
    for name in json.loads(Path(options["--images"]).read_text()):
        path = Path(name)
        truth = read_labels(path.parent.parent / "labels" / path.name)
        tifffile.imwrite(Path(options["--out"]) / f"{path.stem}.tif", truth)
else:
    images = argv[argv.index("--images") + 1:]
    print(json.dumps({name: {"network": [0.5], "total": [2.0]} for name in images}))
"""


@pytest.fixture
def dsb(tmp_path: Path) -> Path:
    """A DSB-like folder: one held-out 360x360 image with its labels, one 256x256 crop."""
    root = tmp_path / "dsb"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    held_out = next(p for p in samples.images("dsb2018") if Image.open(p).size == (360, 360))
    shutil.copy(held_out, root / "images" / "held.png")
    shutil.copy(samples.path("dsb2018") / "labels" / held_out.name, root / "labels" / "held.png")
    Image.open(held_out).crop((0, 0, 256, 256)).save(root / "images" / "small.png")
    return root


@pytest.fixture
def oracle(tmp_path: Path) -> peers.Peer:
    """A peer whose labels are the truth and whose times are 0.5 s network, 2 s in all."""
    runner = tmp_path / "oracle_peer.py"
    runner.write_text(RUNNER)
    model = tmp_path / "oracle_model"
    model.mkdir()
    (model / "training.json").write_text(json.dumps({"images": 1, "minutes": 3}))
    return peers.Peer("oracle", "Oracle (the truth)", Path(sys.executable), "oracle-env",
                      runner, model, lambda facts: f"{facts['minutes']} min",
                      "reading the truth")  # fmt: skip


def test_compare_scores_and_times_every_tool_in_one_run(dsb: Path, oracle: peers.Peer) -> None:
    data = peers.compare(dsb, [oracle], repeats=1)
    rows = {row["tool"]: row for row in data["accuracy"]}
    assert set(rows) == {peers.CELLCOUNT, "Oracle (the truth)"}
    assert {row["set"] for row in data["accuracy"]} == {"dsb_360x360"}
    assert rows["Oracle (the truth)"]["f1"] == 1.0 and rows["Oracle (the truth)"]["mae"] == 0
    assert 0 < rows[peers.CELLCOUNT]["f1"] <= 1
    assert data["images"] == {"256x256": "small.png", "1600x1200": data["images"]["1600x1200"]}
    for times in data["timing"].values():
        assert times["oracle"] == {"network": [0.5], "total": [2.0]}
        ours = times["cellcount"]
        assert len(ours["total"]) == 1 and 0 < ours["network"][0] <= ours["total"][0]
    assert data["peers"]["oracle"]["trained"] == "3 min"
    page = render.peers_page(data, "make peers PEERS=oracle", "today")
    assert "- Oracle (the truth): 3 min." in page and "Oracle: reading the truth" in page


def test_an_unknown_peer_lists_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="unknown peers \\['cellprofiler'\\]: choose from "):
        peers.chosen_peers("stardist,cellprofiler")
    assert [peer.key for peer in peers.chosen_peers(" stardist , cellpose")] == [
        "stardist",
        "cellpose",
    ]


def test_a_missing_peer_environment_says_which_make_target_builds_it(
    oracle: peers.Peer, tmp_path: Path
) -> None:
    missing = dataclasses.replace(oracle, python=tmp_path / "none" / "python")
    with pytest.raises(SystemExit, match="run `make oracle-env` first"):
        missing.run("time")
