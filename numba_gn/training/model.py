"""`Trainer`: Keras's `compile` / `fit` / `evaluate` / `predict` for a model object.

The model only needs `__call__(x, training=...)`, `trainable_weights`, `losses`
(regularization penalties), `weight_paths()` and `input_dtype`; it may also say what it
takes and returns (`_data_structure("x")`/`("y")`: one array, a list, or a dict, with the
names) and each input's dtype (`_input_dtypes`). Every model of `numba_gn.models` (functional,
subclassed, `Sequential`) mixes this class in.

Several inputs and outputs work as in Keras: `x` and `y` may be lists/tuples or dicts of
arrays (batched together, sample by sample); `loss` is one loss for every output, or a list
or dict with one per output; the total loss is the sum of each output's loss times its
`loss_weights` entry, and `fit`/`evaluate` also report each output's own loss
(`"<output>_loss"`) and metrics (`"<output>_<metric>"`).

One training step (`Trainer.train_step`) is: forward under a
`GradientTape`, loss plus every layer's regularization penalties,
`tape.gradient` for the trainable weights, one optimizer step (which then applies each
weight's constraint). Runs are reproducible: `fit(seed=...)` seeds the shuffling, and layers
with randomness (Dropout) and initializers take their own seeds.

`fit`/`evaluate`/`predict` drive Keras 3's callbacks (`numba_gn.callbacks`) exactly as
Keras's loops do; the protocol is written down in that module's docstring. Epoch `e`'s
shuffle is drawn from `np.random.default_rng([seed, e])`, from nothing else, so that a run
resumed at any epoch (by `initial_epoch`, or by `BackupAndRestore`, for which the model
provides `_backup_state`/`_restore_state`) trains exactly as the uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import numpy as np

from numba_gn import _checks
from numba_gn._locks import FreshLocks
from numba_gn.autograd import GradientTape, Tensor, no_record
from numba_gn.training import callbacks as callbacks_mod
from numba_gn.training import losses as losses_mod
from numba_gn.training import metrics as metrics_mod
from numba_gn.training import optimizers as optimizers_mod
from numba_gn.training import saving
from numba_gn.training._data import Data, class_weights, sample_weights, to_data
from numba_gn.training.blas import blas_threads

__all__ = ["Trainer"]

#: Keras's default `batch_size` when None is given.
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


# -- several outputs: the loss, weight and metrics of each ---------------------------------------


def _is_loss_config(value: Any) -> bool:
    """A serialized loss (`{"class_name": ...}`) rather than a dict of one loss per output."""
    return isinstance(value, Mapping) and "class_name" in value


def _resolve_loss(loss: Any) -> Any:
    """One loss, or a list/dict with one per output (None there: no loss for that output)."""
    if isinstance(loss, (list, tuple)):
        return [losses_mod.get(item) for item in loss]
    if isinstance(loss, Mapping) and not _is_loss_config(loss):
        return {key: losses_mod.get(item) for key, item in loss.items()}
    return losses_mod.get(loss)


def _check_loss_weights(value: Any) -> Any:
    """None, a number, or a list/dict of numbers (one per output), each finite."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_checks.real(w, f"loss_weights[{i}]") for i, w in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: _checks.real(w, f"loss_weights[{k!r}]") for k, w in value.items()}
    if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Real):
        raise ValueError(
            "Expected `loss_weights` argument to be a float (single output case) or a list, "
            "tuple, or dict (multiple output case). Received instead: "
            f"loss_weights={_checks.show(value)} of type {type(value).__name__}"
        )
    return _checks.real(value, "loss_weights")


