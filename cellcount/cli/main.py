"""The ``cellcount`` command: one entry point for every stage.

``cellcount train`` and ``cellcount evaluate`` are the Hydra applications
``python -m cellcount.train`` / ``python -m cellcount.evaluate`` and take the same
overrides; the other sub-commands have argparse options (``--help``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from cellcount import __version__

# name -> (module with main(argv) -> int, one-line description)
COMMANDS = {
    "count": ("cellcount.cli.count", "count cells in images with a trained model"),
    "finetune": ("cellcount.cli.finetune", "adapt a model to a new stain from clicked points"),
    "train": ("cellcount.training.train", "train a net (Hydra overrides, e.g. model=unet)"),
    "evaluate": ("cellcount.training.evaluate", "score a checkpoint: ckpt=PATH [data=...]"),
    "report": ("cellcount.cli.report", "Table 1 (Markdown, CSV, figure) from a sweep folder"),
    "export": ("cellcount.cli.export", "export a checkpoint to ONNX or TorchScript"),
    "convert": ("cellcount.cli.convert", "import the authors' released c-ResUnet weights"),
    "samples": ("cellcount.cli.samples", "list or locate the real sample images shipped"),
}
HYDRA_COMMANDS = ("train", "evaluate")
USAGE = (
    f"usage: cellcount [--version] {{{','.join(COMMANDS)}}} ...\n\n"
    + "\n".join(f"  {name:9s} {text}" for name, (_, text) in COMMANDS.items())
    + "\n\nrun 'cellcount COMMAND --help' for a command's options."
)


def _run_hydra(command: str, args: list[str]) -> int:
    """Run a Hydra entry point with ``args`` as its command line (Hydra reads sys.argv)."""
    module = importlib.import_module(COMMANDS[command][0])
    saved = sys.argv
    sys.argv = [f"cellcount {command}", *args]
    try:
        module.main()
    except SystemExit as exit_:  # Hydra exits on --help and on errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    finally:
        sys.argv = saved
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the sub-command; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"cellcount {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"cellcount: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if args[0] in HYDRA_COMMANDS:
        return _run_hydra(args[0], args[1:])
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
