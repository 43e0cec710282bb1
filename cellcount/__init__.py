"""cellcount: count cells in fluorescence microscopy images with c-ResUnet.

Reimplementation of Morelli, Clissa et al., "Automating cell counting in
fluorescent microscopy through deep learning with c-ResUnet", Sci Rep 2021.

Public API: ``from cellcount import Counter``. Importing the package is light:
torch and friends load only when ``Counter`` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CountResult", "Counter", "__version__"]

if TYPE_CHECKING:
    from cellcount.counter import Counter, CountResult


def __getattr__(name: str) -> Any:
    if name in ("Counter", "CountResult"):
        from cellcount import counter

        return getattr(counter, name)
    raise AttributeError(f"module 'cellcount' has no attribute {name!r}")
