"""Keras 3's training callbacks, driven by a fit loop through a `CallbackList`.

The classes, their argument names, defaults, decisions, messages and warnings are Keras 3's
(`keras.callbacks`): `Callback`, `CallbackList`, `History`, `ProgbarLogger`, `EarlyStopping`,
`ModelCheckpoint`, `ReduceLROnPlateau`, `LearningRateScheduler`, `CSVLogger`,
`TerminateOnNaN`, `LambdaCallback` and `BackupAndRestore`. Differences from Keras are noted
where they occur; the main ones: arguments are checked when a callback is constructed (a bad
one is a `ValueError`/`TypeError` naming it), files are written atomically, and hooks are always
called synchronously (Keras may run `on_*_batch_end` in a thread pool).

The fit-loop protocol
---------------------
A loop drives the callbacks exactly as Keras's `Model.fit` does::

    cbs = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    model._initial_epoch = None
    cbs.on_train_begin()
    if model._initial_epoch is not None:          # set by BackupAndRestore's restore
        initial_epoch = model._initial_epoch
    model._initial_epoch = None
    training_logs = {}
    for epoch in range(initial_epoch, epochs):
        reset the metrics
        cbs.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            cbs.on_train_batch_begin(step)
            one training step
            cbs.on_train_batch_end(step, {"loss": ..., <metric>: ...})   # running epoch means
            if model.stop_training:
                break
        epoch_logs = {"loss": ..., <metric>: ...}                  # the epoch's means
        if there is validation data:
            cbs.on_test_begin()
            for vstep in ...:
                cbs.on_test_batch_begin(vstep)
                cbs.on_test_batch_end(vstep, {"loss": ..., <metric>: ...})
            cbs.on_test_end(val_logs)                               # unprefixed names
            epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    cbs.on_train_end(training_logs)
    return model.history

* `params` (given to every callback by `set_params`) is `{"verbose": verbose, "epochs":
  epochs, "steps": steps_per_epoch}`: Keras passes `verbose` as given ("auto" included;
  `ProgbarLogger` reads "auto" as 1), `epochs` is fit's `epochs` (the end of the epoch range,
  also with `initial_epoch`), `steps` the number of batches per epoch (None when unknown).
* `on_train_end` must *not* be called when the loop ends with an exception (no `finally`):
  `BackupAndRestore` deletes its backup there, and an interrupted run must keep it.
* `CallbackList` passes each hook one new dict of plain floats (see `pythonify_logs`), shared
  by all callbacks of that call, so `LearningRateScheduler`/`ReduceLROnPlateau` can add
  "learning_rate" for the callbacks after them (`History` is last); the loop's own dicts are
  never modified.
* `model.stop_training` may be set by any hook (`EarlyStopping`, `TerminateOnNaN`).
* `ProgbarLogger` writes to its `stream` attribute (None: `sys.stdout`); a loop with a `stream`
  argument sets `cbs._progbar.stream = stream` when `cbs._progbar` is not None and its stream
  is None. Validation inside `fit` is silent (Keras).
* `evaluate(callbacks=...)`: `CallbackList(callbacks, add_progbar=verbose != 0, model=model,
  verbose=verbose, epochs=1, steps=steps)`, then `on_test_begin()`, per batch
  `on_test_batch_begin(i)` / `on_test_batch_end(i, running_logs)`, and `on_test_end(logs)`.
  `predict(callbacks=...)`: the same list, `on_predict_begin()`, per batch
  `on_predict_batch_begin(i)` / `on_predict_batch_end(i, {"outputs": batch_outputs})`,
  `on_predict_end()`.

What the model provides
-----------------------
`stop_training` (a settable bool), `get_weights()`/`set_weights(list)` (copies, used by
`EarlyStopping(restore_best_weights=True)`), `optimizer` with a `learning_rate` property
(`ReduceLROnPlateau`, `LearningRateScheduler`), `save_weights(path)` and, for
`ModelCheckpoint(save_weights_only=False)`, `save(path)`; `history` is set on it by
`CallbackList`/`History`. The metrics compiled into the model (`compiled_metrics` or
`metrics`) tell `mode="auto"` which direction is better for a metric other than a loss.

For `BackupAndRestore`, two hooks:

* `model._backup_state() -> dict` returns the whole training state, with at least the keys
  "weights" (every weight, as arrays, in `get_weights()` order), "optimizer" (its step count,
  its learning rate when that is a number, since callbacks change it, and every slot array,
  e.g. `{"iterations": 12, "learning_rate": 0.01, "slots": [(m, v), ...]}`) and "rng" (the
  shuffling generator's `bit_generator.state`, or None when nothing is random). The values are
  built from None, bools, ints, floats, strings, lists, tuples, dicts with string keys and
  numeric (or string) NumPy arrays; the callback writes them at once, so they may be the
  model's own arrays rather than copies. "rng" is the state from
  which the shuffle of the next epoch to run will be drawn: at the end of an epoch that is the
  generator's current state, inside an epoch (a batch-level backup) it is the state saved just
  before that epoch's shuffle was drawn, since a resumed run restarts that epoch (Keras).
  Simplest: keep `model._rng_resume_state`, set to `rng.bit_generator.state` right before
  drawing each epoch's shuffle and again just before `on_epoch_end`, and return it.
* `model._restore_state(state)` receives that dict back (same structure: tuples stay tuples,
  arrays come back as arrays, NumPy scalars as Python scalars) plus the keys "epoch" (the
  epoch to resume from: the number of epochs completed) and "batch" (the last batch index
  seen, 0 after an epoch end), which `_backup_state` must not use. It restores the weights,
  the optimizer and the generator, and sets `model._initial_epoch = state["epoch"]`, which the
  loop reads right after `on_train_begin` (above). It is called from `on_train_begin`, so
  the loop creates its generator before that call.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import math
import numbers
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO, TextIO

import numpy as np

from numba_gn import _checks
from numba_gn._atomic import atomic_write
from numba_gn.autograd import Tensor
from numba_gn.training import metrics as metrics_mod
from numba_gn.training.progbar import Progbar

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]

Logs = dict[str, Any]

#: Every hook a callback has; `CallbackList` refuses objects that lack one.
HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_train_begin",
    "on_train_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)


# -- small helpers --------------------------------------------------------------------------------


def _print_msg(message: str) -> None:
    """Keras's `io_utils.print_msg`: one line on (the current) stdout, flushed."""
    sys.stdout.write(f"{message}\n")
    sys.stdout.flush()


