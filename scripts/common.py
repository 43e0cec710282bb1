"""Paths the scripts share, and the one check for data that is not in the repository."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The full DSB 2018 stage-1 fluorescence set (498 images with instance labels, CC0;
# images/ + labels/). Not shipped (22 MB); point CELLCOUNT_DSB at a copy, or keep
# the project's data folder next to the repository.
DSB_FULL = Path(os.environ.get("CELLCOUNT_DSB", REPO.parent / "shared" / "data" /
                               "dsb2018_stage1_train_fluo"))  # fmt: skip


def require_folder(folder: Path, what: str, variable: str) -> Path:
    """``folder`` if it has ``images/``; else exit with a message saying what is needed.

    Raises:
        SystemExit: the folder is missing, naming the data and the variable to set.
    """
    if not (folder / "images").is_dir():
        raise SystemExit(
            f"{what} not found at {folder} (needs images/ and labels/). This script needs "
            f"the full set, which is not part of the repository: set {variable}=/path/to/it "
            f"or pass --data-root."
        )
    return folder


def held_out_parser(description: str, out: Path) -> argparse.ArgumentParser:
    """The options of the scripts that score a model on the held-out real sets:
    ``--data-root`` (DSB 2018), ``--fnc-root``, ``--model`` and ``--out`` (default ``out``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-root", type=Path, default=DSB_FULL, help="DSB 2018 folder")
    parser.add_argument("--fnc-root", type=Path, default=FNC_SAMPLES, help="FNC samples folder")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--out", type=Path, default=out)
    return parser


def require_held_out_data(args: argparse.Namespace) -> None:
    """Exit with a message naming the variable to set when either data folder is missing."""
    require_folder(args.data_root, "the DSB 2018 fluorescence set", "CELLCOUNT_DSB")
    require_folder(args.fnc_root / "yellow", "the FNC samples", "CELLCOUNT_FNC")


# The FNC sample folders (yellow/ and red/, each images/ + masks/; CC BY-SA 4.0). The
# shipped samples are a subset; the full sample folder adds two training images each.
FNC_SAMPLES = Path(os.environ.get("CELLCOUNT_FNC", REPO.parent / "shared" / "data" /
                                  "fnc_samples"))  # fmt: skip
# Held out from the shipped model's training: whole DSB sources (below) and the FNC
# images of the paper's test set plus two red ones, so every real-data figure is
# measured on images (and sources) the model never saw.
HELD_OUT_FNC = ("Mar19bS1C4R2_LHr_200x", "Mar32bS2C2R2_DMl_200x",
                "MAR31S1C1R2_DMHr_200x_r", "MAR32C2R3_PVHr_200x_r")  # fmt: skip
# The two largest DSB sources train the model (small sparse nuclei, and large crowded
# ones); the other three are held out whole.
TRAIN_DSB_SOURCES = ("dsb_256x256", "dsb_696x520")


def dsb_sources(root: Path) -> dict[str, str]:
    """Image name -> source of the DSB 2018 set.

    The set has no source labels; its images come from different experiments and
    microscopes, which their sizes tell apart well enough: ``dsb_256x256``,
    ``dsb_360x360``, ``dsb_696x520``, ``dsb_640x512``, and ``dsb_other`` for the
    few of other sizes.
    """
    from PIL import Image

    named = {"256x256", "360x360", "696x520", "640x512"}
    sources = {}
    for path in sorted((root / "images").glob("*.png")):
        with Image.open(path) as image:
            size = f"{image.width}x{image.height}"
        sources[path.stem] = f"dsb_{size}" if size in named else "dsb_other"
    return sources


def held_out_sources(dsb_root: Path) -> dict[str, str]:
    """Image name -> source of the DSB images of the held-out sources."""
    sources = dsb_sources(dsb_root)
    return {name: source for name, source in sources.items() if source not in TRAIN_DSB_SOURCES}


def held_out_names(dsb_root: Path) -> list[str]:
    """Names of every image the shipped model does not train on (its test split).

    The held-out DSB sources, the held-out FNC images, and the shipped DSB samples
    (some come from a training source; they stay unseen so their scores are fair).
    """
    from cellcount import samples

    shipped = [path.stem for path in samples.images("dsb2018")]
    return sorted({*held_out_sources(dsb_root), *HELD_OUT_FNC, *shipped})
