"""Time every kernel strategy on the inputs of docs/threads.md's "Which kernels run" table.

    python tools/strategy_table.py [--repeat 9]

Each input runs forward and backward (float32) with the strategy forced by
`numba_gn._engine.forced` (`serial`, `fused`, `chunked`), plus the automatic choice; the table
gives median microseconds of `--repeat` samples, forward / backward, as a Markdown table. Only
timings within one row of one run compare: the limits in `numba_gn._knobs` are chosen from it.
"""

from __future__ import annotations

import argparse

import numpy as np

import numba_gn
from numba_gn import _engine
from numba_gn._timing import median_seconds

#: (shape, channel axis, groups): the docs table's inputs, channels-last then channels-first,
#: up to 2 MiB of float32 (larger inputs take a parallel strategy whatever the limits are).
CASES = [
    ((32, 8, 8, 16), -1, 8),
    ((2, 32, 32, 16), -1, 8),
    ((16, 16, 16, 16), -1, 8),
    ((4, 16, 16, 64), -1, 32),
    ((2, 32, 32, 64), -1, 32),
    ((4, 16, 16, 256), -1, 32),
    ((3, 32, 32, 256), -1, 32),
    ((2, 64, 64, 16), -1, 8),
    ((1, 256, 8, 8), 1, 32),
    ((1, 256, 16, 16), 1, 32),
    ((4, 256, 16, 16), 1, 32),
    ((32, 16, 8, 8), 1, 8),
    ((64, 32, 16, 16), 1, 32),
    ((8, 64, 32, 32), 1, 32),
]
STRATEGIES = ("serial", "fused", "chunked", None)


def _median_us(fn, repeat: int) -> float:
    return median_seconds(fn, repeat=repeat, min_time=5e-3) * 1e6


def measure(shape, axis: int, groups: int, strategy: str | None, repeat: int) -> str:
    """`"forward / backward"` median microseconds of one input on one strategy."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    channels = shape[axis]
    gamma = np.ones(channels, np.float32)
    beta = np.zeros(channels, np.float32)
    y = np.empty_like(x)
    dx = np.empty_like(x)
    with _engine.forced(strategy=strategy):
        _, mean, rstd = numba_gn.group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
        path = _engine.last_path()
        fwd = _median_us(
            lambda: numba_gn.group_norm(x, groups, gamma, beta, axis=axis, out=y), repeat
        )
        bwd = _median_us(
            lambda: numba_gn.group_norm_backward(
                dy, x, mean, rstd, groups, gamma, axis=axis, out=dx
            ),
            repeat,
        )
    cell = f"{fwd:.1f} / {bwd:.1f}"
    if strategy is None:
        cell += f" ({path.strategy})"
    elif path.strategy != strategy:  # a forked child, or one thread: the serial kernels ran
        cell += f" (ran {path.strategy})"
    return cell


def main() -> None:
    """Print the table for every case in `CASES`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="samples per median")
    args = parser.parse_args()
    import numba

    print(f"{numba.get_num_threads()} threads; microseconds, forward / backward, float32\n")
    print("| input | serial | fused | chunked | automatic |")
    print("|---|---|---|---|---|")
    for shape, axis, groups in CASES:
        cells = [measure(shape, axis, groups, s, args.repeat) for s in STRATEGIES]
        layout = "channels-last" if axis == -1 else "channels-first"
        size = int(np.prod(shape))
        label = f"{shape} {layout}, {groups} groups: {size:,} elements"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nthreading layer: {numba.threading_layer()}")


if __name__ == "__main__":
    main()