def _path_string(value: object, name: str) -> str:
    """`value` (str or os.PathLike) as a str, else a TypeError naming the argument."""
    try:
        return os.fsdecode(os.fspath(value))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"`{name}` must be a str or os.PathLike, got {name}={_checks.show(value)}."
        ) from None


def _verbose(value: object) -> int:
    return _checks.integer(value, "verbose", low=0)


def _optional_real(value: object, name: str) -> float | None:
    return None if value is None else _checks.real(value, name)


def _save_freq(value: object, message: str) -> str | int:
    """`"epoch"` or a positive int of batches; Keras's ValueError (and text) otherwise.

    Keras also takes bools and ints < 1 (which then save after every batch); here they are
    refused, since they are evidently mistakes.
    """
    if isinstance(value, str) and value == "epoch":
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if value < 1:
            raise ValueError(f"`save_freq` must be 'epoch' or an integer >= 1. {message}")
        return int(value)
    raise ValueError(message)


def pythonify_logs(logs: Mapping[str, Any] | None) -> Logs:
    """Keras's `pythonify_logs`: a new dict, keys sorted, nested dicts flattened, values floats.

    Values that `float()` cannot convert (arrays of rank > 0, for one) are kept as they are.
    Unlike Keras, strings are kept as text too (Keras would turn "1.5" into 1.5).
    """
    result: Logs = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, Mapping):
            result.update(pythonify_logs(value))
            continue
        if isinstance(value, Tensor):
            value = value.data
        if not isinstance(value, (str, bytes)):
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                value = float(value)
        result[key] = value
    return result


def _atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write a file with `write(fh)` so that readers see the old or the new file, never a mix.

    The library's one atomic writer, `numba_gn._atomic.atomic_write` (temporary file in the
    same folder, flush, fsync, `os.replace`, fsync of the folder; the temporary file removed
    on failure).
    """
    atomic_write(path, write)


# -- learning rate --------------------------------------------------------------------------------


def _optimizer(callback: Callback) -> Any:
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{type(callback).__name__} needs the model's optimizer, but model.optimizer is "
            "None: compile the model first."
        )
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError('Optimizer must have a "learning_rate" attribute.')
    return optimizer


def _get_learning_rate(optimizer: Any) -> float:
    """The learning rate of the optimizer's next step, as a float (a schedule is evaluated)."""
    value = optimizer.learning_rate
    if isinstance(value, Tensor):
        value = value.data
    return float(np.asarray(value))


def _uses_schedule(optimizer: Any) -> bool:
    """Whether the learning rate is a schedule (a callable of the step), not a number.

    `numba_gn.training.optimizers.Optimizer` keeps what it was given in `_learning_rate` and
    evaluates a schedule in its `learning_rate` property; other optimizers may expose the
    callable itself as `learning_rate`.
    """
    stored = getattr(optimizer, "_learning_rate", None)
    return callable(stored) or callable(getattr(optimizer, "learning_rate", None))


def _set_learning_rate(optimizer: Any, value: float) -> None:
    """Set a constant learning rate; refused (Keras's TypeError) when it is a schedule.

    Replacing a schedule by a number would silently end the schedule, so Keras refuses it.
    """
    if _uses_schedule(optimizer):
        raise TypeError(
            "This optimizer was created with a `LearningRateSchedule` object as its "
            "`learning_rate` constructor argument, hence its learning rate is not settable. "
            "If you need the learning rate to be settable, you should instantiate the "
            "optimizer with a float `learning_rate` argument."
        )
    optimizer.learning_rate = value


# -- Callback -------------------------------------------------------------------------------------


class Callback:
    """Base class of the callbacks: override the hooks for the stages of interest.

    Every hook does nothing here, except `on_train_batch_begin`/`on_train_batch_end`, which
    call the older aliases `on_batch_begin`/`on_batch_end` (as in Keras).

    Attributes:
        params: The loop's parameters (`{"verbose", "epochs", "steps"}` in `fit`), or None.
        model: The model being trained (set by `set_model`), or None.
    """

    # Class-level defaults, so a subclass that forgets `super().__init__()` still works.
    params: dict[str, Any] | None = None
    _model: Any = None

    def __init__(self) -> None:
        self.params = None
        self._model = None

    def set_params(self, params: dict[str, Any]) -> None:
        """Store the loop's parameters."""
        self.params = params

    def set_model(self, model: Any) -> None:
        """Store the model the callback acts on."""
        self._model = model

    @property
    def model(self) -> Any:
        """The model given to `set_model`."""
        return self._model

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """A backwards compatibility alias for `on_train_batch_begin`."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """A backwards compatibility alias for `on_train_batch_end`."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Called at the start of an epoch (index from 0) of `fit`."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Called at the end of an epoch, with the epoch's metrics (and "val_" ones)."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Called before a training batch (index within the epoch); calls `on_batch_begin`."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Called after a training batch, with the running metrics; calls `on_batch_end`."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Called before a batch of `evaluate` (or of the validation in `fit`)."""

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Called after a batch of `evaluate` (or of the validation in `fit`)."""

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Called before a batch of `predict`."""

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Called after a batch of `predict`, with `{"outputs": ...}`."""

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Called at the start of `fit`."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Called at the end of `fit` (not when it fails), with the last epoch's logs."""

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Called at the start of `evaluate` (or of the validation in `fit`)."""

    def on_test_end(self, logs: Logs | None = None) -> None:
        """Called at the end of `evaluate` (or of the validation in `fit`)."""

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Called at the start of `predict`."""

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """Called at the end of `predict`."""


