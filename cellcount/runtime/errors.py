"""One-line messages for the errors a user can fix (bad data, options or config keys).

Hydra reports an exception as a long traceback with the useful line last; the
entry points catch the fixable ones and print ``cellcount COMMAND: error: KEY: what``
instead. ``HYDRA_FULL_ERROR=1`` keeps the full traceback.
"""

from __future__ import annotations

import os
import re
import sys

from omegaconf.errors import MissingMandatoryValue

from cellcount.data.errors import DataError

FIXABLE = (DataError, ValueError, FileNotFoundError, KeyError, MissingMandatoryValue)


def fixable_message(err: BaseException) -> str | None:
    """``"key: message"`` for a fixable error (unwrapping Hydra's instantiation errors),
    else None (a bug: keep its traceback)."""
    cause = err.__cause__ if err.__cause__ is not None else err
    if not isinstance(cause, FIXABLE) and type(cause).__name__ != "MisconfigurationException":
        return None
    text = str(cause.args[0]) if isinstance(cause, KeyError) and cause.args else str(cause)
    text = text.splitlines()[0] if text else type(cause).__name__
    key = re.search(r"full_key: (\S+)", str(err))
    if key and key.group(1) not in text:
        text = f"{key.group(1)}: {text}"
    return text


def exit_on_fixable(err: BaseException, command: str) -> None:
    """Print a fixable error as one line and exit with status 2; return for other errors
    (and always under ``HYDRA_FULL_ERROR=1``) so the caller re-raises."""
    message = fixable_message(err)
    if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    print(f"cellcount {command}: error: {message}\n(HYDRA_FULL_ERROR=1 shows the traceback)",
          file=sys.stderr)  # fmt: skip
    raise SystemExit(2)
