"""``cellcount samples``: list the shipped sample sets or print one's folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cellcount import samples


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount samples",
        description="Real sample images with ground truth that ship with cellcount. "
        "Without NAME: list them. With NAME: print its folder (images/ plus masks/ or "
        "labels/), e.g. cellcount train data=dsb data.root=$(cellcount samples dsb2018); "
        "with --images its images folder, e.g. "
        'cellcount count "$(cellcount samples fnc_yellow --images)" --out counts/',
    )
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(samples.names())}")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--images", action="store_true", help="print the images folder")
    shown.add_argument("--truth", action="store_true", help="print the ground-truth folder")
    parser.add_argument("--licence", action="store_true", help="print sources and licences")
    return parser


def _listing() -> str:
    lines = []
    for name in samples.names():
        info = samples.get(name)
        count = len(samples.images(name))
        lines.append(f"{name:11s} {count:2d} images  {info.description} ({info.licence})")
        lines.append(f"{'':11s} {samples.path(name) / 'images'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the listing, a folder, or the licences; 2 for an unknown name."""
    args = _parser().parse_args(argv)
    if args.licence:
        print(samples.licence_text())
        return 0
    if args.name is None:
        print(_listing())
        return 0
    try:
        folder = samples.path(args.name)
    except KeyError as err:
        print(f"cellcount samples: {err.args[0]}", file=sys.stderr)
        return 2
    if args.images:
        folder = folder / "images"
    elif args.truth:
        folder = folder / samples.get(args.name).truth
    print(folder)
    return 0