def _flatten_callbacks(callbacks: Any) -> list[Any]:
    if isinstance(callbacks, (list, tuple)):
        return [cb for item in callbacks for cb in _flatten_callbacks(item)]
    return [callbacks]


def _check_callback(cb: Any, index: int) -> None:
    missing = [h for h in HOOKS if not callable(getattr(cb, h, None))]
    for name in ("set_model", "set_params"):
        if not callable(getattr(cb, name, None)):
            missing.append(name)
    if missing:
        raise TypeError(
            f"`callbacks[{index}]` must be a Callback, got {_checks.show(cb)} (of type "
            f"{type(cb).__name__}), which has no {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}."
        )


# -- History and ProgbarLogger --------------------------------------------------------------------


class History(Callback):
    """Records the logs of every epoch; `fit` returns it (and sets it as `model.history`).

    `history` maps each log key to its values, one per epoch; it is not cleared by a new
    `fit` (Keras), while `epoch` (the epoch indices) is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Start a new list of epochs."""
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Append the epoch's logs and make this the model's `history`."""
        logs = logs or {}
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        # Keras sets it here too, so the model's history is the latest one.
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Prints progress: a bar per epoch (verbose 1) or one line per epoch (verbose 2).

    Reads "verbose" ("auto" is 1), "epochs" and "steps" from `params`, as Keras's. The lines
    are those of `numba_gn.training.progbar.Progbar`; "Epoch i/n" is printed before each epoch
    when there is more than one. Validation inside `fit` is not shown.

    Args:
        stream: Where to write (a text stream); None (default) means `sys.stdout` at the time
            of writing. Keras's `ProgbarLogger` takes no argument and always writes to stdout.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise TypeError(
                "`stream` must be a text stream with a write() method or None, got "
                f"stream={_checks.show(stream)}."
            )
        self.stream = stream
        self.seen = 0
        self.progbar: Progbar | None = None
        self.target: int | None = None
        self.verbose: int = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params: dict[str, Any]) -> None:
        """Read "verbose", "epochs" and "steps" (KeyError when one is missing, as Keras)."""
        super().set_params(params)
        verbose = params["verbose"]
        if verbose == "auto":
            verbose = 1
        self.verbose = verbose
        self.epochs = params["epochs"]
        self.target = params["steps"]

    def _stream(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Inside `fit`, validation stays silent."""
        self._called_in_fit = True

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Start a bar for `evaluate` (not for validation inside `fit`)."""
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Start a bar for `predict`."""
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Start the epoch's bar, after "Epoch i/n" when there are several epochs."""
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            stream = self._stream()
            stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            stream.flush()

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Redraw the bar (verbose 1 only)."""
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Redraw the bar of `evaluate`."""
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Redraw the bar of `predict` (without the outputs)."""
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Write the epoch's final line, validation values included."""
        self._finalize_progbar(logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        """Write the final line of `evaluate`."""
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """Write the final line of `predict`."""
        self._finalize_progbar(logs)

    def _reset_progbar(self) -> None:
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self) -> None:
        if self.progbar is None and self.verbose:
            self.progbar = Progbar(self.target or 1, stream=self._stream(), verbose=self.verbose)

    def _update_progbar(self, batch: int, logs: Logs | None) -> None:
        self._maybe_init_progbar()
        self.seen = batch + 1  # one-indexed
        if self.verbose == 1 and self.progbar is not None:
            if self.target is None:  # unknown length: the bar grows with the steps seen
                self.progbar.total = max(self.seen, 1)
            self.progbar.update(self.seen, _numbers(logs))

    def _finalize_progbar(self, logs: Logs | None) -> None:
        self._maybe_init_progbar()
        if self.progbar is None:  # verbose 0: Keras's Progbar prints nothing either
            return
        if self.target is None:
            self.target = self.seen
            self.progbar.total = max(self.seen, 1)
        self.progbar.finish(_numbers(logs))


def _numbers(logs: Logs | None) -> dict[str, float]:
    """The real-valued entries of `logs`: what the bar can format."""
    return {
        k: float(v)
        for k, v in (logs or {}).items()
        if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    }


# -- CallbackList ---------------------------------------------------------------------------------


