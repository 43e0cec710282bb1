"""Section 3: what this CPU does at best, a large matmul in fp32 and in bf16."""

from __future__ import annotations

from functools import partial

import torch

from benchmarks.bench_common import Result, measure, progress

WARMUP = 3  # untimed products per dtype
DTYPES = (("fp32", torch.float32), ("bf16", torch.bfloat16))


def run(size: int, repeats: int) -> Result:
    """Time ``size``^3 matmuls in fp32 and bf16.

    Returns:
        ``size``, ``repeats``, ``warmup``, ``threads``, ``gflop`` (per product) and
        ``seconds``: a :class:`Stats` of seconds per product by dtype name.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    work = 2 * size**3 / 1e9  # GFLOP per product (one multiply + one add per MAC)
    seconds = {}
    for name, dtype in DTYPES:
        x, y = a.to(dtype), b.to(dtype)
        with torch.inference_mode():
            seconds[name] = measure(partial(torch.matmul, x, y), repeats, warmup=WARMUP)
        progress(f"matmul {name}: {seconds[name].rate(work).median:.1f} GFLOP/s")
    return {
        "size": size,
        "repeats": repeats,
        "warmup": WARMUP,
        "threads": torch.get_num_threads(),
        "gflop": work,
        "seconds": seconds,
    }


def peaks(result: Result) -> dict[str, float]:
    """Median GFLOP/s by dtype name of a :func:`run` result: the inference rows' reference."""
    return {name: stats.rate(result["gflop"]).median for name, stats in result["seconds"].items()}
