"""Checkpoint I/O: the one loader and the one writer of cellcount checkpoints.

A checkpoint is self-sufficient: the net's registry name and kwargs, the expected
cell diameter and the detection threshold travel inside it (``hyper_parameters``
plus the ``threshold`` buffer), so loading needs no Hydra run folder. Every read
goes through :func:`read_checkpoint`, which unpickles tensors and plain Python
types only (``torch.load(weights_only=True)``): a file that carries other objects,
which could run code when loaded, is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from cellcount.runtime.files import atomic_path
from cellcount.training.module import CellSegModule


class CheckpointError(ValueError):
    """A file that is not a loadable cellcount checkpoint (the message says why and what to do)."""


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """The checkpoint's dict, unpickling tensors and plain types only.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt, not a checkpoint, or carries objects
            that could run code.
    """
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder: give the .ckpt file inside)" if path.is_dir() else ""
        raise FileNotFoundError(f"checkpoint {path} does not exist{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # random bytes, not a foreign object
            raise CheckpointError(
                f"{path} is corrupt or not a PyTorch file (it does not unpickle); use a "
                f"checkpoint from `cellcount train` or `cellcount convert`."
            ) from err
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain types, "
            f"which could run code when loaded. Use checkpoints written by cellcount "
            f"(train, convert); details: {str(err).splitlines()[-1][:200]}"
        ) from err
    except Exception as err:  # random bytes can make the unpickler raise anything
        raise CheckpointError(
            f"{path} is corrupt or not a PyTorch file ({type(err).__name__}); "
            f"use a checkpoint from `cellcount train` or `cellcount convert`."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a cellcount checkpoint (no state_dict); "
            f"use a checkpoint from `cellcount train` or `cellcount convert`."
        )
    return checkpoint


def check_checkpoint(path: Path | str) -> Path:
    """Check that ``path`` loads safely (see :func:`read_checkpoint`); return it.

    Used before handing a file to Lightning (training resume), so an unsafe file
    is refused here rather than relying on Lightning's loading defaults.
    """
    read_checkpoint(path)
    return Path(path)


def load_module(path: Path | str, map_location: str | torch.device = "cpu") -> CellSegModule:
    """The checkpoint's :class:`CellSegModule` in eval mode, channels-last, on ``map_location``.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`read_checkpoint`; also when the
            weights do not fit the architecture the checkpoint names.
    """
    checkpoint = read_checkpoint(path)
    try:
        module = CellSegModule(**checkpoint.get("hyper_parameters", {}))
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a cellcount checkpoint ({type(err).__name__}: {err}); "
            f"use a checkpoint from `cellcount train` or `cellcount convert`."
        ) from err
    # channels-last convolutions are ~1.5x faster on CPU (BENCHMARKS.md section 4) and
    # give the same probabilities to ~1e-6.
    return module.to(map_location).to(memory_format=torch.channels_last).eval()


def checkpoint_dict(module: CellSegModule, half: bool = False) -> dict[str, Any]:
    """A minimal Lightning-loadable checkpoint of ``module`` (weights, threshold, hparams).

    Only tensors and plain types, so :func:`read_checkpoint` accepts it. With
    ``half`` the floating-point weights are stored as float16 (half the size;
    loading casts them back to float32).
    """
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() and v.ndim > 0 else v
                 for k, v in state.items()}  # fmt: skip
    return {
        "state_dict": state,
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
    }


def save_checkpoint(
    module: CellSegModule | dict[str, Any], path: Path | str, half: bool = False
) -> Path:
    """Write a module (or a checkpoint dict) to ``path`` atomically; return the path."""
    checkpoint = module if isinstance(module, dict) else checkpoint_dict(module, half)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)
