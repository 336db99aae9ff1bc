"""``Trainer``: Keras's ``compile`` / ``fit`` / ``evaluate`` / ``predict`` for a model object.

The model only needs ``__call__(x, training=...)``, ``trainable_weights``, ``losses``
(regularization penalties), ``weight_paths()`` and ``input_dtype``;
:class:`~numba_gn.layers.Sequential` mixes this class in.

One training step (:meth:`Trainer.train_step`) is: forward under a
:class:`~numba_gn.autograd.GradientTape`, loss plus every layer's regularization penalties,
``tape.gradient`` for the trainable weights, one optimizer step (which then applies each
weight's constraint). Runs are reproducible: ``fit(seed=...)`` seeds the shuffling, and layers
with randomness (Dropout) and initializers take their own seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from numba_gn.autograd import GradientTape, Tensor, no_record
from numba_gn.training import losses as losses_mod
from numba_gn.training import metrics as metrics_mod
from numba_gn.training import optimizers as optimizers_mod
from numba_gn.training import saving
from numba_gn.training.blas import blas_threads
from numba_gn.training.progbar import History, Progbar

__all__ = ["Trainer"]


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


class Trainer:
    """Mixin with the training loop; see the module docstring for what the model provides."""

    #: BLAS threads while fit/evaluate/predict run (None: leave BLAS alone); see
    #: :mod:`numba_gn.training.blas` for why one is faster for small models.
    blas_threads: int | None = 1
    optimizer: optimizers_mod.Optimizer | None = None
    loss: Any = None
    compiled_metrics: list[metrics_mod.Metric] = []
    stop_training: bool = False

    # -- compile -----------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: Any = "adam",
        loss: Any = None,
        metrics: Sequence[Any] | None = None,
    ) -> None:
        """Choose the optimizer, the loss and the metrics reported by fit/evaluate.

        Parameters
        ----------
        optimizer : str, dict or Optimizer, default "adam"
            See :func:`numba_gn.training.optimizers.get`.
        loss : str, dict, Loss or callable
            See :func:`numba_gn.training.losses.get` ("mse", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy", ...).
        metrics : list, optional
            Metric names such as ``["accuracy"]`` (see :func:`numba_gn.training.metrics.get`).
        """
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        if self.loss is None:
            raise ValueError("compile() needs a `loss`, e.g. loss='mse'.")
        self._metric_ids = list(metrics or [])
        self.compiled_metrics = [metrics_mod.get(m) for m in self._metric_ids]
        self.compiled = True

    def _check_compiled(self, what: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"You must call `compile()` before calling `{what}()`.")

    # -- one step ----------------------------------------------------------------------------------

    def compute_loss(self, y: Any, y_pred: Tensor) -> Tensor:
        """The loss of a batch plus the model's regularization penalties (on the tape)."""
        loss = self.loss(y, y_pred)
        for penalty in self.losses:  # type: ignore[attr-defined]
            loss = loss + penalty
        return loss

    def train_step(self, x: Any, y: Any) -> tuple[float, Tensor]:
        """One optimisation step on a batch; returns the loss value and the predictions."""
        weights = self.trainable_weights  # type: ignore[attr-defined]
        with GradientTape() as tape:
            y_pred = self(x, training=True)  # type: ignore[operator]
            loss = self.compute_loss(y, y_pred)
        grads = tape.gradient(loss, weights)
        self.optimizer.apply(grads, weights)  # type: ignore[union-attr]
        return float(loss.data), y_pred

    # -- fit ---------------------------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: int | str = "auto",
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        initial_epoch: int = 0,
        stream: TextIO | None = None,
    ) -> History:
        """Train for ``epochs`` epochs of mini-batches; returns a :class:`History`.

        Parameters
        ----------
        x, y : array-like
            Inputs and targets (first axis: samples).
        batch_size : int, default 32
            Samples per step (the last step of an epoch may be smaller).
        epochs : int, default 1
            Number of passes over the training data.
        verbose : 0, 1 or "auto" (1)
            1 shows one progress bar per epoch (on ``stream``, default stdout); 0 is silent.
        validation_split : float in [0, 1)
            Fraction of the data held out for validation: the *last* samples, taken before
            shuffling (as Keras).
        validation_data : (x_val, y_val), optional
            Overrides ``validation_split``.
        shuffle : bool, default True
            Shuffle the training samples before each epoch.
        seed : int, optional
            Seed of the shuffling generator: equal seeds give equal runs.
        initial_epoch : int, default 0
            Epoch to start counting from (for resuming).
        stream : text stream, optional
            Where the progress bars go (default ``sys.stdout``).

        Returns
        -------
        History whose ``history`` has "loss", each metric, and "val_" versions of both when
        validation data is used: one float per epoch.
        """
        self._check_compiled("fit")
        with blas_threads(self.blas_threads):
            return self._fit(x, y, batch_size, epochs, verbose, validation_split,
                             validation_data, shuffle, seed, initial_epoch, stream)

    def _fit(
        self,
        x: Any,
        y: Any,
        batch_size: int,
        epochs: int,
        verbose: int | str,
        validation_split: float,
        validation_data: tuple[Any, Any] | None,
        shuffle: bool,
        seed: int | None,
        initial_epoch: int,
        stream: TextIO | None,
    ) -> History:
        x = self._prepare_x(x)
        y = _as_array(y)
        if len(x) != len(y):
            raise ValueError(f"x and y have different numbers of samples: {len(x)} and {len(y)}.")
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split}.")
            split = int(len(x) * (1 - validation_split))
            validation_data = (x[split:], y[split:])
            x, y = x[:split], y[:split]
        if len(x) == 0:
            raise ValueError("fit() got no training samples.")
        verbose = 1 if verbose == "auto" else int(verbose)
        stream = stream if stream is not None else sys.stdout
        rng = np.random.default_rng(seed)
        n = len(x)
        steps = -(-n // batch_size)
        history = History()
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        loss_tracker = metrics_mod.Mean("loss")
        self.stop_training = False
        for epoch in range(initial_epoch, epochs):
            if verbose:
                stream.write(f"Epoch {epoch + 1}/{epochs}\n")
            bar = Progbar(steps, stream=stream) if verbose else None
            loss_tracker.reset_state()
            for m in self.compiled_metrics:
                m.reset_state()
            order = rng.permutation(n) if shuffle else None
            for step in range(steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                if order is None:
                    xb, yb = x[lo:hi], y[lo:hi]
                else:
                    idx = order[lo:hi]
                    xb, yb = x[idx], y[idx]
                loss_value, y_pred = self.train_step(xb, yb)
                loss_tracker.update_state(loss_value, count=hi - lo)
                for m in self.compiled_metrics:
                    m.update_state(yb, y_pred.data)
                if bar is not None:
                    bar.update(step + 1, self._logs(loss_tracker))
            logs = self._logs(loss_tracker)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size, verbose=0,
                                    return_dict=True)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if bar is not None:
                bar.finish(logs)
            history.append(epoch, logs)
            if self.stop_training:
                break
        return history

    def _logs(self, loss_tracker: metrics_mod.Mean) -> dict[str, float]:
        logs = {m.name: m.result() for m in self.compiled_metrics}
        logs["loss"] = loss_tracker.result()
        return logs

    def _prepare_x(self, x: Any) -> np.ndarray:
        """Inputs as an ndarray, floats cast once to the model's compute dtype (not per batch)."""
        arr = _as_array(x)
        dtype = np.dtype(getattr(self, "input_dtype", None) or "float32")
        if arr.dtype.kind == "f" and arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr

    # -- evaluate / predict ------------------------------------------------------------------------

    def evaluate(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        verbose: int | str = "auto",
        return_dict: bool = False,
        stream: TextIO | None = None,
    ) -> float | list[float] | dict[str, float]:
        """Loss (with regularization) and metrics over ``(x, y)``, in batches, in inference mode.

        Returns the loss alone when no metric was compiled, else ``[loss, *metrics]``, or a
        dict with Keras's keys when ``return_dict``.
        """
        self._check_compiled("evaluate")
        x = self._prepare_x(x)
        y = _as_array(y)
        n = len(x)
        steps = max(-(-n // batch_size), 1)
        verbose = 1 if verbose == "auto" else int(verbose)
        bar = Progbar(steps, stream=stream) if verbose else None
        tracker = metrics_mod.Mean("loss")
        metrics = [metrics_mod.get(m) for m in self._metric_ids]
        with no_record(), blas_threads(self.blas_threads):
            for step in range(steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                y_pred = self(x[lo:hi], training=False)  # type: ignore[operator]
                tracker.update_state(float(self.compute_loss(y[lo:hi], y_pred).data), hi - lo)
                for m in metrics:
                    m.update_state(y[lo:hi], y_pred.data)
                if bar is not None:
                    bar.update(step + 1, {"loss": tracker.result()})
        logs = {"loss": tracker.result(), **{m.name: m.result() for m in metrics}}
        if bar is not None:
            bar.finish(logs)
        if return_dict:
            return logs
        return logs["loss"] if not metrics else list(logs.values())

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """The model's outputs for ``x`` (inference mode), computed in batches."""
        x = self._prepare_x(x)
        outs = []
        with no_record(), blas_threads(self.blas_threads):
            for lo in range(0, len(x), batch_size):
                outs.append(self(x[lo : lo + batch_size], training=False).data)  # type: ignore
        if not outs:
            raise ValueError("predict() got no samples.")
        return np.concatenate(outs, axis=0)

    # -- weights on disk ---------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        """Write every weight to an ``.npz`` file keyed ``"layer_name/weight_name"``."""
        saving.save_weights(self, path)

    def load_weights(self, path: str) -> None:
        """Read weights written by :meth:`save_weights` (names and shapes checked first)."""
        saving.load_weights(self, path)

