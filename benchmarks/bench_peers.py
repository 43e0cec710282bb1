"""Section 10: the peers (Cellpose 3, StarDist 2D) beside cellcount, accuracy and speed
in the same run.

Needs the peer environments and the models that ``make peers-env stardist-env`` and
``make peers`` make (:mod:`scripts.peers`: each peer trained from scratch on the same
DSB images, for the same time as the shipped model); every peer trained so far is
measured. The measuring is :func:`scripts.peers.compare` (``make peers`` writes the
same figures to ``docs/results/peers.md``): accuracy of every tool on the held-out DSB
sources, no size given, matched by the same code; speed on one 256x256 DSB image and
one 1600x1200 FNC image, each tool's network alone (every forward pass, timed inside
its counting call) and end to end from the decoded image, ``repeats`` times after a
warm-up, cellcount in this process and each peer in its own environment, one after
the other.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_common import Result
from scripts import peers
from scripts.common import DSB_FULL, require_folder


def run(repeats: int, dsb: Path = DSB_FULL) -> Result:
    """Training facts, accuracy per held-out source and speed per image of every
    trained peer beside cellcount.

    Raises:
        RuntimeError: no peer is trained (says how to train them).
    """
    require_folder(dsb, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    trained = [peer for peer in peers.PEERS.values() if peer.trained()]
    if not trained:
        folders = ", ".join(str(peer.model_dir) for peer in peers.PEERS.values())
        raise RuntimeError(f"no trained peer model in {folders}: run `make peers`")
    return peers.compare(dsb, trained, repeats)
