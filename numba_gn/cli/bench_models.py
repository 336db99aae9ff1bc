"""`numba-gn bench --models`: training step and inference of whole networks, next to PyTorch.

The networks are `numba_gn.cli.architectures`' residual CNN and UNet (GroupNorm + SiLU),
float32, on one fixed batch (64 images of 16x16x3 by default). For each network and framework
a fresh Python process builds the model, runs a few warm-up steps (compiling or loading the
kernels, allocating optimizer state), then times `--repeat` rounds of `--steps` steps and
reports the median time per step:

* training step: forward, loss, gradients, Adam update. numba_gn: `model.train_step(x, y)`
  with BLAS limited as `fit` limits it; PyTorch: `zero_grad`, `loss.backward()`,
  `opt.step()` on channels-first tensors, `torch.set_num_threads(threads)`;
* inference: numba_gn `model.predict(x, batch_size=len(x))`; PyTorch `model.eval()` and
  `model(x)` under `torch.no_grad()`.

The loss is softmax cross-entropy on the ResNet's logits and mean squared error on the UNet's
output (a denoiser's). Every framework runs in its own process, so two OpenMP runtimes never
share one. numba_gn's side also reports where a training step's time goes, from `cProfile`
over the timed steps: convolutions (their forward and backward ops, BLAS included), GroupNorm
(forward and backward ops), and the rest (activations, adds, loss, optimizer, the tape).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from numba_gn._atomic import write_text

__all__ = ["MODELS", "measure", "print_table"]

MODELS = ("resnet", "unet")
FRAMEWORKS = ("numba_gn", "torch")


def _batch(model: str, batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed batch: images in [0, 1) and integer labels (ResNet) or clean targets (UNet)."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    if model == "resnet":
        return x, rng.integers(0, 10, batch)
    return x, (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)


def _median_step(fn: Callable[[], object], steps: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def _numba_gn_worker(model_name: str, x: np.ndarray, y: np.ndarray, steps: int,
                     repeat: int) -> dict[str, Any]:
    import cProfile
    import pstats

    from numba_gn import losses, optimizers
    from numba_gn.cli import architectures
    from numba_gn.training.blas import blas_threads

    if model_name == "resnet":
        model = architectures.resnet(x.shape[1:])
        loss: Any = losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        model = architectures.unet(x.shape[1:])
        loss = losses.MeanSquaredError()
    model.compile(optimizer=optimizers.Adam(1e-3), loss=loss)
    with blas_threads(model.blas_threads):
        for _ in range(5):
            model.train_step(x, y)
        step = _median_step(lambda: model.train_step(x, y), steps, repeat)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            model.train_step(x, y)
        profiler.disable()
    model.predict(x, batch_size=len(x), verbose=0)
    predict = _median_step(lambda: model.predict(x, batch_size=len(x), verbose=0), steps, repeat)
    return {"train_step_s": step, "predict_s": predict,
            "breakdown": _breakdown(pstats.Stats(profiler), steps), "blas": _blas()}


def _blas() -> str | None:
    """NumPy's BLAS and the kernels it chose for this CPU, e.g. "openblas 0.3.31 (SkylakeX)".

    The convolutions' matrix products run there, and OpenBLAS's choice (which
    `OPENBLAS_CORETYPE` overrides) moves the networks' times by up to 2x. None without
    threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
            arch = lib.get("architecture")
            name = f"{lib.get('internal_api')} {lib.get('version')}"
            return f"{name} ({arch})" if arch else name
    return None


def _breakdown(stats: Any, steps: int) -> dict[str, float]:
    """Seconds per step in convolution ops, GroupNorm ops and everything else."""
    total = sum(v[2] for v in stats.stats.values()) / steps  # total of own times
    parts = {"convolution": 0.0, "group_norm": 0.0}
    for (filename, _, func), (_, _, _, cumtime, _) in stats.stats.items():
        if func not in ("forward", "backward"):
            continue
        if filename.endswith(("ops_conv.py",)):
            parts["convolution"] += cumtime / steps
        elif filename.endswith("ops_groupnorm.py"):
            parts["group_norm"] += cumtime / steps
    parts["other"] = max(total - parts["convolution"] - parts["group_norm"], 0.0)
    return parts


