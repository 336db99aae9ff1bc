"""Keras 3 optimizers on ndarrays: SGD, Adam, AdamW with Keras's defaults and exact update order.

One ``apply(grads, variables)`` call does what Keras's ``BaseOptimizer.apply`` does, in the same
order: clip the gradients (``clipnorm`` per gradient, ``global_clipnorm``, or ``clipvalue``),
apply decoupled weight decay (``var -= var * weight_decay * lr``), run each variable's update
step, apply each variable's constraint right after the updates, then count the iteration.
Scalars are cast to the variable's dtype first, as Keras does, so float32 updates round like
Keras's. Updates are written in place into the :class:`~numba_gn.params.Variable` buffers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from numba_gn.params import Variable

__all__ = ["SGD", "Adam", "AdamW", "CosineDecay", "Optimizer", "deserialize", "get", "serialize"]

LearningRate = float | Callable[[int], float]


class CosineDecay:
    """Keras's ``CosineDecay`` learning-rate schedule (without warm-up), a callable of the step.

    ``lr(step) = initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
    ) -> None:
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {decay_steps}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.alpha = float(alpha)
        self.name = name

    def __call__(self, step: int) -> float:
        """The learning rate at optimizer step ``step`` (0-based)."""
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


class Optimizer:
    """Base class: gradient clipping, weight decay, constraints and the iteration count.

    Parameters
    ----------
    learning_rate : float or callable
        A float, or a schedule ``f(iterations) -> float`` called before each step.
    weight_decay : float, optional
        Decoupled weight decay: each step first does ``var -= var * weight_decay * lr``.
    clipnorm : float, optional
        Rescale each gradient so its L2 norm is at most ``clipnorm``.
    clipvalue : float, optional
        Clip each gradient element to ``[-clipvalue, clipvalue]``.
    global_clipnorm : float, optional
        Rescale all gradients together so their joint L2 norm is at most this.
    name : str, optional
        Defaults to the snake-case class name.
    """

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
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        if not callable(learning_rate):
            learning_rate = float(learning_rate)
        self._learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = name or self.default_name
        self.iterations = 0
        self._slots: dict[int, tuple[np.ndarray, ...]] = {}
        self._exclude_ids: set[int] = set()
        self._exclude_pattern: re.Pattern[str] | None = None

    # -- public API --------------------------------------------------------------------------------

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        self._learning_rate = value if callable(value) else float(value)

    def exclude_from_weight_decay(
        self, var_list: Iterable[Variable] | None = None, var_names: Sequence[str] | None = None
    ) -> None:
        """Skip weight decay for these variables and those whose name matches ``var_names``.

        ``var_names`` are searched in each variable's name as regular expressions (Keras).
        """
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Variable]]) -> int:
        """Apply ``(gradient, variable)`` pairs; returns the new iteration count."""
        pairs = list(grads_and_vars)
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads: Sequence[Any], variables: Sequence[Variable]) -> int:
        """One optimisation step, in place; None gradients are skipped. Returns ``iterations``."""
        if len(grads) != len(variables):
            raise ValueError(
                f"Got {len(grads)} gradients for {len(variables)} variables; they must pair up."
            )
        pairs = [(np.asarray(g), v) for g, v in zip(grads, variables, strict=True) if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        lr = self.learning_rate
        grads_ = self._clip([g for g, _ in pairs])
        if self.weight_decay:
            for _, v in pairs:
                if self._use_weight_decay(v):
                    data = v.data
                    dt = data.dtype.type
                    data -= data * dt(self.weight_decay) * dt(lr)  # Keras's order
        for g, (_, v) in zip(grads_, pairs, strict=True):
            data = v.data
            if g.dtype != data.dtype:
                g = g.astype(data.dtype)
            slots = self._slots.get(id(v))
            if slots is None:
                slots = self._slots[id(v)] = self._make_slots(data)
            self._update(g, data, slots, lr)
        for _, v in pairs:
            if v.constraint is not None:
                v.assign(v.constraint(v.data))
        self.iterations += 1
        return self.iterations

    def variables_state(self) -> dict[int, tuple[np.ndarray, ...]]:
        """The per-variable slot arrays (momentums, velocities), keyed by ``id(variable)``."""
        return self._slots

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with Keras's keys."""
        lr = self._learning_rate
        if isinstance(lr, CosineDecay):
            lr = {"class_name": "CosineDecay", "config": lr.get_config()}
        elif callable(lr):
            lr = float(lr(self.iterations))  # an arbitrary callable cannot be written down
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
        """Rebuild from :meth:`get_config` output (a fresh optimizer, no state).

        Keras-only keys such as ``use_ema`` are accepted when they hold their defaults.
        """
        config = dict(config)
        for key, default in _KERAS_ONLY_DEFAULTS.items():
            value = config.pop(key, default)
            if value != default:
                raise ValueError(f"{cls.__name__}: {key}={value!r} is not supported.")
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
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

    def _update(self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float) -> None:
        """Update ``var`` in place from its gradient ``g``."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------

    def _use_weight_decay(self, v: Variable) -> bool:
        if id(v) in self._exclude_ids:
            return False
        return not (self._exclude_pattern and self._exclude_pattern.search(v.name))

    def _clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm and self.clipnorm > 0:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            # Keras: clip * min(1/norm, 1/clip), plus (norm - norm) so inf/NaN norms give NaN.
            scale = self.global_clipnorm * min(1.0 / norm if norm else math.inf,
                                               1.0 / self.global_clipnorm) + (norm - norm)
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads


def _clip_by_norm(g: np.ndarray, clipnorm: float) -> np.ndarray:
    """Keras's ``_clip_by_norm``: ``g * clipnorm / max(norm(g), clipnorm)``."""
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

    ``m = momentum * m - lr * g``; ``var += m`` (or ``var += momentum * m - lr * g`` with
    ``nesterov=True``); without momentum ``var -= lr * g``.
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
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        if not isinstance(momentum, (int, float)) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _make_slots(self, data: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.zeros_like(data),) if self.momentum != 0 else ()

    def _update(self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float) -> None:
        dt = var.dtype.type
        lr_g = g * dt(lr)
        if not slots:
            var -= lr_g
            return
        (m,) = slots
        mom = dt(self.momentum)
        m *= mom
        m -= lr_g
        if self.nesterov:
            var += m * mom - lr_g
        else:
            var += m

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with Keras's keys."""
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), Keras's formulation with the bias correction folded into the step.

    ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``; ``m += (g - m) * (1 - beta_1)``;
    ``v += (g**2 - v) * (1 - beta_2)``; ``var -= m * alpha / (sqrt(v) + epsilon)``
    (``v`` replaced by its running maximum with ``amsgrad=True``).
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
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)

    def _make_slots(self, data: np.ndarray) -> tuple[np.ndarray, ...]:
        n = 4 if self.amsgrad else 3  # m, v, (v_hat,) and a scratch buffer
        return tuple(np.zeros_like(data) for _ in range(n))

    def _update(self, g: np.ndarray, var: np.ndarray, slots: tuple, lr: float) -> None:
        dt = var.dtype.type
        step = dt(self.iterations + 1)
        alpha = dt(lr) * np.sqrt(1 - dt(self.beta_2) ** step) / (1 - dt(self.beta_1) ** step)
        m, v, tmp = slots[0], slots[1], slots[-1]
        # In place through one scratch buffer: the same roundings as Keras's expressions.
        np.subtract(g, m, out=tmp)
        tmp *= 1 - self.beta_1
        m += tmp
        np.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= 1 - self.beta_2
        v += tmp
        if self.amsgrad:
            np.maximum(slots[2], v, out=slots[2])
            v = slots[2]
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m * alpha, tmp, out=tmp)
        var -= tmp

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
    """Adam with decoupled weight decay (default 0.004), as ``keras.optimizers.AdamW``."""

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
    """``{"class_name", "config"}`` of an optimizer (hyper-parameters only, no state)."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict[str, Any]) -> Optimizer:
    """An optimizer from ``{"class_name", "config"}`` (a fresh one, without state)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"An optimizer config must be a dict with 'class_name', got {config!r}.")
    cls = _CLASSES.get(config["class_name"]) or _ALIASES.get(str(config["class_name"]).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer {config['class_name']!r}; known: {sorted(_CLASSES)}.")
    return cls.from_config(dict(config.get("config") or {}))


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
