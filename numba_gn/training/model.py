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

import copy
import math
import numbers
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from numba_gn import _checks
from numba_gn._locks import FreshLocks
from numba_gn.autograd import GradientTape, Tensor, no_record
from numba_gn.training import losses as losses_mod
from numba_gn.training import metrics as metrics_mod
from numba_gn.training import optimizers as optimizers_mod
from numba_gn.training import saving
from numba_gn.training.blas import blas_threads
from numba_gn.training.progbar import History, Progbar

__all__ = ["Trainer"]

#: Keras's default ``batch_size`` when None is given.
DEFAULT_BATCH_SIZE = 32

# -- argument checks ------------------------------------------------------------------------------
#
# Every argument of compile/fit/evaluate/predict is checked before any work, so that a bad one
# fails at the call, naming itself, with no weight changed and no optimizer step taken. Counts
# and ranges go through numba_gn._checks: a bool, a float (even 32.0, nan or inf) or a string
# where an int is meant is a TypeError, since silently truncating 2.5 or taking True for 1
# hides a mistake; 10**400 is out of range (no index can be that large).


def _check_batch_size(batch_size: object) -> int:
    """Keras's rule: None means 32; otherwise a positive int (0 is refused, not taken as 32)."""
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    return _checks.integer(batch_size, "batch_size", low=1)


def _check_verbose(verbose: object) -> int:
    """Keras's values: "auto" (1 here), 0 (silent), 1 (progress bar), 2 (one line per epoch)."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, (numbers.Integral, str)):
        raise TypeError(
            f'Argument `verbose` must be "auto", 0, 1 or 2. Received: verbose={verbose!r} '
            f"(of type {type(verbose).__name__})"
        )
    if isinstance(verbose, str) or verbose not in (0, 1, 2):
        raise ValueError(f'Argument `verbose` must be "auto", 0, 1 or 2. Received: {verbose!r}')
    return int(verbose)


def _check_stream(stream: object) -> TextIO:
    if stream is None:
        return sys.stdout
    if not callable(getattr(stream, "write", None)):
        raise TypeError(
            "Argument `stream` must be a text stream with a write() method (or None for "
            f"stdout). Received: stream={stream!r} (of type {type(stream).__name__})"
        )
    return stream  # type: ignore[return-value]


def _check_seed(seed: object) -> int | None:
    if seed is None:
        return None
    return _checks.integer(seed, "seed", low=0)


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def _data_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a numeric ndarray with a sample axis; ValueError/TypeError naming it."""
    if value is None:
        raise TypeError(f"Argument `{name}` is required; received None.")
    try:
        arr = _as_array(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"Argument `{name}` could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Argument `{name}` must hold numbers, got an array of dtype {arr.dtype}."
        )
    if arr.ndim == 0:
        raise ValueError(
            f"Argument `{name}` must have a sample axis (rank >= 1), got a scalar: {arr!r}."
        )
    return arr


