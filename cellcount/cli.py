"""The ``cellcount`` console command: ``cellcount count|export|convert|report ...``.

Training and evaluation are Hydra applications: ``python -m cellcount.train``
and ``python -m cellcount.evaluate``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "count": ("cellcount.count", "count cells in images with a trained model"),
    "export": ("cellcount.export", "export a checkpoint to ONNX or TorchScript"),
    "convert": ("cellcount.convert", "import the authors' released c-ResUnet weights"),
    "report": ("cellcount.report", "Table 1 (Markdown, CSV, figure) from a sweep folder"),
}
USAGE = (
    f"usage: cellcount {{{','.join(COMMANDS)}}} ...\n\n"
    + "\n".join(f"  {name:8s} {text}" for name, (_, text) in COMMANDS.items())
    + (
        "\n\ntraining and evaluation: python -m cellcount.train [overrides], "
        "python -m cellcount.evaluate ckpt=PATH\n"
        "run 'cellcount COMMAND --help' for a command's options."
    )
)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the sub-command's ``main``; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"cellcount: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
