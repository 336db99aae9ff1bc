"""`numba-gn demo`: train a small CNN with GroupNormalization on scikit-learn's digits.

The data set (1,797 8x8 grey images of the digits 0-9) ships inside scikit-learn, so nothing is
downloaded; scikit-learn (and matplotlib for `--plot`) come with the `demo` extra:
`pip install -e ".[demo]"`. A fixed 297 of the images (a shuffle with seed 0, the same for
every `--seed`) are held out for the test accuracy; 10% of the rest is used for validation
during training. `--seed` sets the initial weights and the order of the batches.

`--model resnet` trains a residual network written with the functional API instead, and
`--compare-bn` compares BatchNormalization with GroupNormalization across batch sizes (both in
`numba_gn.cli.demo_models`). The accuracies and times measured are in the README.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

#: Images held out for the test accuracy.
TEST_SIZE = 297

#: The warm-up cases (`numba_gn._warmup.cases`) that between them compile every kernel the
#: demo's training step calls, and those kernels: with an empty kernel cache they are compiled
#: in parallel processes before training starts (Numba compiles with the GIL held, so one
#: process compiles on one core).
DEMO_CASES = (
    "rows, serial",
    "col2im, parallel",
    "activations, serial",
    "activations, parallel",
)
DEMO_KERNELS = (
    "rows.forward_ser",
    "rows.backward_ser",
    "conv._col2im_par",
    "activations.forward_ser",
    "activations.backward_ser",
    "activations.forward_par",
    "activations.backward_par",
)


def warm_kernels_in_parallel() -> int:
    """Compile the demo's kernels in parallel processes when the cache lacks them.

    Returns the number of processes used: 0 when every kernel is cached already, the cache
    cannot keep new kernels, or there is one core (the training step then compiles what it
    needs itself, as any first call does).
    """
    import os

    import numba

    from numba_gn import _cache, _warmup

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = min(cores or 1, 4)
    kernels = DEMO_KERNELS
    parallel = numba.get_num_threads() > 1  # otherwise the parallel kernels are never called
    if not parallel:
        kernels = tuple(k for k in kernels if not k.endswith("_par"))
    if jobs < 2 or not _cache.status()["writable"] or _warmup.cached(kernels):
        return 0
    _warmup.warmup(("float32",), parallel=parallel, names=DEMO_CASES, jobs=jobs)
    return jobs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--epochs`, `--batch-size`, `--seed`, `--plot FILE.png`, `--quiet`."""
    parser.add_argument(
        "--model", choices=("cnn", "resnet"), default="cnn",
        help="cnn: the small Sequential CNN (default); resnet: a residual network with three "
        "blocks, written with the functional API",
    )
    parser.add_argument(
        "--compare-bn", action="store_true",
        help="train the residual network with BatchNormalization and with GroupNormalization "
        "at batch sizes 2, 8 and 32 and print the test accuracies (--plot draws them); nine "
        "trainings, several minutes",
    )
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default 40; 20 for resnet; 8 for --compare-bn)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling")
    parser.add_argument("--plot", metavar="FILE.png", help="write loss/accuracy curves here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_demo_model(seed: int = 0) -> Any:
    """The demo's CNN for (8, 8, 1) images and 10 classes (logits out), seeded.

    Conv2D(16, 3, "same") → GroupNormalization(4) → SiLU → Conv2D(32, 3, strides=2, "same")
    → GroupNormalization(8) → SiLU → GlobalAveragePooling2D → Dense(10).
    """
    from numba_gn.layers.conv import Conv2D
    from numba_gn.layers.core import Activation
    from numba_gn.layers.dense import Dense
    from numba_gn.layers.group_normalization import GroupNormalization
    from numba_gn.layers.input_layer import Input
    from numba_gn.layers.pooling import GlobalAveragePooling2D
    from numba_gn.models.sequential import Sequential
    from numba_gn.params.initializers import GlorotUniform

    return Sequential(
        [
            Input((8, 8, 1)),
            Conv2D(16, 3, padding="same", kernel_initializer=GlorotUniform(seed)),
            GroupNormalization(4),
            Activation("silu"),
            Conv2D(32, 3, strides=2, padding="same", kernel_initializer=GlorotUniform(seed + 1)),
            GroupNormalization(8),
            Activation("silu"),
            GlobalAveragePooling2D(),
            Dense(10, kernel_initializer=GlorotUniform(seed + 2)),
        ],
        name="digits_cnn",
    )


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, ...]:
    """The digits as `x_train, y_train, x_test, y_test`, the last 297 images held out.

    Images are scaled to [0, 1] as (N, 8, 8, 1) float32 and shuffled with `seed` first
    (the demo always uses seed 0, so its test images never change).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:-TEST_SIZE], y[:-TEST_SIZE], x[-TEST_SIZE:], y[-TEST_SIZE:]


def compile_demo_model(
    model: Any, learning_rate: float = 3e-3, decay_steps: int | None = None
) -> None:
    """Adam (cosine decay over `decay_steps` when given), cross-entropy on logits, accuracy."""
    from numba_gn.training import losses, optimizers

    lr: Any = learning_rate
    if decay_steps:
        lr = optimizers.CosineDecay(learning_rate, decay_steps)
    model.compile(
        optimizer=optimizers.Adam(lr),
        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # With an empty cache the fused GroupNorm + activation kernels would add their own
        # compile (docs/fused-models.md), longer than this demo's training, and they are not
        # faster at its sizes.
        fuse=False,
    )


def run(args: argparse.Namespace) -> int:
    """Train, report the test accuracy and the time, optionally plot the curves."""
    try:
        x_train, y_train, x_test, y_test = load_digits_split(0)
    except ImportError:
        print(
            "numba-gn demo needs scikit-learn (for its bundled digits data): "
            'pip install -e ".[demo]"',
            file=sys.stderr,
        )
        return 1
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "--plot needs matplotlib: pip install -e \".[demo]\" (or pip install matplotlib)",
                file=sys.stderr,
            )
            return 1

    if args.compare_bn or args.model == "resnet":
        from numba_gn.cli import demo_models

        data = (x_train, y_train, x_test, y_test)
        if args.compare_bn:
            demo_models.run_compare_bn(args.epochs or 8, args.seed, data, args.plot)
        else:
            demo_models.run_resnet(args.epochs or 20, args.batch_size, args.seed, args.quiet,
                                   data)
        return 0
    args.epochs = args.epochs or 40
    model = build_demo_model(args.seed)
    compile_demo_model(model)
    model.summary()

    t0 = time.perf_counter()  # first call: compiles (or loads from the cache) the kernels
    jobs = warm_kernels_in_parallel()
    model.train_step(x_train[: args.batch_size], y_train[: args.batch_size])
    compile_s = time.perf_counter() - t0
    model = build_demo_model(args.seed)  # fresh weights: the warm-up step must not count
    n_fit = int(len(x_train) * (1 - 0.1))  # what validation_split=0.1 leaves, as fit computes
    compile_demo_model(model, decay_steps=args.epochs * -(-n_fit // args.batch_size))

    how = f" ({jobs} processes)" if jobs else ""
    print(f"Training on {len(x_train)} images ({len(x_train) // 10} of them for validation), "
          f"testing on {len(x_test)}; first-call compile took {compile_s:.1f}s{how}.")
    t0 = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=0.1,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
    )
    train_s = time.perf_counter() - t0
    # At the training batch size (as Keras's default does): a larger one would compile the
    # kernels for larger inputs after training, just for these 297 images.
    result = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0,
                            return_dict=True)
    print(f"Test accuracy: {result['accuracy']:.2%} on {len(x_test)} held-out images "
          f"(loss {result['loss']:.4f}); training took {train_s:.1f}s "
          f"({args.epochs} epochs).")
    if args.plot:
        _plot(history.history, args.plot)
        print(f"Wrote {args.plot}")
    return 0


def _plot(history: dict[str, list[float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("numba-gn demo: digits CNN with GroupNormalization")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