class CallbackList(Callback):
    """Calls a list of callbacks together; what `fit`, `evaluate` and `predict` drive.

    Each hook converts its logs once with `pythonify_logs` (a new dict of floats, keys
    sorted) and passes that one dict to every callback in turn. Callbacks run in list order,
    synchronously (Keras may run batch-end hooks in a thread pool; the models here are not
    meant to be read by another thread during a step).

    Args:
        callbacks: A Callback, or a (nested) list/tuple of them; None for none.
        add_history: Append a `History` unless the list has one.
        add_progbar: Append a `ProgbarLogger` unless the list has one.
        model: The model, given to every callback (and `model.history` set to the History).
        **params: The loop's parameters, given to every callback with `set_params` (when
            any is given).

    Raises:
        TypeError: An element is not a callback (lacks a hook), or a flag is not a bool.
    """

    def __init__(
        self,
        callbacks: Callback | Iterable[Callback] | None = None,
        add_history: bool = False,
        add_progbar: bool = False,
        model: Any = None,
        **params: Any,
    ) -> None:
        super().__init__()
        add_history = _checks.boolean(add_history, "add_history")
        add_progbar = _checks.boolean(add_progbar, "add_progbar")
        cbs = [] if callbacks is None else _flatten_callbacks(callbacks)
        for i, cb in enumerate(cbs):
            _check_callback(cb, i)
        self.callbacks: list[Any] = cbs
        self._in_begin_end_block_count = 0
        self._add_default_callbacks(add_history, add_progbar)
        self.set_model(model)
        self.set_params(params)

    def _add_default_callbacks(self, add_history: bool, add_progbar: bool) -> None:
        self._progbar: ProgbarLogger | None = None
        self._history: History | None = None
        for cb in self.callbacks:
            if isinstance(cb, ProgbarLogger):
                self._progbar = cb
            elif isinstance(cb, History):
                self._history = cb
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)

    def set_params(self, params: dict[str, Any]) -> None:
        """Store `params` and, when not empty, give them to every callback."""
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model: Any) -> None:
        """Give `model` to every callback (None is ignored) and set its `history`."""
        # `is None`, not Keras's falsiness test: a model may define __len__ (its layers).
        if model is None:
            return
        super().set_model(model)
        if self._history:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def _on_begin(self) -> None:
        self._in_begin_end_block_count += 1

    def _on_end(self) -> None:
        self._in_begin_end_block_count -= 1
        if self._in_begin_end_block_count < 0:
            self._in_begin_end_block_count = 0
            raise ValueError("`on_xxx_end` called without corresponding `on_xxx_begin`")

    def _call(self, hook: str, *args: Any, logs: Any = None) -> None:
        logs = pythonify_logs(logs)
        if "batch" in hook:
            # Keras's calling convention, which LambdaCallback functions rely on: the batch
            # hooks get `logs` by keyword, the others positionally.
            for callback in self.callbacks:
                getattr(callback, hook)(*args, logs=logs)
        else:
            for callback in self.callbacks:
                getattr(callback, hook)(*args, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_batch_begin`."""
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_batch_end`."""
        self._call("on_batch_end", batch, logs=logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_epoch_begin`."""
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_epoch_end`."""
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_train_batch_begin`."""
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_train_batch_end`."""
        self._call("on_train_batch_end", batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_test_batch_begin`."""
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_test_batch_end`."""
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_predict_batch_begin`."""
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Dispatch `on_predict_batch_end`."""
        self._call("on_predict_batch_end", batch, logs=logs)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Dispatch `on_train_begin`."""
        self._on_begin()
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Dispatch `on_train_end`."""
        self._call("on_train_end", logs=logs)
        self._on_end()

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Dispatch `on_test_begin`."""
        self._on_begin()
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        """Dispatch `on_test_end`."""
        self._call("on_test_end", logs=logs)
        self._on_end()

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Dispatch `on_predict_begin`."""
        self._on_begin()
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """Dispatch `on_predict_end`."""
        self._call("on_predict_end", logs=logs)
        self._on_end()


# -- monitoring -----------------------------------------------------------------------------------

# Which way is better for this package's metrics; Keras reads `_direction` from its metrics.
_UP_FUNCTIONS = frozenset(metrics_mod._FUNCTIONS.values())


def _metric_direction(metric: Any) -> str | None:
    direction = getattr(metric, "_direction", None)
    if direction in ("up", "down"):
        return direction
    if isinstance(metric, metrics_mod.Accuracy):
        return "up"
    if isinstance(metric, metrics_mod.MeanMetricWrapper) and metric.fn in _UP_FUNCTIONS:
        return "up"
    return None


def _model_metrics(model: Any) -> list[Any]:
    found: list[Any] = []
    for attr in ("compiled_metrics", "metrics"):
        try:
            value = getattr(model, attr, None)
        except Exception:  # a property that cannot answer yet (unbuilt model)
            continue
        if isinstance(value, (list, tuple)):
            for m in value:
                # Keras's containers (CompileMetrics) hold the metrics in `.metrics`.
                inner = getattr(m, "metrics", None)
                found.extend(inner if isinstance(inner, (list, tuple)) else [m])
    return found


def _check_mode(callback: Any, mode: object) -> str:
    if mode not in ("auto", "min", "max"):
        warnings.warn(
            f"{type(callback).__name__} mode '{mode}' is unknown, fallback to auto mode.",
            stacklevel=3,
        )
        return "auto"
    return mode  # type: ignore[return-value]


class MonitorCallback(Callback):
    """Base of the callbacks that watch a metric (Keras's, not exported either).

    `mode="auto"` minimises names that are "loss" or "val_loss" and, for other names, follows
    the direction of the compiled metric of that name (accuracies: maximise); otherwise the
    first epoch end raises Keras's ValueError asking for `mode="min"` or `"max"`.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        baseline: float | None = None,
        min_delta: float = 0,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"`monitor` must be a string, got monitor={_checks.show(monitor)}.")
        min_delta = _checks.real(min_delta, "min_delta")
        baseline = _optional_real(baseline, "baseline")
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op: Callable[[Any, Any], Any] | None = None

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            metric_name = self.monitor.removeprefix("val_")
            if metric_name == "loss":
                self.monitor_op = np.less
            for m in _model_metrics(self.model):
                if getattr(m, "name", None) == metric_name:
                    direction = _metric_direction(m)
                    if direction is not None:
                        self.monitor_op = np.greater if direction == "up" else np.less
            if self.monitor_op is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but "
                    "Keras isn't able to automatically determine whether that metric should "
                    "be maximized or minimized. Pass `mode='max'` in order to monitor based "
                    "on the highest metric value, or pass `mode='min'` in order to use the "
                    "lowest value."
                )
        if self.monitor_op is np.less:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value: Any, reference_value: Any) -> bool:
        if reference_value is None:
            return True
        assert self.monitor_op is not None
        return bool(self.monitor_op(monitor_value - self.min_delta, reference_value))


# -- EarlyStopping --------------------------------------------------------------------------------


