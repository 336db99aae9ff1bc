"""Time one training step of the demo CNN at batch 64: numba_gn vs PyTorch (CPU, 2 threads).

    python tools/bench_training_step.py [--repeats 7] [--steps 200]

Both sides run the same model (Conv2D(16,3,same) → GN(4) → SiLU → Conv2D(32,3,s2,same) → GN(8)
→ SiLU → global average pool → Dense(10)), the same loss (softmax cross-entropy on logits) and
optimizer (Adam, eps 1e-7) on the same fixed batch. Each repeat times `--steps` consecutive
steps of one side, then of the other (interleaved, so machine noise hits both alike); the
printed numbers are the medians over repeats of the mean step time. PyTorch is optional
(benchmark-only: `pip install torch`); without it only numba_gn is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from numba_gn.cli.demo import build_demo_model, compile_demo_model
from numba_gn.training.blas import blas_threads

BATCH = 64


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of (64, 8, 8, 1) float32 images in [0, 1) and labels 0-9."""
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    return x, y


def numba_gn_step() -> Callable[[], None]:
    """A closure running one numba_gn training step (model compiled, kernels warm)."""
    model = build_demo_model(0)
    compile_demo_model(model)
    x, y = batch()
    for _ in range(20):
        model.train_step(x, y)
    return lambda: model.train_step(x, y)


def torch_step(threads: int = 2) -> Callable[[], None]:
    """The same step in PyTorch (raises ImportError without torch)."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.GroupNorm(4, 16, eps=1e-3),
        nn.SiLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),  # same output (4x4) as Keras's "same"
        nn.GroupNorm(8, 32, eps=1e-3),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    xn, yn = batch()
    x = torch.from_numpy(xn.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(yn)

    def step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    return step


def time_steps(step: Callable[[], None], n: int, blas: int | None = None) -> float:
    """Mean seconds per step over `n` consecutive steps (BLAS limited as `fit` does)."""
    with blas_threads(blas):
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t0) / n


def main() -> None:
    """Print the median step time of each side and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    sides = {"numba_gn": numba_gn_step()}
    try:
        sides["torch"] = torch_step()
    except ImportError:
        print("torch is not installed: timing numba_gn only (pip install torch to compare)")
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, step in sides.items():
            # numba_gn as inside fit() (BLAS on one thread); torch with its own 2 threads
            blas = 1 if name == "numba_gn" else None
            times[name].append(time_steps(step, args.steps, blas))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:>9}: median {med[k] * 1e3:.3f} ms/step  "
              f"(min {min(v) * 1e3:.3f}, max {max(v) * 1e3:.3f}; {args.repeats} x {args.steps})")
    if "torch" in med:
        print(f"    ratio: numba_gn / torch = {med['numba_gn'] / med['torch']:.2f}")


if __name__ == "__main__":
    main()
