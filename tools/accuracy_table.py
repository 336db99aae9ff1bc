"""Accuracy of group normalisation at large offsets: numba_gn vs PyTorch vs Keras vs NumPy.

Prints a Markdown table of the max abs error of the forward output (and relative errors of the
backward for numba_gn and PyTorch) against a float64 reference, on float32 inputs
`offset + N(0, 1)`. PyTorch and Keras are used when importable (Keras with the NumPy backend).

    python tools/accuracy_table.py                  # print the table
    python tools/accuracy_table.py --write docs/numerics.md   # replace the marked block
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "numpy")

import numba_gn  # noqa: E402
from numba_gn.numpy_reference import group_norm_numpy  # noqa: E402

SHAPE_NHWC = (4, 32, 32, 64)
GROUPS = 32
EPS = 1e-3
OFFSETS = (0.0, 1e2, 1e4, 1e6)
BEGIN, END = "<!-- accuracy-table:begin -->", "<!-- accuracy-table:end -->"


def _reference_backward(x64, dy64):
    """float64 dx and dgamma by the closed form (channels-last)."""
    n, h, w, c = x64.shape
    d = c // GROUPS
    xg = x64.reshape(n, h * w, GROUPS, d)
    dg = dy64.reshape(n, h * w, GROUPS, d)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    rstd = 1.0 / np.sqrt(((xg - mean) ** 2).mean(axis=(1, 3), keepdims=True) + EPS)
    xhat = (xg - mean) * rstd
    dx = rstd * (dg - dg.mean(axis=(1, 3), keepdims=True)
                 - xhat * (dg * xhat).mean(axis=(1, 3), keepdims=True))
    dgamma = (dg * xhat).sum(axis=(0, 1)).reshape(-1)
    return dx.reshape(x64.shape), dgamma


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _implementations():
    """Map a name to `run(x_nhwc, dy_nhwc) -> (y, dx or None, dgamma or None)`."""
    impls = {}

    def ours(axis_first):
        def run(x, dy):
            if axis_first:
                xc, dyc = x.transpose(0, 3, 1, 2).copy(), dy.transpose(0, 3, 1, 2).copy()
                y, m, r = numba_gn.group_norm(xc, GROUPS, axis=1, epsilon=EPS, return_stats=True)
                dx, dgam, _ = numba_gn.group_norm_backward(dyc, xc, m, r, GROUPS, axis=1)
                return y.transpose(0, 2, 3, 1), dx.transpose(0, 2, 3, 1), dgam
            y, m, r = numba_gn.group_norm(x, GROUPS, epsilon=EPS, return_stats=True)
            dx, dgam, _ = numba_gn.group_norm_backward(dy, x, m, r, GROUPS)
            return y, dx, dgam
        return run

    impls["numba_gn, channels-last"] = ours(False)
    impls["numba_gn, channels-first"] = ours(True)
    impls["NumPy float32 (two-pass)"] = lambda x, dy: (
        group_norm_numpy(x, GROUPS, epsilon=EPS, dtype=None), None, None)
    try:
        import torch

        def torch_run(channels_last):
            def run(x, dy):
                t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
                g = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())
                if channels_last:
                    t = t.contiguous(memory_format=torch.channels_last)
                    g = g.contiguous(memory_format=torch.channels_last)
                t.requires_grad_(True)
                w = torch.ones(x.shape[-1], requires_grad=True)
                b = torch.zeros(x.shape[-1], requires_grad=True)
                y = torch.nn.functional.group_norm(t, GROUPS, w, b, EPS)
                y.backward(g)
                back = (0, 2, 3, 1)
                return (y.detach().numpy().transpose(back), t.grad.numpy().transpose(back),
                        w.grad.numpy())
            return run

        impls[f"PyTorch {torch.__version__}, channels-first"] = torch_run(False)
        impls[f"PyTorch {torch.__version__}, channels-last"] = torch_run(True)
    except ImportError:
        pass
    try:
        import keras

        layer = keras.layers.GroupNormalization(groups=GROUPS, epsilon=EPS)
        impls[f"Keras {keras.__version__} (numpy backend)"] = lambda x, dy: (
            np.asarray(layer(x)), None, None)
    except ImportError:
        pass
    return impls


def build_table() -> str:
    """The Markdown table (forward max abs error; backward relative errors)."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(SHAPE_NHWC)
    dy = rng.standard_normal(SHAPE_NHWC).astype(np.float32)
    rows = {}
    for offset in OFFSETS:
        x = (offset + noise).astype(np.float32)
        x64 = x.astype(np.float64)
        y_ref = group_norm_numpy(x64, GROUPS, epsilon=EPS)
        dx_ref, dg_ref = _reference_backward(x64, dy.astype(np.float64))
        for name, run in _implementations().items():
            with np.errstate(all="ignore"):
                y, dx, dgam = run(x, dy)
                err = float(np.max(np.abs(np.asarray(y, np.float64) - y_ref)))
                back = "" if dx is None else f"{_rel(dx, dx_ref):.1e} / {_rel(dgam, dg_ref):.1e}"
            rows.setdefault(name, []).append(("NaN" if np.isnan(err) else f"{err:.1e}", back))
    head = "| implementation | " + " | ".join(f"y @ {o:g}" for o in OFFSETS)
    head += " | dx / dγ @ 1e4 (rel) |\n|---|" + "---|" * (len(OFFSETS) + 1) + "\n"
    body = ""
    for name, cells in rows.items():
        body += f"| {name} | " + " | ".join(c[0] for c in cells)
        body += f" | {cells[OFFSETS.index(1e4)][1] or '—'} |\n"
    note = (f"\nfloat32 input `offset + N(0,1)` of shape {SHAPE_NHWC} (NHWC), {GROUPS} groups, "
            f"epsilon {EPS}; errors against a float64 two-pass reference.\n")
    return head + body + note


def main() -> None:
    """Print the table, or write it between the markers of a Markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="replace the marked block in FILE")
    args = parser.parse_args()
    table = build_table()
    if not args.write:
        print(table)
        return
    with open(args.write, encoding="utf-8") as f:
        text = f.read()
    block = f"{BEGIN}\n{table}{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{args.write} has no {BEGIN} ... {END} block")
    with open(args.write, "w", encoding="utf-8") as f:
        f.write(pattern.sub(lambda _: block, text))


if __name__ == "__main__":
    main()