class EarlyStopping(MonitorCallback):
    """Stop training when a monitored metric has stopped improving (Keras's rules).

    At each epoch end from `start_from_epoch` on, a value better than the best by more than
    `min_delta` becomes the best (and, when it also beats `baseline`, resets the wait);
    otherwise, once `patience` epochs have passed without such a reset, `model.stop_training`
    is set (never at epoch 0).

    Args:
        monitor: The log key to watch. Defaults to "val_loss".
        min_delta: Smallest change that counts as an improvement (its absolute value is used).
        patience: Epochs without improvement before stopping (an int >= 0).
        verbose: 0 (silent) or more (print a line when stopping or restoring).
        mode: "auto", "min" or "max"; anything else warns (Keras's UserWarning) and is "auto".
        baseline: Training stops after `patience` epochs unless the metric beats this.
        restore_best_weights: At the end of training, set the weights of the best epoch
            (of the monitored epochs; even when none beat `baseline`).
        start_from_epoch: Epochs to wait before monitoring (an int >= 0).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        patience = _checks.integer(patience, "patience", low=0)
        verbose = _verbose(verbose)
        baseline = _optional_real(baseline, "baseline")
        restore_best_weights = _checks.boolean(restore_best_weights, "restore_best_weights")
        start_from_epoch = _checks.integer(start_from_epoch, "start_from_epoch", low=0)
        super().__init__(monitor, _check_mode(self, mode), min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = restore_best_weights
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Reset the state, so an instance can be reused by another `fit`."""
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Compare the monitored value with the best; maybe set `model.stop_training`."""
        if self.monitor_op is None:
            # Delayed until the model's metrics exist, as Keras does.
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # If best weights were never set, the current weights are the best.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only restart the wait when beating both the baseline and the previous best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Report the stop and restore the best weights when asked."""
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print_msg(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: Logs | None) -> Any:
        """The monitored value in `logs`, or None with Keras's warning."""
        logs = logs or {}
        monitor_value = logs.get(self.monitor)
        if monitor_value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(list(logs.keys()))}",
                stacklevel=2,
            )
        return monitor_value


# -- ModelCheckpoint ------------------------------------------------------------------------------


class _BatchSaves:
    """Keras's batch counting for the callbacks that save every `save_freq` batches.

    The class sets `save_freq` ("epoch" or an int), `_batches_seen_since_last_saving` (0) and
    `_last_batch_seen` (None or an int) in its `__init__`.
    """

    save_freq: str | int
    _batches_seen_since_last_saving: int
    _last_batch_seen: int | None

    def _should_save_on_batch(self, batch: int) -> bool:
        """Count the batches ended since the last save: True (and restart) at `save_freq`."""
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            add_batches = batch + 1  # a new epoch; batches are zero-indexed
        else:
            add_batches = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add_batches
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:  # type: ignore[operator]
            self._batches_seen_since_last_saving = 0
            return True
        return False


