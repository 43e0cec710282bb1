"""``cellcount report``: Table 1 and the F1 curves of a training sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellcount.evaluation.report import RESULTS, TRAIN_HINT, collect_results, write_report


def _has_results(root: Path) -> bool:
    return root.is_dir() and next(root.rglob(RESULTS), None) is not None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcount report",
        description="Summarise a training sweep as the paper's Table 1 and F1 curves.",
    )
    parser.add_argument("dir", type=Path, help="sweep folder, e.g. outputs/multiruns/ablation_grid")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: DIR)")
    parser.add_argument("--ablation", default="full", help="ablation to plot (default: full)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI: print Table 1 and the files written.

    Returns:
        0 on success; 1 when no job finished (the report, listing the failures,
        is still written); 2 when DIR holds no ``results.json`` at all.
    """
    args = _parser().parse_args(argv)
    if not _has_results(args.dir):
        print(f"error: no {RESULTS} under {args.dir}. Train first, e.g. `{TRAIN_HINT}`, "
              "then run this on its sweep folder (outputs/multiruns/<sweep_name>).",
              file=sys.stderr)  # fmt: skip
        return 2
    paths = write_report(args.dir, args.out, args.ablation)
    print(paths["markdown"].read_text())
    for path in paths.values():
        print(f"wrote {path}")
    if not collect_results(args.dir):
        print(f"error: no finished job under {args.dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