class Trainer(FreshLocks):
    """Mixin with the training loop; see the module docstring for what the model provides.

    Every argument of :meth:`compile`, :meth:`fit`, :meth:`evaluate` and :meth:`predict` is
    checked when the method is called, before any work: a bad one raises ``ValueError`` or
    ``TypeError`` naming it, and the model (weights, optimizer, compiled state) is unchanged.

    Calls from several threads: :meth:`fit` (and :meth:`compile`) on one model run one at a
    time, since they update the weights, the optimizer and the compiled metrics;
    :meth:`evaluate` and :meth:`predict` take no lock and keep their state per call.
    """

    _lock_names = ("_train_lock",)

    #: BLAS threads while fit/evaluate/predict run (None: leave BLAS alone); see
    #: :mod:`numba_gn.training.blas` for why one is faster for small models.
    blas_threads: int | None = 1
    optimizer: optimizers_mod.Optimizer | None = None
    loss: Any = None
    compiled_metrics: list[metrics_mod.Metric] = []
    stop_training: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Serialises fit() and compile(): two fits interleaving their steps would mix their
        # optimizer updates and metric states.
        self._train_lock = threading.RLock()

    # -- compile -----------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: Any = "adam",
        loss: Any = None,
        metrics: Sequence[Any] | None = None,
    ) -> None:
        """Choose the optimizer, the loss and the metrics reported by fit/evaluate.

        Everything is resolved before anything is set, so a failed call leaves an earlier
        compilation in place.

        Parameters
        ----------
        optimizer : str, dict or Optimizer, default "adam"
            See :func:`numba_gn.training.optimizers.get`.
        loss : str, dict, Loss or callable
            See :func:`numba_gn.training.losses.get` ("mse", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy", ...).
        metrics : list or tuple, optional
            Metric names such as ``["accuracy"]`` or Metric instances (see
            :func:`numba_gn.training.metrics.get`).
        """
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            # Keras's rule; a lone string would otherwise be read letter by letter.
            raise ValueError(
                "Expected `metrics` argument to be a list or tuple. Received instead: "
                f"metrics={metrics!r} of type {type(metrics).__name__}"
            )
        resolved_optimizer = optimizers_mod.get(optimizer)
        resolved_loss = losses_mod.get(loss)
        if resolved_loss is None:
            raise ValueError("compile() needs a `loss`, e.g. loss='mse'.")
        metric_ids = list(metrics or [])
        compiled_metrics = [metrics_mod.get(m) for m in metric_ids]
        with self._train_lock:
            self.optimizer = resolved_optimizer
            self.loss = resolved_loss
            self._metric_ids = metric_ids
            self.compiled_metrics = compiled_metrics
            self.compiled = True

    def _check_compiled(self, what: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"You must call `compile()` before calling `{what}()`.")

    def _fresh_metrics(self) -> list[metrics_mod.Metric]:
        """New, empty metrics like the compiled ones, for one evaluate() call.

        A Metric instance given to compile() is copied rather than shared: evaluate() would
        otherwise add its batches to the training metric of a fit() running at the same time
        (its own validation pass included).
        """
        out = []
        for identifier in self._metric_ids:
            if isinstance(identifier, metrics_mod.Metric):
                metric = copy.deepcopy(identifier)
                metric.reset_state()
            else:
                metric = metrics_mod.get(identifier)
            out.append(metric)
        return out

    def _x_y(self, x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Checked inputs and targets: numeric, with as many samples, at least one."""
        xa = self._prepare_x(_data_array(x, "x"))
        ya = _data_array(y, "y")
        if len(xa) != len(ya):
            raise ValueError(
                f"Arguments `x` and `y` of {what}() must have the same number of samples, got "
                f"{len(xa)} and {len(ya)}."
            )
        if len(xa) == 0:
            raise ValueError(f"Argument `x` of {what}() is empty (0 samples).")
        return xa, ya

    # -- one step ----------------------------------------------------------------------------------

    def compute_loss(self, y: Any, y_pred: Tensor) -> Tensor:
        """The loss of a batch plus the model's regularization penalties (on the tape)."""
        loss = self.loss(y, y_pred)
        for penalty in self.losses:  # type: ignore[attr-defined]
            loss = loss + penalty
        return loss

    def train_step(self, x: Any, y: Any) -> tuple[float, Tensor]:
        """One optimisation step on a batch; returns the loss value and the predictions."""
        with GradientTape() as tape:
            y_pred = self(x, training=True)  # type: ignore[operator]
            loss = self.compute_loss(y, y_pred)
        # Read after the forward pass: the first call builds an unbuilt model, and before that
        # it has no weights to train.
        weights = self.trainable_weights  # type: ignore[attr-defined]
        grads = tape.gradient(loss, weights)
        self.optimizer.apply(grads, weights)  # type: ignore[union-attr]
        return float(loss.data), y_pred

    # -- fit ---------------------------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        initial_epoch: int = 0,
        stream: TextIO | None = None,
    ) -> History:
        """Train from epoch ``initial_epoch`` up to epoch ``epochs``; returns a :class:`History`.

        Parameters
        ----------
        x, y : array-like
            Inputs and targets (first axis: samples, as many in both, at least one).
        batch_size : int, optional
            Samples per step (the last step of an epoch may be smaller); None means 32.
        epochs : int, default 1
            Index of the last epoch (as Keras): training runs ``epochs - initial_epoch``
            epochs, which must be at least one.
        verbose : "auto", 0, 1 or 2
            1 (and "auto") shows one progress bar per epoch on ``stream`` (default stdout),
            2 one line per epoch, 0 nothing.
        validation_split : float in [0, 1)
            Fraction of the data held out for validation: the *last* samples, taken before
            shuffling (as Keras). Both parts must keep at least one sample.
        validation_data : (x_val, y_val), optional
            Overrides ``validation_split``. The samples must have the shape of the training
            samples (``x_val.shape[1:] == x.shape[1:]``, the same for ``y``).
        shuffle : bool, default True
            Shuffle the training samples before each epoch.
        seed : int, optional
            Seed (>= 0) of the shuffling generator: equal seeds give equal runs.
        initial_epoch : int, default 0
            Epoch to start counting from (for resuming).
        stream : text stream, optional
            Where the progress bars go (default ``sys.stdout``).

        Returns
        -------
        History whose ``history`` has "loss", each metric, and "val_" versions of both when
        validation data is used: one float per epoch.

        Raises
        ------
        ValueError, TypeError
            For any invalid argument (named in the message), before anything is trained.
        RuntimeError
            When the model is not compiled.
        """
        self._check_compiled("fit")
        batch_size = _check_batch_size(batch_size)
        epochs = _checks.integer(epochs, "epochs", low=1)
        initial_epoch = _checks.integer(initial_epoch, "initial_epoch", low=0)
        if initial_epoch >= epochs:
            # Keras would silently train nothing.
            raise ValueError(
                "Argument `epochs` is the index of the last epoch and must be greater than "
                f"`initial_epoch`. Received: epochs={epochs}, initial_epoch={initial_epoch}"
            )
        verbose = _check_verbose(verbose)
        validation_split = _checks.real(
            validation_split, "validation_split", low=0, high=1, high_open=True
        )
        shuffle = _checks.boolean(shuffle, "shuffle")
        seed = _check_seed(seed)
        stream = _check_stream(stream)
        x, y = self._x_y(x, y, "fit")
        val: tuple[np.ndarray, np.ndarray] | None = None
        if validation_data is not None:
            val = self._validation_arrays(validation_data, x, y)
        elif validation_split:
            # Keras's split point; both parts must keep a sample.
            split = int(math.floor(len(x) * (1.0 - validation_split)))
            if split == 0 or split == len(x):
                raise ValueError(
                    f"Argument `validation_split`={validation_split} leaves no "
                    f"{'training' if split == 0 else 'validation'} sample out of {len(x)}. "
                    "Use more data or another `validation_split`."
                )
            val = (x[split:], y[split:])
            x, y = x[:split], y[:split]
        with self._train_lock, blas_threads(self.blas_threads):
            return self._fit(x, y, batch_size, epochs, verbose, val, shuffle, seed,
                             initial_epoch, stream)

    def _validation_arrays(
        self, validation_data: Any, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``validation_data`` checked against the training data, before training starts."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                "Argument `validation_data` must be a tuple `(x_val, y_val)` (sample weights "
                f"are not supported). Received: {type(validation_data).__name__}"
                + (f" of length {len(validation_data)}"
                   if isinstance(validation_data, (tuple, list)) else "")
            )
        try:
            xv, yv = self._x_y(*validation_data, "fit")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"Argument `validation_data`: {exc}") from None
        for name, train, valid in (("x", x, xv), ("y", y, yv)):
            if valid.shape[1:] != train.shape[1:]:
                raise ValueError(
                    f"Argument `validation_data`: the {name} samples have shape "
                    f"{valid.shape[1:]}, the training ones {train.shape[1:]}."
                )
        return xv, yv

    def _fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        epochs: int,
        verbose: int,
        validation_data: tuple[np.ndarray, np.ndarray] | None,
        shuffle: bool,
        seed: int | None,
        initial_epoch: int,
        stream: TextIO,
    ) -> History:
        """The loop, on checked arguments (see :meth:`fit`)."""
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
                if bar is not None and verbose == 1:
                    bar.update(step + 1, self._logs(loss_tracker))
            logs = self._logs(loss_tracker)
            if validation_data is not None:
                val = self._evaluate(*validation_data, batch_size, None)
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
        batch_size: int | None = None,
        verbose: int | str = "auto",
        return_dict: bool = False,
        stream: TextIO | None = None,
    ) -> float | list[float] | dict[str, float]:
        """Loss (with regularization) and metrics over ``(x, y)``, in batches, in inference mode.

        ``batch_size`` (None: 32), ``verbose`` ("auto", 0, 1 or 2) and ``stream`` are as in
        :meth:`fit`; invalid arguments raise ``ValueError``/``TypeError`` naming them.

        Returns the loss alone when no metric was compiled, else ``[loss, *metrics]``, or a
        dict with Keras's keys when ``return_dict``.
        """
        self._check_compiled("evaluate")
        batch_size = _check_batch_size(batch_size)
        verbose = _check_verbose(verbose)
        return_dict = _checks.boolean(return_dict, "return_dict")
        stream = _check_stream(stream)
        x, y = self._x_y(x, y, "evaluate")
        bar = Progbar(-(-len(x) // batch_size), stream=stream) if verbose else None
        with blas_threads(self.blas_threads):
            logs = self._evaluate(x, y, batch_size, bar if verbose == 1 else None)
        if bar is not None:
            bar.finish(logs)
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def _evaluate(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, bar: Progbar | None
    ) -> dict[str, float]:
        """Loss and metrics over checked arrays; the metrics are fresh for this call."""
        n = len(x)
        tracker = metrics_mod.Mean("loss")
        metrics = self._fresh_metrics()
        with no_record():
            for step in range(-(-n // batch_size)):
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                y_pred = self(x[lo:hi], training=False)  # type: ignore[operator]
                tracker.update_state(float(self.compute_loss(y[lo:hi], y_pred).data), hi - lo)
                for m in metrics:
                    m.update_state(y[lo:hi], y_pred.data)
                if bar is not None:
                    bar.update(step + 1, {"loss": tracker.result()})
        return {"loss": tracker.result(), **{m.name: m.result() for m in metrics}}

    def predict(
        self, x: Any, batch_size: int | None = None, verbose: int | str = 0
    ) -> np.ndarray:
        """The model's outputs for ``x`` (inference mode), computed in batches.

        ``batch_size`` is None (32) or a positive int; ``verbose`` ("auto", 0, 1 or 2) is
        checked for Keras compatibility but nothing is printed.
        """
        batch_size = _check_batch_size(batch_size)
        _check_verbose(verbose)
        x = self._prepare_x(_data_array(x, "x"))
        if len(x) == 0:
            raise ValueError("Argument `x` of predict() is empty (0 samples).")
        outs = []
        with no_record(), blas_threads(self.blas_threads):
            for lo in range(0, len(x), batch_size):
                outs.append(self(x[lo : lo + batch_size], training=False).data)  # type: ignore
        return np.concatenate(outs, axis=0)

    # -- weights on disk ---------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        """Write every weight to an ``.npz`` file keyed ``"layer_name/weight_name"``."""
        saving.save_weights(self, path)

    def load_weights(self, path: str) -> None:
        """Read weights written by :meth:`save_weights` (names and shapes checked first)."""
        saving.load_weights(self, path)