class ModelCheckpoint(MonitorCallback, _BatchSaves):
    """Save the model or its weights every epoch, or every `save_freq` batches.

    The file name is `filepath.format(epoch=epoch + 1, **logs)` (plus `batch=batch + 1` for
    batch-level saves), so "w-{epoch:02d}-{val_loss:.3f}.npz" names each file after its epoch
    and validation loss. The folder is created when missing. Saving calls
    `model.save_weights(path)` (`save_weights_only=True`) or `model.save(path)`.

    The model's `save_weights` picks the format from the suffix (".npz", or Keras's
    ".weights.h5"; other suffixes are refused when the first file is written) and `save`
    writes a ".keras" file; every write is atomic.

    Args:
        filepath: str or os.PathLike, possibly with `{epoch}`, `{batch}` and log-key fields.
        monitor: The log key compared when `save_best_only`. Defaults to "val_loss".
        verbose: 0 (silent) or more (a line per decision).
        save_best_only: Save only when the monitored value improves on the best so far
            (and save anyway, with Keras's warning, when it is missing from the logs).
        save_weights_only: Save with `model.save_weights` rather than `model.save`.
        mode: "auto", "min" or "max"; anything else warns and is "auto".
        save_freq: "epoch" or a number of batches (an int >= 1).
        initial_value_threshold: The initial best value (None: the first value).

    Raises:
        ValueError: `save_freq` is neither "epoch" nor an int >= 1 (Keras's message).
        TypeError: Another argument has the wrong type.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        filepath = _path_string(filepath, "filepath")
        verbose = _verbose(verbose)
        save_best_only = _checks.boolean(save_best_only, "save_best_only")
        save_weights_only = _checks.boolean(save_weights_only, "save_weights_only")
        save_freq = _save_freq(
            save_freq,
            f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer "
            "values",
        )
        initial_value_threshold = _optional_real(
            initial_value_threshold, "initial_value_threshold"
        )
        super().__init__(monitor, _check_mode(self, mode), initial_value_threshold)
        self.verbose = verbose
        self.filepath = filepath
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Check, before any training, that the model can be saved the way asked."""
        method = "save_weights" if self.save_weights_only else "save"
        if not callable(getattr(self.model, method, None)):
            hint = "" if self.save_weights_only else " Pass `save_weights_only=True`."
            raise TypeError(
                f"ModelCheckpoint(save_weights_only={self.save_weights_only}) calls "
                f"model.{method}(filepath), but the model ({type(self.model).__name__}) has "
                f"no `{method}` method.{hint}"
            )

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Save every `save_freq` batches (when `save_freq` is an int)."""
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Remember the epoch for batch-level file names."""
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Save (when `save_freq="epoch"`)."""
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_model(
        self, epoch: int, batch: int | None, logs: Logs | None, filepath: str
    ) -> bool:
        logs = logs or {}
        if not self.save_best_only:
            if self.verbose > 0:
                _print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Can save best model only with {self.monitor} available.", stacklevel=2
            )
            return True
        if isinstance(current, np.ndarray) and current.ndim > 0:
            warnings.warn(
                "Can save best model only when `monitor` is a scalar value. Received: "
                f"{current}. Falling back to `save_best_only=False`.",
                stacklevel=2,
            )
            return True
        if self.monitor_op is None:
            # Keras sets it at the first epoch end only, so a batch-level save_best_only fails
            # there in the first epoch (calling None).
            self._set_monitor_op()
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to "
                    f"{current:.5f}, saving model to {filepath}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            _print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save_model(self, epoch: int, batch: int | None, logs: Logs | None) -> None:
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            if os.path.isdir(filepath):
                raise OSError(
                    "Please specify a non-directory filepath for ModelCheckpoint. Filepath "
                    f"used is an existing directory: {filepath}"
                )
            dirname = os.path.dirname(filepath)
            if dirname:
                os.makedirs(dirname, exist_ok=True)
            if self.save_weights_only:
                self.model.save_weights(filepath)
            else:
                self.model.save(filepath)
            if self.verbose > 0:
                _print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch: int, batch: int | None, logs: Logs) -> str:
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}'
            ) from None


# -- learning rate callbacks ----------------------------------------------------------------------


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` when a metric stops improving (Keras's rules).

    At each epoch end, "learning_rate" (the rate used in the epoch) is added to the logs. A
    value better than the best by more than `min_delta` resets the wait; otherwise, outside
    the cooldown, the wait grows and at `patience` the rate becomes
    `max(lr * factor, min_lr)` (only while `lr > min_lr`), followed by `cooldown` epochs in
    which the wait stays at 0.

    Args:
        monitor: The log key to watch. Defaults to "val_loss".
        factor: The multiplier, in [0, 1) (Keras refuses factors >= 1; negative ones are
            refused here too).
        patience: Epochs without improvement before a reduction (an int >= 0).
        verbose: 0 (silent) or more (a line per reduction).
        mode: "auto", "min" or "max"; anything else warns and is "auto".
        min_delta: Smallest change that counts as an improvement.
        cooldown: Epochs to wait after a reduction before counting again (an int >= 0).
        min_lr: Lower bound of the learning rate (>= 0).

    Raises:
        TypeError: At a reduction, when the optimizer's learning rate is a schedule (Keras's
            error: it cannot be set).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        factor = _checks.real(factor, "factor", low=0)
        if factor >= 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}"
            )
        patience = _checks.integer(patience, "patience", low=0)
        verbose = _verbose(verbose)
        cooldown = _checks.integer(cooldown, "cooldown", low=0)
        min_lr = _checks.real(min_lr, "min_lr", low=0)
        super().__init__(monitor, _check_mode(self, mode), min_delta=min_delta)
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self) -> None:
        """Reset the wait, the cooldown and the best value."""
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def _reduce_optimizer_lr(self, optimizer: Any, epoch: int) -> bool:
        old_lr = _get_learning_rate(optimizer)
        # Keras compares with a float32 min_lr; the same expression keeps its decisions.
        if old_lr > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            _set_learning_rate(optimizer, new_lr)
            if self.verbose > 0:
                _print_msg(
                    f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}."
                )
            return True
        return False

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Reset the state, so an instance can be reused by another `fit`."""
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Log "learning_rate"; count the epochs without improvement; maybe reduce."""
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        optimizer = _optimizer(self)
        logs["learning_rate"] = _get_learning_rate(optimizer)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                f"not available. Available metrics are: {','.join(list(logs.keys()))}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce_optimizer_lr(optimizer, epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def in_cooldown(self) -> bool:
        """Whether a reduction happened less than `cooldown` epochs ago."""
        return self.cooldown_counter > 0


def _takes_two(schedule: Callable[..., Any]) -> bool | None:
    """Whether `schedule(epoch, lr)` binds; None when the signature cannot be read."""
    try:
        inspect.signature(schedule).bind(0, 0.0)
    except TypeError:
        return False
    except ValueError:  # some builtins have no signature
        return None
    return True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch from `schedule(epoch, lr)`.

    `schedule` takes the epoch index (from 0) and the current learning rate and returns the
    new rate, a float (Python or NumPy float32/float64; anything else is Keras's ValueError).
    A schedule taking only the epoch is called as `schedule(epoch)`. Keras decides this by
    catching a TypeError from the two-argument call, which also catches a TypeError raised
    inside the schedule; here the signature decides. At each epoch end the rate is added to
    the logs as "learning_rate".

    Args:
        schedule: The function.
        verbose: 0 (silent) or more (a line per epoch).

    Raises:
        TypeError: At the first epoch, when the optimizer's learning rate is a schedule.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                f"`schedule` must be callable, got schedule={_checks.show(schedule)}."
            )
        self.schedule = schedule
        self.verbose = _verbose(verbose)

    def _update_optimizer_lr(self, optimizer: Any, epoch: int) -> float:
        takes_two = _takes_two(self.schedule)
        if takes_two is None:  # no signature: Keras's way
            try:
                learning_rate = self.schedule(epoch, _get_learning_rate(optimizer))
            except TypeError:
                learning_rate = self.schedule(epoch)
        elif takes_two:
            learning_rate = self.schedule(epoch, _get_learning_rate(optimizer))
        else:
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(
                f"The output of the `schedule` function should be a float. Got: {learning_rate}"
            )
        if not math.isfinite(learning_rate) or learning_rate < 0:
            raise ValueError(
                "The output of the `schedule` function must be a finite learning rate >= 0. "
                f"Got: {learning_rate} at epoch {epoch}"
            )
        _set_learning_rate(optimizer, float(learning_rate))
        return learning_rate

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Set the epoch's learning rate."""
        learning_rate = self._update_optimizer_lr(_optimizer(self), epoch)
        if self.verbose > 0:
            _print_msg(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                f"{learning_rate}."
            )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Add "learning_rate" to the logs."""
        if logs is not None:
            logs["learning_rate"] = _get_learning_rate(_optimizer(self))


# -- CSVLogger ------------------------------------------------------------------------------------


class CSVLogger(Callback):
    """Write one CSV row per epoch: "epoch", then the sorted log keys (Keras's format).

    The columns are fixed at the first epoch: the sorted log keys, plus a "val_" copy of each
    when there is no validation key (as Keras, whose rows then say "NA" there); a missing
    value is "NA", a sequence is written as "[a, b]". The dialect is CSV's "excel" (rows end
    with CRLF) with `separator` as delimiter; the text is UTF-8. With `append`, rows go after
    an existing file's content (its header is kept; one is written only into an empty or
    missing file); otherwise the file is emptied when training begins.

    Every write replaces the whole file atomically: the complete new content (what was there,
    plus the new row) is written to a temporary file in the same folder, flushed, fsynced and
    renamed over the log. Appending to the file in place could leave half a row behind after
    a crash, and a reader could see half a row; this way a reader sees the file before or
    after a row, never in between. The cost is rewriting the log at each epoch, which is
    small for an epoch log.

    Args:
        filename: str or os.PathLike, e.g. "run/log.csv".
        separator: One character separating the values.
        append: Continue an existing file rather than overwrite it.
    """

    def __init__(
        self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        super().__init__()
        filename = _path_string(filename, "filename")
        if not isinstance(separator, str):
            raise TypeError(
                f"`separator` must be a one-character string, got "
                f"separator={_checks.show(separator)}."
            )
        try:
            csv.writer(io.StringIO(), delimiter=separator)
        except (TypeError, csv.Error) as exc:
            raise ValueError(
                f"`separator` must be one character usable as a CSV delimiter, got "
                f"separator={separator!r}: {exc}"
            ) from None
        self.sep = separator
        self.filename = filename
        self.append = _checks.boolean(append, "append")
        self.keys: list[str] | None = None
        self.append_header = True
        self._content: bytearray | None = None
        self._header_written = False

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Read the file to continue (`append`) or empty it."""
        content = bytearray()
        exists = False
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "rb") as f:
                content = bytearray(f.read())
            exists = True
            self.append_header = len(content) == 0
        if not exists:
            # As Keras's open(filename, "w"/"a"): the file exists, empty, from the start.
            _atomic_write(self.filename, lambda fh: None)
        self._content = content
        self.keys = None
        self._header_written = False

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Write the epoch's row (and, the first time, the header)."""
        logs = logs or {}
        if self._content is None:  # used without on_train_begin
            self.on_train_begin()
        assert self._content is not None
        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])

        class CustomDialect(csv.excel):
            delimiter = self.sep

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["epoch", *self.keys], dialect=CustomDialect)
        if not self._header_written and self.append_header:
            writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        writer.writerow(row)
        new = self._content + text.getvalue().encode("utf-8")
        _atomic_write(self.filename, lambda fh: fh.write(new))
        # Only once written: a failed write leaves the state as it was.
        self._content = new
        self._header_written = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Forget the content (the file is complete after every row)."""
        self._content = None


def _csv_value(value: Any) -> Any:
    """Keras's `handle_value`: text as is, sequences as "[a, b]", the rest for `csv`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