def _map_metrics(spec: Any, fn: Any) -> Any:
    """`spec` (a list, a list of lists or a dict of metrics) with each metric as `fn(m)`."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {k: _map_metrics(v, fn) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_map_metrics(v, fn) for v in spec]
    return fn(spec)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _flat_metrics(spec: Any) -> list[Any]:
    out: list[Any] = []
    _map_metrics(spec, out.append)
    return out


class _Heads:
    """What `compile` chose for each output of the model, once its outputs are known.

    Attributes:
        kind: `"single"`, `"list"` or `"dict"`: the structure of the outputs.
        names: Each output's name in logs (`"<name>_loss"`), flat order.
        keys: A dict's keys (sorted), for `"dict"`.
        losses: Each output's loss (None: not trained on).
        weights: Each output's loss weight (None: 1).
        metric_ids: Each output's metric identifiers (names or instances), for fresh copies.
        metrics: Each output's compiled Metric objects.
    """

    __slots__ = ("kind", "names", "keys", "losses", "weights", "metric_ids", "metrics")

    def __init__(self, kind: str, names: Sequence[str], loss: Any, loss_weights: Any,
                 metric_ids: Any, metric_objects: Any) -> None:
        n = 1 if kind == "single" else len(names)
        names = list(names)
        self.kind = kind
        self.names = names
        self.keys = list(names) if kind == "dict" else []
        self.losses = self._per_output(loss, "loss", n)
        if all(f is None for f in self.losses):
            raise ValueError("compile() needs a `loss`, e.g. loss='mse'.")
        weights = self._per_output(loss_weights, "loss_weights", n, broadcast_none=True)
        self.weights = [None if w is None else float(w) for w in weights]
        self.metric_ids = self._per_output_metrics(metric_ids, n)
        self.metrics = self._per_output_metrics(metric_objects, n)

    def _describe(self, n: int) -> str:
        return f"{n} output{'s' if n != 1 else ''}" + (f" ({self.names})" if self.names else "")

    def _per_output(self, value: Any, what: str, n: int, broadcast_none: bool = False) -> list:
        if value is None and broadcast_none:
            return [None] * n
        if isinstance(value, list):
            if len(value) != n:
                raise ValueError(
                    f"`{what}` has {len(value)} entries but the model has {self._describe(n)}."
                )
            return list(value)
        if isinstance(value, Mapping) and (what != "loss" or not _is_loss_config(value)):
            unknown = [k for k in value if k not in self.names]
            if unknown or (n == 1 and not self.names):
                raise ValueError(
                    f"Key(s) {unknown or list(value)} of `{what}` name no output of the model; "
                    f"its outputs are {self.names or 'unnamed'}."
                )
            return [value.get(name) for name in (self.names if n > 1 else self.names[:1])]
        return [value] * n

    def _per_output_metrics(self, spec: Any, n: int) -> list[list[Any]]:
        if spec is None:
            return [[] for _ in range(n)]
        if isinstance(spec, Mapping):
            unknown = [k for k in spec if k not in self.names]
            if unknown:
                raise ValueError(
                    f"Key(s) {unknown} of `metrics` name no output of the model; its outputs "
                    f"are {self.names or 'unnamed'}."
                )
            return [_as_list(spec.get(name)) for name in (self.names if n > 1 else
                                                          self.names[:1])]
        if n == 1:
            return [list(spec)]
        if len(spec) != n:
            raise ValueError(
                "For a model with multiple outputs, when providing the `metrics` argument as a "
                "list, it should have as many entries as the model has outputs. Received: "
                f"metrics={_checks.show(spec)} of length {len(spec)} whereas the model has "
                f"{self._describe(n)}."
            )
        return [_as_list(entry) for entry in spec]

    def flat(self, value: Any, what: str) -> list[Any]:
        """`value` (predictions or targets of a batch) as one entry per output."""
        if self.kind == "single":
            if isinstance(value, (list, tuple)) and len(value) == 1:
                return [value[0]]
            return [value]
        n = len(self.names)
        if self.kind == "dict":
            if not isinstance(value, Mapping) or any(k not in value for k in self.keys):
                raise ValueError(
                    f"The {what} must be a dict keyed by {self.keys}, got "
                    f"{type(value).__name__}"
                    + (f" with keys {sorted(value, key=str)}" if isinstance(value, Mapping)
                       else "") + "."
                )
            return [value[k] for k in self.keys]
        if isinstance(value, Mapping):
            if any(k not in value for k in self.names):
                raise ValueError(f"The {what} must have an entry for each of {self.names}.")
            return [value[k] for k in self.names]
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ValueError(
                f"The {what} must be a list of {n} (one per output of the model), got "
                f"{type(value).__name__}"
                + (f" of {len(value)}" if isinstance(value, (list, tuple)) else "") + "."
            )
        return list(value)


def _structure_of(y_pred: Any) -> tuple[str, list[str]]:
    """The structure of a subclassed model's predictions, seen at its first step."""
    if isinstance(y_pred, Mapping):
        return "dict", sorted(y_pred, key=str)
    if isinstance(y_pred, (list, tuple)) and len(y_pred) > 1:
        return "list", [f"output_{i}" for i in range(len(y_pred))]
    return "single", []


def _concat(outs: list[Any]) -> Any:
    """Batches of predictions (Tensors, or lists/dicts of them) as one array per output."""
    first = outs[0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([o[k].data for o in outs], axis=0) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([o[i].data for o in outs], axis=0) for i in range(len(first))]
    return np.concatenate([o.data for o in outs], axis=0)


def _check_validation_freq(value: object) -> int | list[int]:
    """Keras's forms: an int (every n-th epoch) or a list of 1-based epochs."""
    if isinstance(value, (list, tuple)):
        return [_checks.integer(v, f"validation_freq[{i}]", low=1) for i, v in enumerate(value)]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            "Expected `validation_freq` to be a list or int. Received: "
            f"validation_freq={_checks.show(value)} of the type {type(value).__name__}."
        )
    # Keras would divide by zero at the first epoch end.
    return _checks.integer(value, "validation_freq", low=1)


def _should_eval(epoch: int, validation_freq: int | list[int]) -> bool:
    """Keras's rule, with the epoch one-indexed as users count it."""
    epoch += 1
    if isinstance(validation_freq, int):
        return epoch % validation_freq == 0
    return epoch in validation_freq


def _check_callbacks(callbacks: object) -> None:
    """None, a `CallbackList`, a callback or a (nested) list of them; TypeError otherwise."""
    if callbacks is None or isinstance(callbacks, callbacks_mod.CallbackList):
        return
    for i, cb in enumerate(callbacks_mod._flatten_callbacks(callbacks)):
        callbacks_mod._check_callback(cb, i)


def _callback_list(
    callbacks: Any,
    model: Any,
    verbose: int | str,
    verbose_level: int,
    stream: TextIO | None,
    epochs: int,
    steps: int,
    add_history: bool = False,
) -> callbacks_mod.CallbackList:
    """The callbacks of one fit/evaluate/predict call, as Keras builds them.

    A `CallbackList` given by the caller is used as it is. `params["verbose"]` is the
    value given ("auto" included, as in Keras). A `ProgbarLogger` without a stream of its own
    writes to `stream`.
    """
    if isinstance(callbacks, callbacks_mod.CallbackList):
        cbs = callbacks
    else:
        cbs = callbacks_mod.CallbackList(
            callbacks,
            add_history=add_history,
            add_progbar=verbose_level != 0,
            model=model,
            verbose="auto" if isinstance(verbose, str) else verbose_level,
            epochs=epochs,
            steps=steps,
        )
    progbar = cbs._progbar
    if stream is not None and progbar is not None and progbar.stream is None:
        progbar.stream = stream
    return cbs


