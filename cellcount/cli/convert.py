"""``cellcount convert``: the authors' released weights to a cellcount checkpoint."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from cellcount.inference.convert import ARCH, SOURCE_KINDS, ConversionError, convert


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount convert",
        description="Convert the authors' released c-ResUnet weights (Keras .h5, the "
        "pickled Keras dict, or an FNC v2 PyTorch state dict) into a cellcount checkpoint.",
    )
    parser.add_argument("source", type=Path, help="weights file to convert")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.ckpt)")
    parser.add_argument("--kind", choices=SOURCE_KINDS, default="auto", help="source format")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="detection threshold to store, in (0, 1)"
    )
    parser.add_argument(
        "--n-features-start", type=int, default=None, help="block-1 width (default: inferred)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 conversion error)."""
    args = _parser().parse_args(argv)
    try:
        out = convert(args.source, args.kind, args.out, args.threshold, args.n_features_start)
    except (ConversionError, pickle.UnpicklingError, OSError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {out} ({ARCH}, threshold {args.threshold}); load it with "
        "CellSegModule.load_from_checkpoint"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
