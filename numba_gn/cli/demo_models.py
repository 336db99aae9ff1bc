"""The residual-network demos: `numba-gn demo --model resnet` and `numba-gn demo --compare-bn`.

* `--model resnet` trains `numba_gn.cli.architectures.resnet` (a stem and three
  residual blocks of 32 channels with GroupNorm + SiLU, written with the functional API) on the
  bundled digits and reports the test accuracy on the 297 held-out images.
* `--compare-bn` trains the same network with `BatchNormalization` (Keras's momentum 0.99,
  and 0.9) and with `GroupNormalization` at batch sizes 2, 8 and 32 (the same number of
  epochs and the same learning rate for all) and prints the test accuracies: the experiment of
  the GroupNorm paper (Wu & He, 2018, figure 1) at toy scale. BatchNorm normalises each channel
  with the statistics of the batch and, at test time, with moving averages of them, so its
  accuracy depends on the batch size and on how far those averages have caught up with the
  weights; GroupNorm normalises each sample on its own and has no such state.
  `--plot FILE.png` draws accuracy against batch size.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: Batch sizes of `--compare-bn`.
COMPARE_BATCH_SIZES = (2, 8, 32)


def _train(model: Any, batch_size: int, epochs: int, seed: int,
           data: tuple[np.ndarray, ...], verbose: int) -> tuple[float, float]:
    """Compile and train `model` on the digits; returns `(test accuracy, seconds of fit)`."""
    from numba_gn import losses, optimizers

    x_train, y_train, x_test, y_test = data
    steps = epochs * -(-len(x_train) // batch_size)
    model.compile(
        optimizer=optimizers.Adam(optimizers.CosineDecay(2e-3, steps)),
        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        fuse=False,  # as the digits demo (see numba_gn.cli.demo.compile_demo_model)
    )
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, seed=seed,
              verbose=verbose)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)
    return float(result["accuracy"]), seconds


def run_resnet(epochs: int, batch_size: int, seed: int, quiet: bool,
               data: tuple[np.ndarray, ...]) -> dict[str, float]:
    """`--model resnet`: train, print and return the test accuracy and the training time."""
    from numba_gn.cli.architectures import resnet

    model = resnet(data[0].shape[1:], 10, width=32, blocks=3, seed=seed)
    model.summary()
    accuracy, seconds = _train(model, batch_size, epochs, seed, data, 0 if quiet else 1)
    print(f"Test accuracy: {accuracy:.2%} on {len(data[2])} held-out images; training took "
          f"{seconds:.1f}s ({epochs} epochs of batch {batch_size}, first compile included).")
    return {"accuracy": accuracy, "seconds": seconds}


#: The normalisations `--compare-bn` trains, and their column titles.
COMPARE_NORMS = {
    "batch": "BatchNorm (momentum 0.99)",
    "batch:0.9": "BatchNorm (momentum 0.9)",
    "group": "GroupNorm",
}


def run_compare_bn(epochs: int, seed: int, data: tuple[np.ndarray, ...],
                   plot: str | None = None,
                   batch_sizes: tuple[int, ...] = COMPARE_BATCH_SIZES,
                   ) -> dict[str, dict[int, float]]:
    """`--compare-bn`: test accuracy of each normalisation at each batch size."""
    from numba_gn.cli.architectures import resnet

    results: dict[str, dict[int, float]] = {norm: {} for norm in COMPARE_NORMS}
    print(f"Residual network (16 channels, 2 blocks), {epochs} epochs, Adam with cosine decay "
          f"from 2e-3, test accuracy on {len(data[2])} held-out images:")
    widths = [len(title) for title in COMPARE_NORMS.values()]
    print("batch size  " + "  ".join(COMPARE_NORMS.values()))
    for batch_size in batch_sizes:
        for norm in COMPARE_NORMS:
            model = resnet(data[0].shape[1:], 10, width=16, blocks=2, norm=norm, seed=seed)
            accuracy, _ = _train(model, batch_size, epochs, seed, data, 0)
            results[norm][batch_size] = accuracy
        cells = "  ".join(
            f"{results[n][batch_size]:>{w}.2%}" for n, w in zip(results, widths, strict=True)
        )
        print(f"{batch_size:>10}  {cells}", flush=True)
    if plot:
        _plot(results, plot, batch_sizes)
        print(f"Wrote {plot}")
    return results


def _plot(results: dict[str, dict[int, float]], path: str, batch_sizes: tuple[int, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for norm, label in COMPARE_NORMS.items():
        sizes = sorted(results[norm])
        ax.plot(sizes, [100 * results[norm][b] for b in sizes], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Digits, residual network: BatchNorm vs GroupNorm")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
