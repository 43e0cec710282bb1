"""``cellcount export``: a checkpoint to ONNX or TorchScript, checked against PyTorch, or
to a BioImage Model Zoo package (``--format bioimageio``), validated and tested with
bioimageio.core."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cellcount.inference.export import (
    EXPORT_FORMATS,
    PARITY_TOLERANCE,
    SUFFIXES,
    ParityError,
    check_parity,
    export_model,
    read_export_metadata,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount export",
        description="Export a cellcount checkpoint (net + sigmoid, threshold as metadata) "
        "to ONNX or TorchScript and check it against PyTorch.",
    )
    parser.add_argument("--ckpt", type=Path, required=True, help="Lightning checkpoint")
    parser.add_argument("--format", choices=(*EXPORT_FORMATS, "bioimageio"), required=True,
                        dest="fmt")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="default: next to the checkpoint")
    parser.add_argument("--height", type=int, default=512, help="example height for tracing")
    parser.add_argument("--width", type=int, default=512, help="example width for tracing")
    return parser


def default_output(ckpt: Path, fmt: str) -> Path:
    """``model.ckpt`` -> ``model.onnx`` / ``model.torchscript.pt`` / ``model.bioimageio.zip``."""
    suffix = ".bioimageio.zip" if fmt == "bioimageio" else SUFFIXES[fmt]
    return ckpt.with_name(ckpt.stem + suffix)


def export_package(ckpt: Path, out: Path) -> int:
    """The bioimage.io package, checked by bioimageio.core's model test; the exit status."""
    from cellcount.inference.bioimageio import export_bioimageio, test_package

    card_path = ckpt.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    export_bioimageio(ckpt, out, card)
    status, details = test_package(out)
    if status != "passed":
        print(f"error: the package does not pass bioimageio.core's test: {details}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"wrote {out} (bioimage.io model, validated and tested)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0, or 1 on an export or parity error."""
    args = _parser().parse_args(argv)
    out = args.out or default_output(args.ckpt, args.fmt)
    if args.fmt == "bioimageio":
        try:
            return export_package(args.ckpt, out)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    try:
        export_model(args.ckpt, args.fmt, out, args.height, args.width)
        diff = check_parity(args.ckpt, out)
    except ParityError as err:
        print(f"error: parity check failed, {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    meta: dict[str, Any] = read_export_metadata(out)
    print(f"parity: max |p_torch - p_exported| = {diff:.3g} (tolerance {PARITY_TOLERANCE:g})")
    print(f"wrote {out} ({args.fmt}, threshold {meta.get('threshold')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