def _torch_worker(model_name: str, x: np.ndarray, y: np.ndarray, steps: int, repeat: int,
                  threads: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from numba_gn.cli import architectures

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if model_name == "resnet":
        model = architectures.torch_resnet()
        yt = torch.from_numpy(y)
        loss_fn: Any = nn.CrossEntropyLoss()
    else:
        model = architectures.torch_unet()
        yt = torch.from_numpy(np.ascontiguousarray(y.transpose(0, 3, 1, 2)))
        loss_fn = nn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def train_step() -> None:
        opt.zero_grad()
        loss_fn(model(xt), yt).backward()
        opt.step()

    for _ in range(5):
        train_step()
    step = _median_step(train_step, steps, repeat)
    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(xt)

    infer()
    return {"train_step_s": step, "predict_s": _median_step(infer, steps, repeat),
            "version": torch.__version__}


def _worker(argv: list[str]) -> None:
    framework, model_name, batch, size, steps, repeat, threads = argv
    x, y = _batch(model_name, int(batch), int(size))
    if framework == "numba_gn":
        result = _numba_gn_worker(model_name, x, y, int(steps), int(repeat))
    else:
        result = _torch_worker(model_name, x, y, int(steps), int(repeat), int(threads))
    print(json.dumps(result))


def measure(models: tuple[str, ...] = MODELS, *, batch: int = 64, size: int = 16,
            steps: int = 10, repeat: int = 5, threads: int = 2,
            with_torch: bool = True) -> list[dict[str, Any]]:
    """One row per network: numba_gn's and PyTorch's step and inference times (each its process).

    PyTorch's entries are None when it is not installed or `with_torch` is false.
    """
    import importlib.util

    frameworks = ["numba_gn"]
    if with_torch and importlib.util.find_spec("torch") is not None:
        frameworks.append("torch")
    rows = []
    for model_name in models:
        row: dict[str, Any] = {"model": model_name, "batch": batch, "size": size}
        for framework in frameworks:
            cmd = [sys.executable, "-m", "numba_gn.cli.bench_models", "--worker", framework,
                   model_name, str(batch), str(size), str(steps), str(repeat), str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{framework} {model_name} worker failed:\n{out.stderr}")
            row[framework] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    """The rows as a plain-text table; ratios are numba_gn's time / PyTorch's (below 1: faster)."""
    file = file or sys.stdout
    print(f"{'model':<8} {'batch':>5} {'pass':<10} {'numba_gn':>10} {'torch':>10} {'ratio':>6}"
          f"   numba_gn step: conv / group_norm / other", file=file)
    blas = next((row["numba_gn"].get("blas") for row in rows if row["numba_gn"].get("blas")), None)
    for row in rows:
        ours, theirs = row["numba_gn"], row.get("torch")
        for key, label in (("train_step_s", "train"), ("predict_s", "predict")):
            t = theirs[key] if theirs else None
            ratio = f"{ours[key] / t:6.2f}" if t else "   n/a"
            extra = ""
            if key == "train_step_s":
                b = ours["breakdown"]
                extra = (f"   {b['convolution'] * 1e3:.2f} / {b['group_norm'] * 1e3:.2f} / "
                         f"{b['other'] * 1e3:.2f} ms")
            torch_ms = f"{t * 1e3:8.2f}ms" if t else "       n/a"
            print(f"{row['model']:<8} {row['batch']:>5} {label:<10} {ours[key] * 1e3:8.2f}ms "
                  f"{torch_ms} {ratio}{extra}", file=file)
    if blas:
        print(f"numba_gn's matrix products: {blas}", file=file)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (`--worker` is the per-framework child process)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        _worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, action="append")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    rows = measure(tuple(args.model or MODELS), batch=args.batch, size=args.size,
                   steps=args.steps, repeat=args.repeat, with_torch=not args.no_torch)
    print_table(rows)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
