"""`numba-gn bench --njit`: many small calls from a user's `@numba.njit` loop vs from Python.

`numba_gn.group_norm` can be called from compiled code (`numba_gn.functional_jit`). This
measures what that saves on calls too small for the kernel to dominate: the same loop of
`calls` forward passes over `(2, 8, 8, 32)` float32 samples (32 groups, affine gamma/beta,
channels last, each into its own preallocated output with `out=`) run

* `njit`: inside one `@numba.njit` function (a user's compiled pipeline);
* `python`: as a Python `for` loop calling `numba_gn.group_norm`.

Both loops are compiled or warmed by one untimed run; each of `repeat` samples then times a
whole loop, and the medians are reported per loop and per call, with their ratio (`python /
njit`: above 1, the compiled loop is faster). Both loops write the same bits (checked).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_gn._atomic import write_text
from numba_gn._timing import median_of_runs

__all__ = ["CALLS", "SHAPE", "measure", "njit_loop", "print_report", "python_loop", "run"]

#: One small sample: 16 KiB of float32, where per-call costs show.
SHAPE = (2, 8, 8, 32)
CALLS = 1000
GROUPS = 32
EPSILON = 1e-3


def make_data(calls: int = CALLS, shape: tuple[int, ...] = SHAPE) -> dict[str, np.ndarray]:
    """Seeded inputs `xs` (`calls` samples), `gamma`, `beta` and an output array `ys`."""
    rng = np.random.default_rng(2024)
    xs = rng.standard_normal((calls, *shape), dtype=np.float32)
    channels = shape[-1]
    gamma = (1 + 0.1 * rng.standard_normal(channels)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(channels)).astype(np.float32)
    return {"xs": xs, "gamma": gamma, "beta": beta, "ys": np.zeros_like(xs)}


def python_loop(xs: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ys: np.ndarray) -> None:
    """The loop in Python: one `numba_gn.group_norm` call per sample."""
    from numba_gn import group_norm

    for i in range(xs.shape[0]):
        group_norm(xs[i], GROUPS, gamma, beta, epsilon=EPSILON, out=ys[i])


_compiled: Callable[..., None] | None = None


def njit_loop() -> Callable[..., None]:
    """The same loop as a user's `@numba.njit` function (made on first use: no import cost)."""
    global _compiled
    if _compiled is None:
        import numba

        from numba_gn import group_norm

        def loop(xs, gamma, beta, ys):
            for i in range(xs.shape[0]):
                group_norm(xs[i], GROUPS, gamma, beta, epsilon=EPSILON, out=ys[i])

        _compiled = numba.njit(loop)
    return _compiled


def measure(calls: int = CALLS, repeat: int = 7) -> dict[str, Any]:
    """Median seconds of both loops of `calls` calls, per call, and their ratio."""
    data = make_data(calls)
    xs, gamma, beta = data["xs"], data["gamma"], data["beta"]
    ys_njit, ys_python = data["ys"], np.zeros_like(data["ys"])
    compiled = njit_loop()
    njit_s = median_of_runs(lambda: compiled(xs, gamma, beta, ys_njit), repeat)
    python_s = median_of_runs(lambda: python_loop(xs, gamma, beta, ys_python), repeat)
    return {
        "shape": list(SHAPE),
        "dtype": "float32",
        "groups": GROUPS,
        "calls": calls,
        "repeat": repeat,
        "seconds": {"njit": njit_s, "python": python_s},
        "per_call_seconds": {"njit": njit_s / calls, "python": python_s / calls},
        "ratio": python_s / njit_s,
        "identical": bool(np.array_equal(ys_njit, ys_python)),
    }


def _fmt(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.2f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def print_report(report: dict[str, Any], file: Any = None) -> None:
    """Both medians (per loop and per call) and the ratio."""
    out = file if file is not None else sys.stdout
    calls = report["calls"]
    print(
        f"{calls} calls of numba_gn.group_norm on {tuple(report['shape'])} "
        f"{report['dtype']} (groups={report['groups']}, out=), median of {report['repeat']}",
        file=out,
    )
    head = f"{'loop':<8} {'per loop':>11} {'per call':>11}"
    print(head, file=out)
    print("-" * len(head), file=out)
    for name in ("njit", "python"):
        print(
            f"{name:<8} {_fmt(report['seconds'][name]):>11} "
            f"{_fmt(report['per_call_seconds'][name]):>11}",
            file=out,
        )
    print(
        f"\nratio python / njit: {report['ratio']:.2f}x (above 1: the @njit loop is faster); "
        f"same results: {'yes' if report['identical'] else 'NO'}",
        file=out,
    )


def run(repeat: int = 7, calls: int = CALLS, json_path: str | None = None) -> int:
    """Measure, print and optionally write JSON; 0 on success."""
    report = measure(calls=calls, repeat=repeat)
    print_report(report)
    if json_path:
        write_text(json_path, json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {json_path}")
    return 0 if report["identical"] else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m numba_gn.cli.bench_njit`: the same as `numba-gn bench --njit`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    return run(args.repeat, args.calls, args.json)


if __name__ == "__main__":  # pragma: no cover - manual runs
    sys.exit(main())
