"""Adapt a model to a new stain from clicked points:
``cellcount finetune IMAGES... --points DIR --out my_model.ckpt [--minutes 10]``.

Writes ``my_model.ckpt`` (count with ``cellcount count --model my_model.ckpt``), its
card ``my_model.json``, the before/after table ``my_model.report.md`` and an overlay
``my_model.overlay.png``; the training run is kept in ``my_model_finetune/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cellcount.cli.count import collect_inputs, positive_float, truth_folder
from cellcount.data.errors import DataError
from cellcount.training.finetune import FinetuneOptions, finetune, report_markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount finetune",
        description="Fine-tune a counting model on point-annotated images (Fiji clicks).",
    )
    parser.add_argument("inputs", nargs="+", help="annotated image files, folders or globs")
    parser.add_argument("--points", required=True, type=truth_folder, metavar="DIR",
                        help="annotations: <name>.csv (X, Y), CellCounter_<name>.xml or "
                             "<name>.zip (ImageJ ROIs) per image")  # fmt: skip
    parser.add_argument("--out", required=True, help="checkpoint to write (.ckpt)")
    parser.add_argument(
        "--from",
        dest="base",
        default="pretrained",
        metavar="CKPT",
        help="model to start from (default: the shipped pretrained)",
    )
    parser.add_argument(
        "--minutes",
        type=positive_float,
        default=10.0,
        help="training time budget (default %(default)s)",
    )
    parser.add_argument("--held-out", type=float, default=0.3, metavar="SHARE",
                        help="share of the images held out to choose thresholds and score "
                             "the result (default %(default)s)")  # fmt: skip
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="k-fold cross-validation instead of a held-out share (1: never; "
                             "default: leave-one-out below 5 images, else the held-out "
                             "share)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".ckpt":
        print(f"cellcount finetune: error: --out {out} must end in .ckpt", file=sys.stderr)
        return 2
    if args.folds < 0:
        print(f"cellcount finetune: error: --folds must be 0 (choose), 1 or more, got "
              f"{args.folds}", file=sys.stderr)  # fmt: skip
        return 2
    if not 0 < args.held_out < 1:
        print(f"cellcount finetune: error: --held-out must be in (0, 1), got {args.held_out}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        images = collect_inputs(args.inputs)
        options = FinetuneOptions(images, Path(args.points), out, args.base, args.minutes,
                                  args.held_out, args.seed, not args.quiet, args.folds)  # fmt: skip
        card = finetune(options)
    except (DataError, ValueError, FileNotFoundError) as err:
        print(f"cellcount finetune: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report_markdown(card))
        print(f"wrote {out} (count with: cellcount count IMAGES --model {out} --out DIR)")
    if card["verdict"]["better"] is False:  # said even with --quiet, and said last
        print(f"cellcount finetune: warning: {card['verdict']['text']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
