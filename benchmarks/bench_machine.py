"""Section 3: what this CPU does at best, a large matmul in fp32 and in bf16."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from benchmarks.bench_common import Section, Stats, fmt_stats, measure, progress, table


def _gflops(value: float) -> str:
    return f"{value:,.1f}"


def run(size: int, repeats: int) -> tuple[Section, dict[str, Stats]]:
    """Time ``size``^3 matmuls; return the section and GFLOP/s stats by dtype name."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    work = 2 * size**3 / 1e9  # GFLOP per product (one multiply + one add per MAC)
    rates: dict[str, Stats] = {}
    rows = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        with torch.inference_mode():
            seconds = measure(partial(torch.matmul, x, y), repeats, warmup=3)
        rate = seconds.rate(work)
        rates[name] = rate
        rows.append(
            [
                f"`torch.matmul` {name}",
                fmt_stats(seconds),
                f"**{_gflops(rate.median)}** ({_gflops(rate.low)}–{_gflops(rate.high)})",
                rate.n,
            ]
        )
        progress(f"matmul {name}: {rate.median:.1f} GFLOP/s")
    ratio = rates["bf16"].median / rates["fp32"].median
    body = (
        f"{size}x{size} @ {size}x{size} ({work:.1f} GFLOP each), {torch.get_num_threads()} "
        f"torch threads, 3 warm-up products then {repeats} timed, per dtype. This is the "
        "reference peak the inference rows are compared with. bf16 / fp32 throughput "
        f"ratio: {ratio:.2f}x.\n\n"
        + table(["operation", "time per product", "GFLOP/s, median (min–max)", "runs"], rows)
    )
    data: dict[str, Any] = {f"{k}_gflops": v.samples for k, v in rates.items()}
    noisy = any(v.noisy for v in rates.values())
    return Section("3. Machine limit: matmul throughput", body, data, noisy), rates