class _Shuffler:
    """The order of the samples in each epoch of one fit, from `(seed, epoch)` alone.

    Epoch `e` draws its permutation from `np.random.default_rng([seed, e])`: no state
    carries over from one epoch to the next, so a run resumed at any epoch shuffles as the
    uninterrupted run did. Without a seed, a random one is drawn for the fit (and kept in
    `BackupAndRestore`'s backups, so a resumed unseeded run still continues the same way).

    Attributes:
        seed: The seed of the epochs' generators.
        shuffle: Whether epochs are shuffled at all.
        resume_state: The generator state of the next epoch to run (for backups).
        restored: `(epoch, state)` from a restored backup: that epoch's generator state.
    """

    __slots__ = ("seed", "shuffle", "resume_state", "restored")

    def __init__(self, seed: int | None, shuffle: bool) -> None:
        self.seed = int(np.random.SeedSequence().entropy) if seed is None else seed
        self.shuffle = shuffle
        self.resume_state: dict[str, Any] | None = None
        self.restored: tuple[int, Any] | None = None

    def state_for(self, epoch: int) -> dict[str, Any] | None:
        """The generator state from which epoch `epoch`'s order is drawn (None: unshuffled)."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).bit_generator.state

    def order(self, epoch: int, n: int) -> np.ndarray | None:
        """Epoch `epoch`'s permutation of `n` samples (None: in order)."""
        restored, self.restored = self.restored, None
        if not self.shuffle:
            return None
        rng = np.random.default_rng([self.seed, epoch])
        if restored is not None and restored[0] == epoch:
            rng.bit_generator.state = restored[1]
        return rng.permutation(n)


def _check_backup(state: Mapping[str, Any], variables: Sequence[Any]) -> float | None:
    """A backup's weights, epoch, shuffling state and learning rate checked for this model.

    Returns the learning rate to restore (None: keep the current one). The optimizer's own
    state is checked by its `set_state`.
    """

    def bad(why: str) -> ValueError:
        return ValueError(f"BackupAndRestore: the backup does not fit this model: {why}.")

    weights = state.get("weights")
    if not isinstance(weights, (list, tuple)) or len(weights) != len(variables):
        count = len(weights) if isinstance(weights, (list, tuple)) else "no list of"
        raise bad(f"it has {count} weights, the model {len(variables)}")
    for i, (w, v) in enumerate(zip(weights, variables, strict=True)):
        if not isinstance(w, np.ndarray) or w.dtype.kind not in "biuf":
            raise bad(f"weight {i} ({v.name!r}) is not a numeric array")
        if w.shape != tuple(v.shape):
            raise bad(f"weight {i} ({v.name!r}) has shape {w.shape}, the model's "
                      f"{tuple(v.shape)}")
    epoch = state.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad(f"its epoch is {epoch!r}")
    rng = state.get("rng")
    if rng is not None:
        try:
            np.random.default_rng().bit_generator.state = rng
        except (TypeError, ValueError, KeyError) as exc:
            raise bad(f"its shuffling state cannot be restored ({exc})") from None
    opt = state.get("optimizer")
    if not isinstance(opt, Mapping):
        raise bad("it has no optimizer state")
    learning_rate = opt.get("learning_rate")
    return None if learning_rate is None else _checks.real(learning_rate, "learning_rate", low=0)


def _call_loss(fn: Any, y: Any, y_pred: Any, sample_weight: Any) -> Tensor:
    """One output's loss of a batch, weighted by `sample_weight` when given.

    A `Loss` weighs the per-sample losses itself (Keras's reductions). A plain function is
    weighted the way Keras wraps one: its per-sample values reduced with the default
    "sum_over_batch_size"; one that returns a single number cannot be weighted.
    """
    if sample_weight is None:
        return fn(y, y_pred)
    if isinstance(fn, losses_mod.Loss):
        return fn(y, y_pred, sample_weight)
    values = fn(y, y_pred)
    if not isinstance(values, Tensor):
        values = Tensor(np.asarray(values))
    if values.ndim == 0:
        raise ValueError(
            f"Sample weights (`sample_weight` or `class_weight`) need per-sample losses, but the "
            f"loss function {fn!r} returns one number per batch. Return one value per sample, "
            "or use a `numba_gn.losses.Loss`."
        )
    return _WEIGHTED_MEAN._reduce(values, sample_weight, None)


#: Reduces a plain loss function's per-sample values with sample weights (Keras's default).
_WEIGHTED_MEAN = losses_mod.Loss()