# -- TerminateOnNaN and LambdaCallback ------------------------------------------------------------


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite.

    Args:
        raise_error: False (default): print a line and set `model.stop_training` (the epoch
            ends, `on_epoch_end` and `on_train_end` still run). True: raise RuntimeError at
            once, so no further hook runs (a `BackupAndRestore` backup is then kept).
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = _checks.boolean(raise_error, "raise_error")

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Check the batch's "loss"."""
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None:
            return
        try:
            bad = bool(np.isnan(loss) or np.isinf(loss))
        except TypeError:  # not a number: nothing to check
            return
        if bad:
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                    "Terminating training immediately."
                )
            _print_msg(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of functions, one per hook.

    `on_epoch_begin`/`on_epoch_end` are called as `f(epoch, logs)`, `on_train_begin`/
    `on_train_end` as `f(logs)`, the batch hooks as `f(batch, logs)`. Other hooks are given
    by name as keywords (`on_test_end=...`). Keras stores any keyword as an attribute; here a
    keyword that is not a hook, or a value that is not callable, is a TypeError.

    Args:
        on_epoch_begin, on_epoch_end, on_train_begin, on_train_end, on_train_batch_begin,
        on_train_batch_end: The functions (None: the default hook).
        **kwargs: Functions for the other hooks, by name.
    """

    def __init__(
        self,
        on_epoch_begin: Callable[..., Any] | None = None,
        on_epoch_end: Callable[..., Any] | None = None,
        on_train_begin: Callable[..., Any] | None = None,
        on_train_end: Callable[..., Any] | None = None,
        on_train_batch_begin: Callable[..., Any] | None = None,
        on_train_batch_end: Callable[..., Any] | None = None,
        **kwargs: Callable[..., Any],
    ) -> None:
        super().__init__()
        for name in kwargs:
            if name not in HOOKS:
                raise TypeError(
                    f"LambdaCallback got an unexpected keyword argument {name!r}; the hooks "
                    f"are {list(HOOKS)}."
                )
        functions = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
            **kwargs,
        }
        for name, fn in functions.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"`{name}` must be callable or None, got {_checks.show(fn)}.")
        for name, fn in functions.items():
            if fn is not None:
                setattr(self, name, fn)


# -- BackupAndRestore -----------------------------------------------------------------------------

_STATE_FILE = "latest.state.zip"
_STATE_FORMAT = "numba_gn.BackupAndRestore"
_STATE_VERSION = 1
# Marker keys of the JSON encoding; user dict keys may not start with NUL.
_ARRAY_KEY = "\x00ndarray"
_TUPLE_KEY = "\x00tuple"
# What reading a damaged state file can raise.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _encode(value: Any, arrays: list[np.ndarray], where: str) -> Any:
    """`value` as JSON data, its arrays moved to `arrays` (copied) and replaced by markers."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufcU":
            raise TypeError(
                f"BackupAndRestore: {where} is an array of dtype {value.dtype}; only numeric "
                "and string arrays can be saved."
            )
        arrays.append(np.array(value, copy=True))
        return {_ARRAY_KEY: len(arrays) - 1}
    if isinstance(value, tuple):
        return {_TUPLE_KEY: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("\x00"):
                raise TypeError(f"BackupAndRestore: {where} has the key {k!r}; keys must be str.")
            out[k] = _encode(v, arrays, f"{where}[{k!r}]")
        return out
    raise TypeError(
        f"BackupAndRestore: {where} is a {type(value).__name__}, which cannot be saved (use "
        "None, bools, numbers, strings, lists, tuples, dicts with str keys and arrays)."
    )


def _decode(value: Any, arrays: Mapping[int, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and _ARRAY_KEY in value:
            return arrays[value[_ARRAY_KEY]]
        if len(value) == 1 and _TUPLE_KEY in value:
            return tuple(_decode(v, arrays) for v in value[_TUPLE_KEY])
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value


def _write_state(fh: BinaryIO, document: Any, arrays: list[np.ndarray]) -> None:
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("state.json", json.dumps(document))
        for i, arr in enumerate(arrays):
            with zf.open(f"arrays/{i}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _read_state(path: str) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        document = json.loads(zf.read("state.json"))
        if (
            not isinstance(document, dict)
            or document.get("format") != _STATE_FORMAT
            or document.get("version") != _STATE_VERSION
        ):
            raise ValueError(f"{path} is not a BackupAndRestore state file (version 1).")
        arrays = {}
        for i in range(int(document["arrays"])):
            with zf.open(f"arrays/{i}.npy") as member:
                arrays[i] = np.lib.format.read_array(member, allow_pickle=False)
    state = _decode(document["state"], arrays)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no training state.")
    return state


class BackupAndRestore(Callback, _BatchSaves):
    """Back up the whole training state, and resume from it after an interruption.

    At each epoch end (or every `save_freq` batches) the state returned by
    `model._backup_state()` (weights, optimizer, shuffling generator; see the module's notes)
    and the epoch reached are written to one file in `backup_dir`, atomically: an
    interruption at any moment leaves the previous backup or the new one, complete. When a
    `fit` begins and a backup exists, `model._restore_state(state)` restores it and training
    resumes at the first epoch not completed (a batch-level backup restarts its epoch, as in
    Keras). When `fit` completes (not when it fails), the backup is deleted
    (`delete_checkpoint`).

    Keras writes a weights file and a JSON file, and deletes the whole `backup_dir` at the end;
    here the state is one file, `latest.state.zip` (with `double_checkpoint`, also the
    previous one, `latest.state.zip.bkp`), and only these files are deleted, then the folder
    if it is left empty.

    Args:
        backup_dir: The folder of the backup (created when needed); not shared with other
            runs or callbacks.
        save_freq: "epoch" or a number of batches (an int >= 1).
        double_checkpoint: Keep the previous backup too, used when the latest cannot be read.
        delete_checkpoint: Delete the backup when training completes.

    Raises:
        ValueError: An empty `backup_dir`, or a `save_freq` that is neither "epoch" nor an
            int >= 1 (Keras's messages).
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike[str],
        save_freq: str | int = "epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        if backup_dir is None or (isinstance(backup_dir, str) and not backup_dir):
            raise ValueError("Empty `backup_dir` argument passed")
        backup_dir = _path_string(backup_dir, "backup_dir")
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        self.save_freq = _save_freq(
            save_freq,
            f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
            "Expected either 'epoch' or an integer value.",
        )
        self.double_checkpoint = _checks.boolean(double_checkpoint, "double_checkpoint")
        self.delete_checkpoint = _checks.boolean(delete_checkpoint, "delete_checkpoint")
        self.backup_dir = backup_dir
        self._state_path = os.path.join(backup_dir, _STATE_FILE)
        self._prev_state_path = f"{self._state_path}.bkp"
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0

    def _check_model(self) -> None:
        missing = [
            name
            for name in ("_backup_state", "_restore_state")
            if not callable(getattr(self.model, name, None))
        ]
        if missing:
            raise TypeError(
                f"BackupAndRestore needs model._backup_state() and model._restore_state(state);"
                f" the model ({type(self.model).__name__}) has no {' or '.join(missing)}."
            )

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Restore the latest backup, if there is one."""
        self._check_model()
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        state = self._load()
        if state is None:
            return
        if not getattr(self.model, "built", True):
            raise ValueError(
                "To use the BackupAndRestore callback, you model must be built before you "
                f"call `fit()`. Model {self.model} is unbuilt. You can build it beforehand by "
                "calling it on a batch of data."
            )
        self.model._restore_state(state)
        self._current_epoch = state["epoch"]

    def _load(self) -> dict[str, Any] | None:
        if not os.path.exists(self._state_path):
            return None
        try:
            return _read_state(self._state_path)
        except _READ_ERRORS:
            # Keras falls back on the previous backup when the latest cannot be read.
            if not os.path.exists(self._prev_state_path):
                raise
            return _read_state(self._prev_state_path)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Remember the epoch (Keras only learns it at the epoch's end)."""
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Back up (when `save_freq="epoch"`): `epoch + 1` epochs are complete."""
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save_model()

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Back up every `save_freq` batches (when `save_freq` is an int)."""
        if self._should_save_on_batch(batch):
            self._save_model()

    def _save_model(self) -> None:
        state = self.model._backup_state()
        if not isinstance(state, Mapping):
            raise TypeError(
                f"model._backup_state() must return a dict, got {type(state).__name__}."
            )
        missing = [k for k in ("weights", "optimizer", "rng") if k not in state]
        reserved = [k for k in ("epoch", "batch") if k in state]
        if missing or reserved:
            raise ValueError(
                "model._backup_state() must return a dict with the keys 'weights', "
                "'optimizer' and 'rng', and without 'epoch' and 'batch' (added by "
                f"BackupAndRestore); missing: {missing}, reserved: {reserved}."
            )
        payload = {**state, "epoch": self._current_epoch, "batch": self._last_batch_seen}
        # Encode everything before touching a file: a state that cannot be saved fails here,
        # with the previous backup intact.
        arrays: list[np.ndarray] = []
        encoded = _encode(payload, arrays, "the state")
        document = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "arrays": len(arrays),
            "state": encoded,
        }
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._state_path):
            with open(self._state_path, "rb") as f:
                previous = f.read()
            _atomic_write(self._prev_state_path, lambda fh: fh.write(previous))
        _atomic_write(self._state_path, lambda fh: _write_state(fh, document, arrays))

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Delete the backup (`delete_checkpoint`), then `backup_dir` if left empty."""
        if not self.delete_checkpoint:
            return
        for path in (self._state_path, self._prev_state_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):  # not empty (other files), or already gone
            os.rmdir(self.backup_dir)
