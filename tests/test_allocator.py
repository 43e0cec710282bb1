"""glibc allocator tuning: applied where it is safe, a no-op elsewhere, used by training."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import cellcount.training.train as train_module
from cellcount.inference.predict import predict_probabilities
from cellcount.runtime import allocator
from cellcount.runtime.allocator import tune_allocator


def test_allocator_tuning_is_a_safe_no_op_where_it_does_not_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(allocator.MALLOC_TUNING_ENV, "0")
    assert tune_allocator() is False
    monkeypatch.delenv(allocator.MALLOC_TUNING_ENV)
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")  # the user's own settings win
    assert tune_allocator() is False
    monkeypatch.delenv("MALLOC_MMAP_MAX_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert tune_allocator() is False
    monkeypatch.delenv("GLIBC_TUNABLES")

    def no_glibc(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name}")  # as on macOS

    with monkeypatch.context() as patch:
        patch.setattr(os, "confstr", no_glibc)
        assert tune_allocator() is False
    glibc = hasattr(os, "confstr") and "CS_GNU_LIBC_VERSION" in os.confstr_names
    if glibc and os.confstr("CS_GNU_LIBC_VERSION"):
        assert tune_allocator() is True
        image = np.random.default_rng(6).random((64, 72, 3), dtype=np.float32)
        assert predict_probabilities(torch.nn.Conv2d(3, 1, 1), image).shape == (64, 72)


def test_training_tunes_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(train_module, "tune_allocator", lambda: calls.append(True) or True)
    monkeypatch.setattr(train_module, "write_run_info", _stop)
    with pytest.raises(_StopError):
        train_module.train(OmegaConf.create({"paths": {"run_dir": "unused"},
                                             "skip_finished": False, "seed": 0}))  # fmt: skip
    assert calls == [True]


class _StopError(Exception):
    """Raised to end ``train`` right after its set-up."""


def _stop(*_: object) -> None:
    raise _StopError
