"""Keras 3 optimizers on ndarrays: SGD, Adam, AdamW with Keras's defaults and exact update order.

One `apply(grads, variables)` call does what Keras's `BaseOptimizer.apply` does, in the same
order: clip the gradients (`clipnorm` per gradient, `global_clipnorm`, or `clipvalue`),
apply decoupled weight decay (`var -= var * weight_decay * lr`), run each variable's update
step, apply each variable's constraint right after the updates, then count the iteration.
Scalars are cast to the variable's dtype first, as Keras does, so float32 updates round like
Keras's.

A step is all or nothing: every new weight and optimizer slot is computed (and constrained)
first, and only then written into the `Variable` buffers (in place, so
references to them stay valid) and the iteration counted. A gradient of the wrong shape or
dtype, a constraint that raises, or a learning-rate schedule that returns NaN leaves the
weights, the slots and `iterations` exactly as they were.

Per-variable state (momentums, Adam's moments) is created on a variable's first step and keyed
by the Variable object itself, held weakly: it is freed with the Variable and never handed to
another Variable. One optimizer may be shared by models trained in several threads: each
`apply` runs whole under the optimizer's own lock, so the steps are serialised, none is lost
from `iterations` and no variable's state is created twice. Hyper-parameters are validated
when set, with a `ValueError` or `TypeError` naming the argument; non-finite values are
refused everywhere.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn._locks import FreshLocks
from numba_gn.autograd.tensor import Tensor
from numba_gn.params import Variable

__all__ = ["SGD", "Adam", "AdamW", "CosineDecay", "Optimizer", "deserialize", "get", "serialize"]

LearningRate = float | Callable[[int], float]


# -- argument checks ------------------------------------------------------------------------------


def _positive_or_none(name: str, value: Any) -> float | None:
    """Clipping thresholds: None (off) or a finite float > 0.

    Keras silently ignores a zero or negative threshold; here it is an error, since clipping
    was evidently asked for.
    """
    if value is None:
        return None
    return _checks.real(value, name, low=0, low_open=True)


def _learning_rate_value(value: Any) -> LearningRate:
    """A constructor/setter learning rate: a callable schedule, or a finite float >= 0.

    Unlike Keras, ints are accepted (as floats), and negative, NaN and infinite rates are
    refused; zero is accepted, as in Keras (gradients are then ignored, though a momentum
    already built up still moves the weights).
    """
    if callable(value):
        return value
    return _checks.real(value, "learning_rate", low=0)


def _name(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"Argument `name` must be a string, got name={value!r}")
    return value


class _VariableMap:
    """A mapping from Variables to values, by identity, that does not keep the Variables alive.

    `weakref.WeakKeyDictionary` cannot be used: it compares keys with `==`, which is
    elementwise for Tensors. Entries are keyed by `id` but also hold a weak reference that is
    checked on every lookup, so a new object that reuses a dead Variable's `id` never sees its
    value; the reference's callback drops the entry when the Variable is freed.
    """

    __slots__ = ("_data", "__weakref__")

    def __init__(self) -> None:
        self._data: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, key: Variable) -> Any:
        """The value stored for this very object, or None."""
        entry = self._data.get(id(key))
        if entry is not None and entry[0]() is key:
            return entry[1]
        return None

    def __contains__(self, key: Variable) -> bool:
        entry = self._data.get(id(key))
        return entry is not None and entry[0]() is key

    def __setitem__(self, key: Variable, value: Any) -> None:
        k = id(key)
        entry = self._data.get(k)
        if entry is not None and entry[0]() is key:
            ref = entry[0]
        else:
            ref = weakref.ref(key, _remover(weakref.ref(self), k))
        self._data[k] = (ref, value)

    def items(self) -> Iterator[tuple[Variable, Any]]:
        """The live `(variable, value)` pairs, in insertion order."""
        for ref, value in list(self._data.values()):
            key = ref()
            if key is not None:
                yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    # Weak references can be neither pickled nor meaningfully copied: carry the live pairs and
    # rebuild the references. Copied or unpickled together with its Variables (a model with its
    # optimizer), the state lands on the copied Variables, whichever is copied first; on its
    # own, an optimizer's Variables are copied with it, are then unreferenced and are freed,
    # and so is their state: the copy starts afresh.

    def __getstate__(self) -> list[tuple[Variable, Any]]:
        return list(self.items())

    def __setstate__(self, pairs: list[tuple[Variable, Any]]) -> None:
        self._data = {}
        for key, value in pairs:
            self[key] = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _VariableMap:
        new = _VariableMap()
        memo[id(self)] = new
        for key, value in self.items():
            new[copy.deepcopy(key, memo)] = copy.deepcopy(value, memo)
        return new


def _remover(owner: weakref.ref, k: int) -> Callable[[weakref.ref], None]:
    """The weakref callback that drops entry `k` of the map `owner` (if both still exist)."""

    def remove(ref: weakref.ref) -> None:
        m = owner()
        if m is not None:
            entry = m._data.get(k)
            if entry is not None and entry[0] is ref:  # not a newer entry under a reused id
                del m._data[k]

    return remove


class CosineDecay:
    """Keras's `CosineDecay` learning-rate schedule (without warm-up), a callable of the step.

    `lr(step) = initial_learning_rate * ((1 - alpha) * c + alpha)` with
    `c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))`.

    Parameters
    ----------
    initial_learning_rate : float
        Finite, >= 0.
    decay_steps : int or float
        Finite, > 0 (Keras's rule); a whole float such as `1e4` is kept as an int.
    alpha : float, default 0.0
        The final rate as a fraction of the initial one, in [0, 1].
    name : str, default "CosineDecay"
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
    ) -> None:
        initial = _checks.real(initial_learning_rate, "initial_learning_rate", low=0)
        steps = _checks.real(decay_steps, "decay_steps", low=0, low_open=True)
        alpha_ = _checks.real(alpha, "alpha", low=0, high=1)
        self.initial_learning_rate = initial
        # Keras divides by decay_steps as given; only whole numbers are stored as ints.
        self.decay_steps: int | float = int(steps) if steps.is_integer() else steps
        self.alpha = alpha_
        self.name = _name(name, "CosineDecay")

    def __call__(self, step: int) -> float:
        """The learning rate at optimizer step `step` (0-based)."""
        t = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * t))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys (no warm-up)."""
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
        }


class Optimizer(FreshLocks):
    """Base class: gradient clipping, weight decay, constraints and the iteration count.

    Every argument is checked here, with a `ValueError`/`TypeError` naming it; ints are
    accepted where floats are expected, NaN, infinities and out-of-range values are not.

    Parameters
    ----------
    learning_rate : float or callable
        A float >= 0, or a schedule `f(iterations) -> float` called before each step (its
        value must be a finite float >= 0, else the step raises `ValueError` and changes
        nothing).
    weight_decay : float, optional
        Decoupled weight decay (>= 0): each step first does `var -= var * weight_decay * lr`.
    clipnorm : float, optional
        Rescale each gradient so its L2 norm is at most `clipnorm` (> 0).
    clipvalue : float, optional
        Clip each gradient element to `[-clipvalue, clipvalue]` (> 0).
    global_clipnorm : float, optional
        Rescale all gradients together so their joint L2 norm is at most this (> 0).
    name : str, optional
        Defaults to the snake-case class name.

    Notes
    -----
    Unlike Keras, the optimizer is not built for a fixed list of variables: the slots of a
    Variable are created on its first step, so the set of variables may change between steps
    (layers frozen or unfrozen). The slots are keyed by the Variable object (not its `id`)
    and freed together with it. Deep-copied or pickled together with its Variables (as part of
    a model), an optimizer's state follows the copies; copied on its own, it starts without
    state (use `variables_state` to keep the slot arrays).

    `apply` holds a per-optimizer lock from its first check to its commit, so one
    optimizer may be shared by models trained in different threads (their steps run one after
    the other). A copy or an unpickled optimizer gets a lock of its own.
    """

    _lock_names = ("_apply_lock",)

    default_name = "optimizer"

    def __init__(
        self,
        learning_rate: LearningRate,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str | None = None,
    ) -> None:
        lr = _learning_rate_value(learning_rate)
        if weight_decay is not None:
            weight_decay = _checks.real(weight_decay, "weight_decay", low=0)
        clipnorm = _positive_or_none("clipnorm", clipnorm)
        clipvalue = _positive_or_none("clipvalue", clipvalue)
        global_clipnorm = _positive_or_none("global_clipnorm", global_clipnorm)
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        self._learning_rate: LearningRate = lr
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = _name(name, self.default_name)
        self.iterations = 0
        self._slots = _VariableMap()
        self._exclude = _VariableMap()
        self._exclude_pattern: re.Pattern[str] | None = None
        # Serialises apply(): two threads stepping at once could each create a variable's slots,
        # read the same `iterations` or commit half of each other's step. Reentrant so that a
        # schedule or constraint that itself steps this optimizer does not deadlock.
        self._apply_lock = threading.RLock()

    # -- public API --------------------------------------------------------------------------------

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule is evaluated at `iterations`).

        Setting it accepts what the constructor accepts (a float >= 0 or a callable schedule)
        and checks it the same way.

        Raises
        ------
        ValueError, TypeError
            When a schedule returns something other than a finite real number >= 0.
        """
        lr = self._learning_rate
        if not callable(lr):
            return lr
        value = lr(self.iterations)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        try:
            return _checks.real(value, "learning_rate", low=0)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"The learning-rate schedule {lr!r} returned {value!r} at step "
                f"{self.iterations}: {exc}"
            ) from None

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        self._learning_rate = _learning_rate_value(value)

    def exclude_from_weight_decay(
        self,
        var_list: Iterable[Variable] | None = None,
        var_names: Sequence[str] | str | None = None,
    ) -> None:
        """Skip weight decay for these variables and those whose name matches `var_names`.

        `var_names` are searched in each variable's name as regular expressions (Keras); a
        single string is one pattern. Each call replaces the previous exclusions. The
        Variables are held weakly, by identity.
        """
        exclude = _VariableMap()
        for v in var_list or ():
            if not isinstance(v, Variable):
                raise TypeError(
                    "`var_list` must contain Variables, got "
                    f"{type(v).__name__}: {v!r}"
                )
            exclude[v] = True
        if isinstance(var_names, str):
            var_names = [var_names]  # not its characters, each as a pattern
        names = list(var_names or ())
        if any(not isinstance(n, str) for n in names):
            raise TypeError(f"`var_names` must be strings, got var_names={var_names!r}")
        self._exclude = exclude
        self._exclude_pattern = re.compile("|".join(sorted(set(names)))) if names else None

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Variable]]) -> int:
        """Apply `(gradient, variable)` pairs; returns the new iteration count."""
        pairs = list(grads_and_vars)
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads: Sequence[Any], variables: Sequence[Variable]) -> int:
        """One optimisation step; None gradients are skipped. Returns `iterations`.

        All or nothing: the new weights and slots are computed and constrained first and only
        written (into the Variables' own buffers) once every variable's step has succeeded, so
        an exception leaves the weights, the slots and `iterations` unchanged. The whole step
        holds the optimizer's lock: calls from several threads take turns.

        Raises
        ------
        ValueError
            Gradients and variables that do not pair up, a gradient whose shape differs from
            its variable's, a variable listed twice, no gradient at all, a schedule returning
            NaN or a negative rate, a constraint returning the wrong shape.
        TypeError
            A non-Variable, a non-float Variable, a non-numeric gradient.
        """
        with self._apply_lock:
            return self._apply(list(grads), list(variables))

    def _apply(self, grads: list[Any], variables: list[Variable]) -> int:
        """`apply`'s step, run under the optimizer's lock."""
        if len(grads) != len(variables):
            raise ValueError(
                f"Got {len(grads)} gradients for {len(variables)} variables; they must pair up."
            )
        lr = self.learning_rate  # a schedule's bad value raises here, before any work
        pairs = [
            (_checked_gradient(g, v, i), v)
            for i, (g, v) in enumerate(zip(grads, variables, strict=True))
            if g is not None
        ]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        if len({id(v) for _, v in pairs}) != len(pairs):
            seen: set[int] = set()
            for _, v in pairs:
                if id(v) in seen:
                    raise ValueError(
                        f"Variable {v.name!r} is listed more than once; each variable takes "
                        "one gradient per step."
                    )
                seen.add(id(v))
        grads_ = self._clip([g for g, _ in pairs])
        decay = self.weight_decay
        staged = []
        for g, (_, v) in zip(grads_, pairs, strict=True):
            data = v.data
            dt = data.dtype.type
            if g.dtype != data.dtype:
                g = g.astype(data.dtype)
            var = data
            if decay and self._use_weight_decay(v):
                var = data - data * dt(decay) * dt(lr)  # Keras's order
            slots = self._slots.get(v)
            if slots is None:
                slots = self._make_slots(data)
            new_var, new_slots = self._update(g, var, slots, lr)
            if v.constraint is not None:
                new_var = _constrained(v, new_var)
            staged.append((v, new_var, new_slots))
        # Commit: same shapes and dtypes throughout, so nothing below can fail halfway.
        for v, new_var, new_slots in staged:
            np.copyto(v.data, new_var)
            self._slots[v] = new_slots
        self.iterations += 1
        return self.iterations

    def variables_state(self) -> dict[Variable, tuple[np.ndarray, ...]]:
        """The per-variable slot arrays, keyed by the Variable.

        One entry per live Variable that has taken a step: `(momentum,)` for SGD with
        momentum, `()` without; `(m, v)` for Adam/AdamW, `(m, v, v_hat)` with amsgrad.
        A new dict on each call; its arrays are the optimizer's own (not copies) and are
        replaced, not modified, by the next step. Slots of a deleted Variable are freed.
        """
        with self._apply_lock:  # one step's slots all old or all new, never a mix
            return dict(self._slots.items())

    def slot_count(self, variable: Variable) -> int:
        """How many slot arrays a step keeps for `variable` (Adam: 2, SGD without momentum: 0)."""
        return len(self._make_slots(np.empty((0,), np.asarray(variable.data).dtype)))

    def get_state(self, variables: Sequence[Variable]) -> dict[str, Any]:
        """The optimizer's whole training state for `variables`, as copies.

        `{"iterations": int, "slots": [...]}` with one entry per variable, in the given
        order: None for a variable that has taken no step yet, else the tuple of its slot
        arrays (see `variables_state`). With the hyper-parameters (`get_config`)
        this is everything `set_state` needs to continue training exactly.
        """
        with self._apply_lock:
            slots = []
            for v in variables:
                own = self._slots.get(v)
                slots.append(None if own is None else tuple(np.array(a, copy=True) for a in own))
            return {"iterations": self.iterations, "slots": slots}

    def set_state(self, state: Any, variables: Sequence[Variable]) -> None:
        """Restore what `get_state` returned, onto `variables` (same order), at once.

        Replaces the state of every variable (one with None, or not given, starts afresh)
        and `iterations`. Everything is checked first (counts, shapes, float dtypes, which
        are cast to each variable's dtype), so a refused state changes nothing.

        Raises:
            ValueError: The state does not fit these variables (the message says where).
            TypeError: `state` is not such a dict, or an entry is not an array.
        """
        if not isinstance(state, dict) or set(state) != {"iterations", "slots"}:
            raise TypeError(
                "set_state() takes a dict with the keys 'iterations' and 'slots' (what "
                f"get_state() returns), got {_checks.show(state)}."
            )
        iterations = _checks.integer(state["iterations"], "iterations", low=0)
        slots = state["slots"]
        variables = list(variables)
        if not isinstance(slots, (list, tuple)) or len(slots) != len(variables):
            raise ValueError(
                f"set_state(): 'slots' must have one entry per variable ({len(variables)}), "
                f"got {_checks.show(slots)}."
            )
        staged = []
        for i, (v, entry) in enumerate(zip(variables, slots, strict=True)):
            if not isinstance(v, Variable):
                raise TypeError(f"variables[{i}] must be a Variable, got {type(v).__name__}.")
            if entry is None:
                continue
            data = np.asarray(v.data)
            want = self.slot_count(v)
            if not isinstance(entry, (list, tuple)) or len(entry) != want:
                raise ValueError(
                    f"set_state(): variable {v.name!r} takes {want} slot array(s) with "
                    f"{type(self).__name__}, got {_checks.show(entry)}."
                )
            arrays = []
            for k, a in enumerate(entry):
                if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                    raise TypeError(
                        f"set_state(): slot {k} of variable {v.name!r} must be a float array, "
                        f"got {_checks.show(a)}."
                    )
                if a.shape != data.shape:
                    raise ValueError(
                        f"set_state(): slot {k} of variable {v.name!r} has shape {a.shape}; "
                        f"the variable's shape is {data.shape}."
                    )
                arrays.append(np.array(a, dtype=data.dtype, copy=True))
            staged.append((v, tuple(arrays)))
        new = _VariableMap()
        for v, arrays in staged:
            new[v] = arrays
        with self._apply_lock:
            self._slots = new
            self.iterations = iterations

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with Keras's keys."""
        lr = self._learning_rate
        if isinstance(lr, CosineDecay):
            lr = {"class_name": "CosineDecay", "config": lr.get_config()}
        elif callable(lr):
            lr = self.learning_rate  # an arbitrary callable cannot be written down
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """Rebuild from `get_config` output (a fresh optimizer, no state).

        Keras-only keys such as `use_ema` are accepted when they hold their defaults.
        """
        config = dict(config)
        for key, default in _KERAS_ONLY_DEFAULTS.items():
            value = config.pop(key, default)
            if value != default:
                raise ValueError(f"{cls.__name__}: {key}={value!r} is not supported.")
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            from numba_gn.params._registry import check_config_envelope

            check_config_envelope(lr, "learning-rate schedule")
            if lr.get("class_name") != "CosineDecay":
                raise ValueError(f"Unsupported learning-rate schedule {lr.get('class_name')!r}.")
            inner = dict(lr.get("config") or {})
            if inner.pop("warmup_steps", 0):
                raise ValueError("CosineDecay with warm-up steps is not supported.")
            inner.pop("warmup_target", None)
            config["learning_rate"] = CosineDecay(**inner)
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self._learning_rate!r})"

    # -- subclass hooks ----------------------------------------------------------------------------

    def _make_slots(self, data: np.ndarray) -> tuple[np.ndarray, ...]:
        """Zero-initialised state arrays for one variable."""
        return ()

    def _update(
        self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The new value of `var` and the new slots, from the gradient `g`.

        Must not write into `var`, `g` or `slots`: `apply` commits the results
        only once every variable's step has succeeded.
        """
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------

    def _use_weight_decay(self, v: Variable) -> bool:
        if v in self._exclude:
            return False
        return not (self._exclude_pattern and self._exclude_pattern.search(v.name))

    def _clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm is not None:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            # Keras: clip * min(1/norm, 1/clip), plus (norm - norm) so inf/NaN norms give NaN.
            scale = self.global_clipnorm * min(1.0 / norm if norm else math.inf,
                                               1.0 / self.global_clipnorm) + (norm - norm)
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads


def _checked_gradient(g: Any, v: Any, i: int) -> np.ndarray:
    """The gradient of `variables[i]` as an array, after the checks a step needs up front."""
    if not isinstance(v, Variable):
        raise TypeError(f"variables[{i}] must be a Variable, got {type(v).__name__}.")
    data = v.data
    if data.dtype.kind != "f":
        raise TypeError(
            f"Variable {v.name!r} has dtype {data.dtype}; optimizers update floating-point "
            "variables only."
        )
    if type(g) is not np.ndarray:
        try:
            g = np.asarray(g.data if isinstance(g, Tensor) else g)
        except Exception as exc:  # ragged lists and other things numpy cannot make an array of
            raise TypeError(
                f"The gradient for variable {v.name!r} is not an array: {exc}"
            ) from None
    if g.dtype.kind not in "fiu":
        raise TypeError(
            f"The gradient for variable {v.name!r} must be real numbers, got dtype {g.dtype}."
        )
    if g.shape != data.shape:
        raise ValueError(
            f"The gradient for variable {v.name!r} has shape {g.shape}; the variable's shape is "
            f"{data.shape}."
        )
    return g


def _constrained(v: Variable, new: np.ndarray) -> np.ndarray:
    """`v.constraint` applied to `v`'s would-be value, cast to its dtype (as `assign`)."""
    out = v.constraint(new)
    arr = np.asarray(out.data if isinstance(out, Tensor) else out)
    if arr.shape != new.shape:
        raise ValueError(
            f"The constraint {v.constraint!r} of variable {v.name!r} returned shape "
            f"{arr.shape}; the variable's shape is {new.shape}."
        )
    # Cast now (assign's unsafe cast), so the commit is a same-dtype copy that cannot fail.
    return arr if arr.dtype == new.dtype else arr.astype(new.dtype)


def _clip_by_norm(g: np.ndarray, clipnorm: float) -> np.ndarray:
    """Keras's `_clip_by_norm`: `g * clipnorm / max(norm(g), clipnorm)`."""
    norm = np.sqrt(np.sum(np.square(g)))
    dt = g.dtype.type
    return g * dt(clipnorm) / np.maximum(norm, dt(clipnorm))


_KERAS_ONLY_DEFAULTS = {
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's formulation.

    `m = momentum * m - lr * g`; `var += m` (or `var += momentum * m - lr * g` with
    `nesterov=True`); without momentum `var -= lr * g`. `momentum` must be in [0, 1]
    (Keras's rule) and `nesterov` a bool; the other arguments are `Optimizer`'s.
    """

    default_name = "SGD"

    def __init__(
        self,
        learning_rate: LearningRate = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str = "SGD",
    ) -> None:
        momentum_ = _checks.real(momentum, "momentum", low=0, high=1)
        nesterov_ = _checks.boolean(nesterov, "nesterov")
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = momentum_
        self.nesterov = nesterov_

    def _make_slots(self, data: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.zeros_like(data),) if self.momentum != 0 else ()

    def _update(
        self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        dt = var.dtype.type
        lr_g = g * dt(lr)
        if not slots:
            return var - lr_g, ()
        mom = dt(self.momentum)
        m = slots[0] * mom
        m -= lr_g
        if self.nesterov:
            step = m * mom
            step -= lr_g
            return var + step, (m,)
        return var + m, (m,)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with Keras's keys."""
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), Keras's formulation with the bias correction folded into the step.

    `alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`; `m += (g - m) * (1 - beta_1)`;
    `v += (g**2 - v) * (1 - beta_2)`; `var -= m * alpha / (sqrt(v) + epsilon)`
    (`v` replaced by its running maximum with `amsgrad=True`).

    `beta_1` and `beta_2` must be in [0, 1) (at 1 the bias correction divides by zero),
    `epsilon` > 0 (at 0 a zero gradient gives 0/0), `amsgrad` a bool; Keras checks none
    of these. The other arguments are `Optimizer`'s.
    """

    default_name = "adam"

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str = "adam",
    ) -> None:
        beta_1_ = _checks.real(beta_1, "beta_1", low=0, high=1, high_open=True)
        beta_2_ = _checks.real(beta_2, "beta_2", low=0, high=1, high_open=True)
        epsilon_ = _checks.real(epsilon, "epsilon", low=0, low_open=True)
        amsgrad_ = _checks.boolean(amsgrad, "amsgrad")
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = beta_1_
        self.beta_2 = beta_2_
        self.epsilon = epsilon_
        self.amsgrad = amsgrad_

    def _make_slots(self, data: np.ndarray) -> tuple[np.ndarray, ...]:
        n = 3 if self.amsgrad else 2  # m, v (, v_hat)
        return tuple(np.zeros_like(data) for _ in range(n))

    def _update(
        self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        dt = var.dtype.type
        step = dt(self.iterations + 1)
        alpha = dt(lr) * np.sqrt(1 - dt(self.beta_2) ** step) / (1 - dt(self.beta_1) ** step)
        m, v = slots[0], slots[1]
        # Keras's expressions, operation for operation (m + (g - m) * (1 - beta_1), ...), so
        # float32 results round the same; the in-place steps work on fresh arrays only.
        new_m = np.subtract(g, m)
        new_m *= 1 - self.beta_1
        new_m += m
        new_v = np.multiply(g, g)
        new_v -= v
        new_v *= 1 - self.beta_2
        new_v += v
        if self.amsgrad:
            v_hat = np.maximum(slots[2], new_v)
            new_slots: tuple[np.ndarray, ...] = (new_m, new_v, v_hat)
        else:
            v_hat = new_v
            new_slots = (new_m, new_v)
        denom = np.sqrt(v_hat)
        denom += self.epsilon
        upd = new_m * alpha
        upd /= denom
        return np.subtract(var, upd, out=upd), new_slots

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with Keras's keys."""
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004, not None), as Keras's `AdamW`."""

    default_name = "adamw"

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str = "adamw",
    ) -> None:
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(
            learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
            clipnorm, clipvalue, global_clipnorm, name,
        )


# -- registry -----------------------------------------------------------------------------------

_CLASSES: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
_ALIASES = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """`{"class_name", "config"}` of an optimizer (hyper-parameters only, no state)."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict[str, Any]) -> Optimizer:
    """An optimizer from `{"class_name", "config"}` (a fresh one, without state)."""
    from numba_gn.params._registry import split_config

    # Keras's "module"/"registered_name" are read, not ignored: a foreign module is refused.
    name, inner = split_config(config, "optimizer", "An")
    cls = _CLASSES.get(name) or _ALIASES.get(name.lower() if isinstance(name, str) else None)
    if cls is None:
        raise ValueError(f"Unknown optimizer {name!r}; known: {sorted(_CLASSES)}.")
    return cls.from_config(inner)


def get(identifier: Any) -> Optimizer:
    """Resolve an optimizer identifier.

    Accepts a name ("sgd", "adam", "adamw"), a config dict, an instance, or a class
    (instantiated with its defaults).
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is None:
            raise ValueError(
                f"Could not interpret optimizer identifier: {identifier!r}; known names: "
                f"{sorted(_ALIASES)}."
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")
