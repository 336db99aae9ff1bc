"""`numba-gn check`: accuracy against a float64 NumPy reference and speed against a copy.

Normalises a float32 batch on every layout (channels-last, channels-first, a middle axis, a
tuple of axes), at offsets 0 and 1e4, and prints the max abs error and the time per call next to
`np.copyto` of the same array. Exits with status 1 if any error exceeds the tolerance.
"""

from __future__ import annotations

import argparse

import numpy as np

#: layout name -> (shape, axis); every case uses 32 groups.
LAYOUTS = {
    "channels-last": ((8, 32, 32, 64), -1),
    "channels-first": ((8, 64, 32, 32), 1),
    "middle axis": ((8, 32, 64, 32), 2),
    "tuple axis": ((8, 16, 4, 16, 32), (2, 3)),
}
GROUPS = 32
TOLERANCE = 1e-5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`check` options."""
    parser.add_argument(
        "--repeat", type=int, default=15, help="timing samples per case (median is shown)"
    )


def run(args: argparse.Namespace) -> int:
    """Run every case, print the table, return 0 if all errors are within tolerance."""
    from numba_gn import _timing, group_norm, warmup
    from numba_gn.numpy_reference import group_norm_numpy

    print("compiling / loading kernels ...", flush=True)
    warmup(dtypes=("float32",))
    rng = np.random.default_rng(0)
    header = (
        f"{'layout':<15} {'shape':<20} {'axis':<7} {'err@0':>8} {'err@1e4':>8} "
        f"{'time':>9} {'copy':>9} {'x copy':>7}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, (shape, axis) in LAYOUTS.items():
        noise = rng.standard_normal(shape)
        errors = []
        for offset in (0.0, 1e4):
            x = (offset + noise).astype(np.float32)
            y = group_norm(x, GROUPS, axis=axis)
            ref = group_norm_numpy(x, GROUPS, axis=axis)
            errors.append(float(np.max(np.abs(y - ref))))
        out = np.empty_like(x)
        t = _timing.median_seconds(
            lambda x=x, out=out, axis=axis: group_norm(x, GROUPS, axis=axis, out=out),
            repeat=args.repeat,
        )
        t_copy = _timing.copy_seconds(x, repeat=args.repeat)
        worst = max(worst, *errors)
        print(
            f"{name:<15} {str(shape):<20} {str(axis):<7} {errors[0]:8.1e} {errors[1]:8.1e} "
            f"{t * 1e3:7.3f}ms {t_copy * 1e3:7.3f}ms {t / t_copy:6.2f}x"
        )
    ok = worst <= TOLERANCE
    print(
        f"\nmax abs error {worst:.1e} (tolerance {TOLERANCE:.0e}): {'OK' if ok else 'FAILED'}"
        "\nfloat32 input; reference: float64 NumPy; time: median per call with a preallocated "
        "output; copy: np.copyto of the same array."
    )
    return 0 if ok else 1