def _as_arrays(out: Any) -> Any:
    """A batch of predictions (Tensors, or lists/dicts of them) as arrays, for callbacks."""
    if isinstance(out, Mapping):
        return {k: _as_arrays(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [_as_arrays(v) for v in out]
    return out.data if isinstance(out, Tensor) else out

class Trainer(FreshLocks):
    """Mixin with the training loop; see the module docstring for what the model provides.

    Every argument of `compile`, `fit`, `evaluate` and `predict` is
    checked when the method is called, before any work: a bad one raises `ValueError` or
    `TypeError` naming it, and the model (weights, optimizer, compiled state) is unchanged.

    Calls from several threads: `fit` (and `compile`) on one model run one at a
    time, since they update the weights, the optimizer and the compiled metrics;
    `evaluate` and `predict` take no lock and keep their state per call.
    """

    _lock_names = ("_train_lock",)

    #: BLAS threads while fit/evaluate/predict run (None: leave BLAS alone); see
    #: `numba_gn.training.blas` for why one is faster for small models.
    blas_threads: int | None = 1
    optimizer: optimizers_mod.Optimizer | None = None
    loss: Any = None
    loss_weights: Any = None
    compiled_metrics: list[metrics_mod.Metric] = []
    #: Set by a callback to end fit (after the current batch), evaluate or predict early.
    stop_training: bool = False
    stop_evaluating: bool = False
    stop_predicting: bool = False
    #: The `History` of the latest fit (set by its `CallbackList`).
    history: callbacks_mod.History | None = None
    # The epoch BackupAndRestore's restore resumes from (read once, after on_train_begin).
    _initial_epoch: int | None = None
    # The shuffling of the current (or last) fit; what backups record of it.
    _shuffler: _Shuffler | None = None
    # The per-output choices of compile(), once the outputs are known (see _heads_for).
    _heads: _Heads | None = None
    _metric_spec: Any = None
    _metric_objects: Any = None
    # The unweighted loss of each output in the last train_step (for fit's logs).
    _step_output_losses: list[tuple[str, float]] | None = None
    # Whether the model may run GroupNorm + (Add +) Activation chains as fused ops (set by
    # compile(fuse=...); models that run graphs read it, see `numba_gn.models`).
    _fuse: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Serialises fit() and compile(): two fits interleaving their steps would mix their
        # optimizer updates and metric states.
        self._train_lock = threading.RLock()

    # -- what the model takes and returns ----------------------------------------------------------

    def _data_structure(self, which: str) -> tuple[str, Sequence[str]] | None:
        """What the model takes (`"x"`) or returns (`"y"`).

        `("single" | "list" | "dict", names)`; None when only the data can tell. Models
        override this; the default is one array each.
        """
        return "single", ()

    def _cast_input(self, arr: np.ndarray, index: int) -> np.ndarray:
        """Floats cast once to the compute dtype of input `index` (not per batch)."""
        dtypes = getattr(self, "_input_dtypes", None)
        if dtypes is not None and index < len(dtypes):
            dtype = np.dtype(dtypes[index])
        else:
            dtype = np.dtype(getattr(self, "input_dtype", None) or "float32")
        if arr.dtype.kind == "f" and arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr

    # -- compile -----------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: Any = "adam",
        loss: Any = None,
        loss_weights: Any = None,
        metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        fuse: bool = True,
    ) -> None:
        """Choose the optimizer, the loss(es) and the metrics reported by fit/evaluate.

        Everything is resolved before anything is set, so a failed call leaves an earlier
        compilation in place.

        Parameters
        ----------
        optimizer : str, dict or Optimizer, default "adam"
            See `numba_gn.training.optimizers.get`.
        loss : str, dict, Loss or callable, or a list/dict of them
            See `numba_gn.training.losses.get` ("mse", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy", ...). A model with
            several outputs takes one loss for all of them, a list with one per output, or a
            dict keyed by output name (None: that output is not trained on).
        loss_weights : float, or a list/dict of floats, optional
            Each output's loss is multiplied by its weight before they are summed.
        metrics : list or tuple, or a dict, optional
            Metric names such as `["accuracy"]` or Metric instances (see
            `numba_gn.training.metrics.get`). With several outputs: a list with one
            entry (a metric or a list of them) per output, or a dict keyed by output name.
        fuse : bool, default True
            Whether `Sequential` and functional models run each `GroupNormalization` layer
            followed by an `Activation` (or by a residual `Add` and then an `Activation`)
            as one fused op, when nothing else uses the intermediate results (the chains
            are listed by `model.fused_layers`). The results agree with the unfused layers
            up to rounding; `fuse=False` runs every layer on its own (models called inside
            this one too). A numba_gn addition: it changes neither the config nor the
            weights, is not written to saved files, and a loaded model fuses.
        """
        if metrics is not None and not isinstance(metrics, (list, tuple, Mapping)):
            # Keras's rule; a lone string would otherwise be read letter by letter.
            raise ValueError(
                "Expected `metrics` argument to be a list, tuple, or dict. Received instead: "
                f"metrics={metrics!r} of type {type(metrics).__name__}"
            )
        fuse = _checks.boolean(fuse, "fuse")
        resolved_optimizer = optimizers_mod.get(optimizer)
        resolved_loss = _resolve_loss(loss)
        flat_losses = (resolved_loss if isinstance(resolved_loss, list)
                       else list(resolved_loss.values()) if isinstance(resolved_loss, dict)
                       else [resolved_loss])
        if all(f is None for f in flat_losses):
            raise ValueError("compile() needs a `loss`, e.g. loss='mse'.")
        weights = _check_loss_weights(loss_weights)
        metric_spec = None if metrics is None else (
            dict(metrics) if isinstance(metrics, Mapping) else list(metrics)
        )
        metric_objects = _map_metrics(metric_spec, metrics_mod.get)
        structure = self._data_structure("y")
        heads = None
        if structure is not None:
            heads = _Heads(structure[0], structure[1], resolved_loss, weights,
                           metric_spec, metric_objects)
        with self._train_lock:
            self.optimizer = resolved_optimizer
            self.loss = resolved_loss
            self.loss_weights = weights
            self._metric_spec = metric_spec
            self._metric_objects = metric_objects
            self._metric_ids = _flat_metrics(metric_spec)
            self.compiled_metrics = _flat_metrics(metric_objects)
            self._heads = heads
            self._fuse = fuse
            self.compiled = True

    def _check_compiled(self, what: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"You must call `compile()` before calling `{what}()`.")

    def _heads_for(self, y_pred: Any) -> _Heads:
        """The per-output choices of compile().

        For a model that could not say its outputs at compile(), made from its first
        predictions.
        """
        heads = self._heads
        if heads is None:
            with self._train_lock:
                heads = self._heads
                if heads is None:
                    kind, names = _structure_of(y_pred)
                    heads = self._heads = _Heads(kind, names, self.loss, self.loss_weights,
                                                 self._metric_spec, self._metric_objects)
        return heads

    def _fresh_metrics(self, heads: _Heads) -> list[list[metrics_mod.Metric]]:
        """New, empty metrics like the compiled ones, for one evaluate() call.

        A Metric instance given to compile() is copied rather than shared: evaluate() would
        otherwise add its batches to the training metric of a fit() running at the same time
        (its own validation pass included).
        """
        out = []
        for identifiers in heads.metric_ids:
            fresh = []
            for identifier in identifiers:
                if isinstance(identifier, metrics_mod.Metric):
                    metric = copy.deepcopy(identifier)
                    metric.reset_state()
                else:
                    metric = metrics_mod.get(identifier)
                fresh.append(metric)
            out.append(fresh)
        return out

    def _x_y(self, x: Any, y: Any, what: str) -> tuple[Data, Data]:
        """Checked inputs and targets: numeric, with as many samples, at least one."""
        xd = to_data(x, "x", what, self._data_structure("x"), self._cast_input)
        yd = to_data(y, "y", what, self._data_structure("y"))
        if len(xd) != len(yd):
            raise ValueError(
                f"Arguments `x` and `y` of {what}() must have the same number of samples, got "
                f"{len(xd)} and {len(yd)}."
            )
        if len(xd) == 0:
            raise ValueError(f"Argument `x` of {what}() is empty (0 samples).")
        return xd, yd

    # -- one step ----------------------------------------------------------------------------------

    def compute_loss(self, y: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        """The loss of a batch plus the model's regularization penalties (on the tape).

        With several outputs: the sum of each output's loss times its weight. `sample_weight`
        (one array, or one per output in the structure of `y`) weighs each sample's loss as
        Keras does: with the default reduction the batch loss is
        `sum(loss_i * weight_i) / batch_size`.
        """
        return self._compute_losses(y, y_pred, sample_weight)[0]

    def _compute_losses(
        self, y: Any, y_pred: Any, sample_weight: Any = None
    ) -> tuple[Tensor, list[tuple[str, Tensor]]]:
        """The total loss (penalties included) and, with several outputs, each one's own."""
        heads = self._heads_for(y_pred)
        parts: list[tuple[str, Tensor]] = []
        if heads.kind == "single":
            if isinstance(y_pred, (list, tuple)) and len(y_pred) == 1:
                y_pred = y_pred[0]
            if isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(
                y[0], (np.ndarray, Tensor)
            ):
                y = y[0]  # one target array given in a list
            if isinstance(sample_weight, (list, tuple)) and len(sample_weight) == 1:
                sample_weight = sample_weight[0]
            loss = _call_loss(heads.losses[0], y, y_pred, sample_weight)
            if heads.weights[0] is not None:
                loss = loss * heads.weights[0]
        else:
            preds = heads.flat(y_pred, "model's outputs")
            targets = heads.flat(y, "targets `y`")
            weights = ([None] * len(preds) if sample_weight is None
                       else heads.flat(sample_weight, "`sample_weight`"))
            loss = None
            for name, fn, weight, t, p, sw in zip(heads.names, heads.losses, heads.weights,
                                                  targets, preds, weights, strict=True):
                if fn is None:
                    continue
                value = _call_loss(fn, t, p, sw)
                parts.append((name, value))
                term = value if weight is None else value * weight
                loss = term if loss is None else loss + term
        for penalty in self.losses:  # type: ignore[attr-defined]
            loss = loss + penalty
        return loss, parts  # type: ignore[return-value]

    def _losses_of_step(
        self, y: Any, y_pred: Any, sample_weight: Any = None
    ) -> tuple[Tensor, list[tuple[str, Tensor]]]:
        """The step's loss, and each output's, as `compute_loss` computes them.

        A subclass's own `compute_loss` is used when it has one (then without the per-output
        losses); it is given `sample_weight` only when there are sample weights.
        """
        if type(self).compute_loss is not Trainer.compute_loss:
            if sample_weight is None:
                return self.compute_loss(y, y_pred), []
            return self.compute_loss(y, y_pred, sample_weight=sample_weight), []
        return self._compute_losses(y, y_pred, sample_weight)

    def train_step(self, x: Any, y: Any, sample_weight: Any = None) -> tuple[float, Any]:
        """One optimisation step on a batch; returns the loss value and the predictions.

        `sample_weight` (optional) weighs each sample's loss, as in `compute_loss`.
        """
        with GradientTape() as tape:
            y_pred = self(x, training=True)  # type: ignore[operator]
            loss, parts = self._losses_of_step(y, y_pred, sample_weight)
        # Read after the forward pass: the first call builds an unbuilt model, and before that
        # it has no weights to train.
        weights = self.trainable_weights  # type: ignore[attr-defined]
        grads = tape.gradient(loss, weights)
        self.optimizer.apply(grads, weights)  # type: ignore[union-attr]
        if len(parts) > 1:
            self._step_output_losses = [(name, float(v.data)) for name, v in parts]
        return float(loss.data), y_pred

    @staticmethod
    def _update_metrics(heads: _Heads, metrics: list[list[metrics_mod.Metric]], y: Any,
                        y_pred: Any) -> None:
        if not any(metrics):
            return
        targets = heads.flat(y, "targets `y`")
        preds = heads.flat(y_pred, "model's outputs")
        for ms, t, p in zip(metrics, targets, preds, strict=True):
            for m in ms:
                m.update_state(t, p.data)

    @staticmethod
    def _logs(heads: _Heads | None, loss: float, parts: Mapping[str, metrics_mod.Mean],
              metrics: list[list[metrics_mod.Metric]], loss_first: bool) -> dict[str, float]:
        """The logs, with Keras's keys.

        `loss` and the metric names; with several outputs, `<output>_loss` and
        `<output>_<metric>` per output.
        """
        if heads is None or heads.kind == "single":
            named = {m.name: m.result() for ms in metrics for m in ms}
            return {"loss": loss, **named} if loss_first else {**named, "loss": loss}
        logs = {"loss": loss}
        for name, ms in zip(heads.names, metrics, strict=True):
            if name in parts:
                logs[f"{name}_loss"] = parts[name].result()
            for m in ms:
                logs[f"{name}_{m.name}"] = m.result()
        return logs

    # -- fit ---------------------------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: tuple[Any, ...] | None = None,
        shuffle: bool = True,
        class_weight: Mapping[int, float] | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        *,
        validation_batch_size: int | None = None,
        validation_freq: int | Sequence[int] = 1,
        seed: int | None = None,
        stream: TextIO | None = None,
    ) -> callbacks_mod.History:
        """Train from epoch `initial_epoch` up to epoch `epochs`, driving `callbacks`.

        The loop is Keras's: the callbacks' hooks are called in Keras's order (see
        `numba_gn.callbacks`), validation runs at the end of an epoch (with the `on_test_*`
        hooks), and `model.stop_training` (set by a callback such as `EarlyStopping`) ends
        training after the current batch.

        Args:
            x: Inputs (first axis: samples, at least one). A model with several inputs takes a
                list with one array per input, or a dict keyed by their names.
            y: Targets, the same way (one per output).
            batch_size: Samples per step (the last step of an epoch may be smaller); None
                means 32.
            epochs: Index of the last epoch (as Keras): training runs ``epochs -
                initial_epoch`` epochs, which must be at least one.
            verbose: "auto" or 1 (a progress bar per epoch), 2 (one line per epoch), 0
                (nothing). See `numba_gn.training.progbar` for the lines.
            callbacks: A `Callback`, a list of them, or a `CallbackList` (used as it is).
                A `History` and (unless `verbose=0`) a `ProgbarLogger` are added.
            validation_split: Fraction of the data held out for validation, in [0, 1): the
                *last* samples (and their sample weights), taken before shuffling (as Keras).
                Both parts must keep at least one sample.
            validation_data: `(x_val, y_val)` or `(x_val, y_val, val_sample_weight)`;
                overrides `validation_split`. Its samples must have the shape of the
                training ones.
            shuffle: Shuffle the training samples before each epoch.
            class_weight: A dict from class index to weight (one output only): each sample's
                loss is weighted by its class's weight (1 for a class not in the dict), the
                class being the rounded target or, for one-hot targets, the index of the 1.
            sample_weight: Weights of each sample's loss: an array of shape `(samples,)`
                (or `(samples, steps)` for sequence outputs), or, with several outputs, one
                per output in the structure of `y`. With the default loss reduction the
                loss of a batch is `sum(loss_i * weight_i) / batch_size` (Keras). The
                compiled metrics are not weighted (Keras's `metrics`).
            initial_epoch: Epoch to start from (for resuming; `BackupAndRestore` sets it).
            validation_batch_size: Samples per validation step (None: `batch_size`).
            validation_freq: Validate after every `validation_freq`-th epoch (an int), or
                after the epochs listed (1-based, e.g. `[1, 5, 10]`).
            seed: Seed (>= 0) of the shuffling. Epoch `e`'s order depends only on
                `(seed, e)`, so a run resumed at epoch `k` (weights and optimizer state
                restored, `initial_epoch=k`) sees the same batches as an uninterrupted one.
                None: a random seed for this call (kept in `BackupAndRestore`'s backups).
            stream: Where the progress goes (default `sys.stdout`); not Keras's.

        Returns:
            The `History` (also `model.history`): `history` maps "loss", each metric (with
            several outputs each output's loss and metrics), their "val_" versions on the
            epochs with validation, and "learning_rate" when a callback reports it, to one
            value per epoch.

        Raises:
            ValueError, TypeError: For any invalid argument (named in the message), before
                anything is trained or any callback is called.
            RuntimeError: When the model is not compiled.
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
        verbose_level = _check_verbose(verbose)
        validation_split = _checks.real(
            validation_split, "validation_split", low=0, high=1, high_open=True
        )
        shuffle = _checks.boolean(shuffle, "shuffle")
        seed = _check_seed(seed)
        if validation_batch_size is not None:
            validation_batch_size = _checks.integer(
                validation_batch_size, "validation_batch_size", low=1
            )
        freq = _check_validation_freq(validation_freq)
        _check_stream(stream)
        _check_callbacks(callbacks)
        if class_weight is not None and sample_weight is not None:
            raise ValueError(
                "You cannot `class_weight` and `sample_weight` at the same time."
            )
        x, y = self._x_y(x, y, "fit")
        sw = sample_weights(sample_weight, y, "fit", self._data_structure("y"))
        val: tuple[Data, Data, Data | None] | None = None
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
            tail, head = slice(split, None), slice(None, split)
            val = (x.subset(tail), y.subset(tail), None if sw is None else sw.subset(tail))
            x, y, sw = x.subset(head), y.subset(head), None if sw is None else sw.subset(head)
        if class_weight is not None:
            # Of the training part only (Keras): validation is not class-weighted.
            sw = class_weights(class_weight, y, "fit")
        steps = -(-len(x) // batch_size)
        with self._train_lock, blas_threads(self.blas_threads):
            cbs = _callback_list(callbacks, self, verbose, verbose_level, stream, epochs,
                                 steps, add_history=True)
            return self._fit(
                x, y, sw, batch_size, epochs, val, validation_batch_size or batch_size, freq,
                shuffle, seed, initial_epoch, cbs,
            )

    def _validation_arrays(
        self, validation_data: Any, x: Data, y: Data
    ) -> tuple[Data, Data, Data | None]:
        """`validation_data` checked against the training data, before training starts."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(
                "Argument `validation_data` must be a tuple `(x_val, y_val)` or `(x_val, y_val, "
                f"val_sample_weight)`. Received: {type(validation_data).__name__}"
                + (f" of length {len(validation_data)}"
                   if isinstance(validation_data, (tuple, list)) else "")
            )
        try:
            xv, yv = self._x_y(validation_data[0], validation_data[1], "fit")
            swv = None
            if len(validation_data) == 3:
                swv = sample_weights(validation_data[2], yv, "fit", self._data_structure("y"))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"Argument `validation_data`: {exc}") from None
        for name, train, valid in (("x", x, xv), ("y", y, yv)):
            if (train.kind, train.keys, len(train.arrays)) != (
                valid.kind, valid.keys, len(valid.arrays)
            ):
                raise ValueError(
                    f"Argument `validation_data`: its {name} ({', '.join(valid.labels)}) does "
                    f"not have the structure of the training {name} ({', '.join(train.labels)})."
                )
            for label, a, b in zip(train.labels, train.arrays, valid.arrays, strict=True):
                if b.shape[1:] != a.shape[1:]:
                    raise ValueError(
                        f"Argument `validation_data`: the {label} samples have shape "
                        f"{b.shape[1:]}, the training ones {a.shape[1:]}."
                    )
        return xv, yv, swv

    def _fit(
        self,
        x: Data,
        y: Data,
        sw: Data | None,
        batch_size: int,
        epochs: int,
        validation_data: tuple[Data, Data, Data | None] | None,
        validation_batch_size: int,
        validation_freq: int | list[int],
        shuffle: bool,
        seed: int | None,
        initial_epoch: int,
        cbs: callbacks_mod.CallbackList,
    ) -> callbacks_mod.History:
        """The loop, on checked arguments (see `fit` and `numba_gn.callbacks`)."""
        n = len(x)
        steps = -(-n // batch_size)
        # Created before on_train_begin: BackupAndRestore's restore sets its state there.
        shuffler = self._shuffler = _Shuffler(seed, shuffle)
        shuffler.resume_state = shuffler.state_for(initial_epoch)
        loss_tracker = metrics_mod.Mean("loss")
        part_trackers: dict[str, metrics_mod.Mean] = {}
        self.stop_training = False
        self._initial_epoch = None
        cbs.on_train_begin()
        if self._initial_epoch is not None:  # set by BackupAndRestore's restore
            initial_epoch = self._initial_epoch
        self._initial_epoch = None
        training_logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            loss_tracker.reset_state()
            for tracker in part_trackers.values():
                tracker.reset_state()
            for m in self.compiled_metrics:
                m.reset_state()
            # A backup taken inside this epoch resumes by running it again: same order.
            shuffler.resume_state = shuffler.state_for(epoch)
            cbs.on_epoch_begin(epoch)
            order = shuffler.order(epoch, n)
            for step in range(steps):
                cbs.on_train_batch_begin(step)
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                index: Any = slice(lo, hi) if order is None else order[lo:hi]
                xb, yb = x.take(index), y.take(index)
                self._step_output_losses = None
                if sw is None:  # a subclass's own train_step(x, y) need not take weights
                    loss_value, y_pred = self.train_step(xb, yb)
                else:
                    loss_value, y_pred = self.train_step(xb, yb, sw.take(index))
                loss_tracker.update_state(loss_value, count=hi - lo)
                for name, value in self._step_output_losses or ():
                    part_trackers.setdefault(name, metrics_mod.Mean(f"{name}_loss")).update_state(
                        value, count=hi - lo
                    )
                heads = self._heads_for(y_pred)
                self._update_metrics(heads, heads.metrics, yb, y_pred)
                cbs.on_train_batch_end(step, self._logs(
                    heads, loss_tracker.result(), part_trackers, heads.metrics, loss_first=False
                ))
                if self.stop_training:
                    break
            heads = self._heads_for(None)
            epoch_logs = self._logs(heads, loss_tracker.result(), part_trackers, heads.metrics,
                                    loss_first=False)
            if validation_data is not None and _should_eval(epoch, validation_freq):
                val_logs = self._test_loop(*validation_data, validation_batch_size, cbs)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            # Backed up at this epoch's end, training resumes at the next epoch.
            shuffler.resume_state = shuffler.state_for(epoch + 1)
            cbs.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if self.stop_training:
                break
        # Not in a `finally`: after an exception, BackupAndRestore must keep its backup.
        cbs.on_train_end(training_logs)
        return getattr(self, "history", None)  # type: ignore[return-value]

    # -- BackupAndRestore's hooks ------------------------------------------------------------------

    def _backup_state(self) -> dict[str, Any]:
        """The whole training state, for `BackupAndRestore` (see `numba_gn.callbacks`).

        `"weights"`: every weight, in `get_weights` order; `"optimizer"`: the optimizer's
        `get_state` (its iteration count and each weight's slot arrays, None for a weight it
        has not stepped yet) and its learning rate (None when it is a schedule, which the
        count determines); `"rng"`: the state of the generator of the shuffle of the next
        epoch to run (None without shuffling); `"shuffle_seed"`: the seed the epochs'
        shuffles derive from.
        """
        optimizer = self.optimizer
        variables = self.weights  # type: ignore[attr-defined]
        state: dict[str, Any] = {"iterations": 0, "learning_rate": None,
                                 "slots": [None] * len(variables)}
        if optimizer is not None:
            state.update(optimizer.get_state(variables))
            if not callable(getattr(optimizer, "_learning_rate", None)):
                state["learning_rate"] = float(optimizer.learning_rate)
        shuffler = self._shuffler
        return {
            "weights": self.get_weights(),  # type: ignore[attr-defined]
            "optimizer": state,
            "rng": None if shuffler is None else shuffler.resume_state,
            "shuffle_seed": None if shuffler is None else shuffler.seed,
        }

    def _restore_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `_backup_state` returned; resume at epoch `state["epoch"]`.

        Everything is checked against this model and its optimizer first: a backup that does
        not fit (another architecture, another optimizer) raises ValueError (TypeError for
        entries of the wrong kind) and changes nothing.
        """
        variables = self.weights  # type: ignore[attr-defined]
        optimizer = self.optimizer
        learning_rate = _check_backup(state, variables)
        if optimizer is not None:
            opt = state["optimizer"]
            try:
                # Checks everything before changing anything: first of the changes here.
                optimizer.set_state({"iterations": opt.get("iterations"),
                                     "slots": opt.get("slots")}, variables)
            except (TypeError, ValueError) as exc:
                raise type(exc)(
                    f"BackupAndRestore: the backup does not fit this model: {exc}"
                ) from None
            if learning_rate is not None and not callable(
                getattr(optimizer, "_learning_rate", None)
            ):
                optimizer.learning_rate = learning_rate
        self.set_weights(state["weights"])  # type: ignore[attr-defined]
        shuffler = self._shuffler
        if shuffler is not None:
            if isinstance(state.get("shuffle_seed"), int):
                shuffler.seed = state["shuffle_seed"]
            if state.get("rng") is not None:
                shuffler.restored = (int(state["epoch"]), state["rng"])
        self._initial_epoch = int(state["epoch"])

    # -- evaluate / predict ------------------------------------------------------------------------

    def evaluate(
        self,
        x: Any,
        y: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        sample_weight: Any = None,
        *,
        callbacks: Any = None,
        return_dict: bool = False,
        stream: TextIO | None = None,
    ) -> float | list[float] | dict[str, float]:
        """Loss (with regularization) and metrics over `(x, y)`, in batches, in inference mode.

        `batch_size` (None: 32), `verbose` ("auto", 0, 1 or 2), `sample_weight` and
        `stream` are as in `fit`; `callbacks` get the `on_test_*` hooks (Keras).
        Invalid arguments raise `ValueError`/`TypeError` naming them.

        Returns the loss alone when nothing else is reported, else `[loss, *others]` in the
        order of the dict that `return_dict` returns (Keras's keys).
        """
        self._check_compiled("evaluate")
        batch_size = _check_batch_size(batch_size)
        verbose_level = _check_verbose(verbose)
        return_dict = _checks.boolean(return_dict, "return_dict")
        _check_stream(stream)
        _check_callbacks(callbacks)
        x, y = self._x_y(x, y, "evaluate")
        sw = sample_weights(sample_weight, y, "evaluate", self._data_structure("y"))
        steps = -(-len(x) // batch_size)
        cbs = _callback_list(callbacks, self, verbose, verbose_level, stream, 1, steps)
        with blas_threads(self.blas_threads):
            logs = self._test_loop(x, y, sw, batch_size, cbs)
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def _test_loop(
        self, x: Data, y: Data, sw: Data | None, batch_size: int, cbs: callbacks_mod.CallbackList
    ) -> dict[str, float]:
        """Loss and metrics over checked arrays, with the `on_test_*` hooks.

        The metrics are fresh for this call, so that validation inside `fit` or an
        `evaluate` in another thread leaves the training metrics alone.
        """
        n = len(x)
        tracker = metrics_mod.Mean("loss")
        parts: dict[str, metrics_mod.Mean] = {}
        metrics: list[list[metrics_mod.Metric]] | None = None
        heads = None
        logs: dict[str, float] = {}
        self.stop_evaluating = False
        cbs.on_test_begin()
        for step in range(-(-n // batch_size)):
            cbs.on_test_batch_begin(step)
            lo, hi = step * batch_size, min((step + 1) * batch_size, n)
            index = slice(lo, hi)
            yb = y.take(index)
            with no_record():
                y_pred = self(x.take(index), training=False)  # type: ignore[operator]
                loss, losses = self._losses_of_step(yb, y_pred,
                                                    None if sw is None else sw.take(index))
            tracker.update_state(float(loss.data), hi - lo)
            if len(losses) > 1:
                for name, value in losses:
                    parts.setdefault(name, metrics_mod.Mean(f"{name}_loss")).update_state(
                        float(value.data), hi - lo
                    )
            if heads is None:
                heads = self._heads_for(y_pred)
                metrics = self._fresh_metrics(heads)
            self._update_metrics(heads, metrics, yb, y_pred)  # type: ignore[arg-type]
            logs = self._logs(heads, tracker.result(), parts, metrics or [], loss_first=True)
            cbs.on_test_batch_end(step, logs)
            if self.stop_evaluating:
                break
        cbs.on_test_end(logs)
        return logs

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = 0,
        *,
        callbacks: Any = None,
        stream: TextIO | None = None,
    ) -> Any:
        """The model's outputs for `x` (inference mode), computed in batches.

        `x` is one array, or a list/dict of arrays for a model with several inputs. The
        result is one array, or a list/dict with one array per output. `batch_size` is None
        (32) or a positive int; `verbose` ("auto", 0, 1 or 2) shows progress as in
        `fit` (the default, 0, is not Keras's "auto": predictions are often made in
        loops, where a bar per call is noise); `callbacks` get the `on_predict_*` hooks,
        each batch's outputs as `{"outputs": ...}`.
        """
        batch_size = _check_batch_size(batch_size)
        verbose_level = _check_verbose(verbose)
        _check_stream(stream)
        _check_callbacks(callbacks)
        data = to_data(x, "x", "predict", self._data_structure("x"), self._cast_input)
        if len(data) == 0:
            raise ValueError("Argument `x` of predict() is empty (0 samples).")
        steps = -(-len(data) // batch_size)
        cbs = _callback_list(callbacks, self, verbose, verbose_level, stream, 1, steps)
        outs = []
        self.stop_predicting = False
        with blas_threads(self.blas_threads):
            cbs.on_predict_begin()
            for step in range(steps):
                cbs.on_predict_batch_begin(step)
                batch = data.take(slice(step * batch_size, (step + 1) * batch_size))
                with no_record():
                    out = self(batch, training=False)  # type: ignore[operator]
                outs.append(out)
                cbs.on_predict_batch_end(step, {"outputs": _as_arrays(out)})
                if self.stop_predicting:
                    break
            cbs.on_predict_end()
        return _concat(outs)

    # -- weights on disk ---------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        """Write every weight to `path`, atomically, in the format its suffix names.

        `.npz`: numba_gn's file, keyed `"layer_name/weight_name"`; `.weights.h5`: Keras
        3's file (needs h5py), which `keras.Model.load_weights` reads. Other suffixes are
        refused. See `numba_gn.training.saving`.
        """
        saving.save_weights(self, path)

    def load_weights(self, path: str) -> None:
        """Read weights from an `.npz`, a `.weights.h5` (also Keras's) or a `.keras` file.

        Names and shapes are checked before any weight changes.
        """
        saving.load_weights(self, path)
