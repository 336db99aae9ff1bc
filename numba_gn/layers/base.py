"""``Layer``: the small Keras-like base class every numba_gn layer derives from.

Lifecycle (as in Keras 3):

1. ``__init__`` stores and validates the configuration; no shapes are known yet.
2. The first ``layer(x)`` converts ``x`` to a :class:`~numba_gn.autograd.Tensor`, calls
   ``build(x.shape)``, which creates the weights with :meth:`Layer.add_weight` (and may set an
   :class:`InputSpec`), then calls ``call(x)``. Later calls check ``x`` against the input spec
   first. ``build`` may also be called directly; afterwards no weight can be added.
3. The weights are :class:`~numba_gn.params.Variable` objects carrying their own regularizer
   and constraint: :attr:`Layer.losses` evaluates the regularizers on the current values, and an
   optimizer applies ``variable.constraint`` after each update.
4. :meth:`Layer.get_config` / :meth:`Layer.from_config` round-trip the constructor arguments in
   Keras's format.

Subclasses implement ``__init__`` (passing ``**kwargs`` on), ``build``, ``call``,
``compute_output_shape`` and ``get_config``.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from numba_gn import _args
from numba_gn._locks import FreshLocks
from numba_gn.autograd import Tensor
from numba_gn.autograd import cast as _cast
from numba_gn.layers import dtype_policy as _policies
from numba_gn.layers.input_spec import InputSpec
from numba_gn.params import Variable, initializers
from numba_gn.params._registry import to_snake_case

__all__ = ["Layer", "unique_name"]

Shape = tuple[int | None, ...]

_name_lock = threading.Lock()
_name_counts: dict[str, int] = {}


def unique_name(prefix: str) -> str:
    """``prefix``, then ``prefix_1``, ``prefix_2``, ... on later calls (Keras's auto names)."""
    with _name_lock:
        n = _name_counts.get(prefix, 0)
        _name_counts[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def _standardize_shape(shape: object) -> Shape:
    """An input shape as a tuple of non-negative ints and None (free dimensions)."""
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"An input shape must be a tuple of ints, got {shape!r}.") from None
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0):
            raise ValueError(f"An input shape must hold non-negative ints or None, got {shape!r}.")
    return tuple(None if d is None else int(d) for d in dims)


def _tracks_build(build: Callable[..., None]) -> Callable[..., None]:
    """Wrap a ``build`` method: standardize the shape, set ``built``, undo a failed build.

    Applied to every class's own ``build`` so that calling ``layer.build(shape)`` directly
    behaves like the implicit build of the first call. A subclass's ``super().build(...)``
    runs the parent's code without the bookkeeping.

    The whole build runs under the layer's ``_build_lock``: two threads building the same layer
    would otherwise both append weights to it. The lock is reentrant, so the nested
    ``super().build()`` of the thread that holds it passes straight through, and a build may
    build other layers (each under its own lock).
    """

    @functools.wraps(build)
    def wrapper(self: Layer, input_shape: Any) -> None:
        with self._build_lock:
            if self._building:  # nested super().build() call: the outer wrapper does the work
                build(self, input_shape)
                return
            shape = _standardize_shape(input_shape)
            n_weights = len(self._weights)
            spec = self.input_spec
            self._building = True
            try:
                build(self, shape)
            except BaseException:
                # Leave no half-built state behind: the layer can be built again with a good
                # shape.
                del self._weights[n_weights:]
                del self._declared_trainable[n_weights:]
                self.input_spec = spec
                raise
            finally:
                self._building = False
            self._build_shape = shape
            # Set last: threads read `built` without the lock, and once they see it true,
            # every weight and the input spec are already in place.
            self.built = True

    wrapper._tracks_build = True  # type: ignore[attr-defined]
    return wrapper


def _check_bool(value: object, name: str) -> bool:
    """``value`` as a bool; anything but a (NumPy) bool is refused (Keras's message)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"Expected `{name}` to be a boolean. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    return bool(value)


class Layer(FreshLocks):
    """Base class of layers: weights, lazy building, regularization losses, configs.

    Parameters
    ----------
    name : str, optional
        Default: the snake_case class name, made unique (``"group_normalization"``,
        ``"group_normalization_1"``, ...). Must be non-empty and must not contain ``"/"``.
    dtype : str, numpy dtype, DTypePolicy or Keras policy dict, optional
        The dtype policy (default ``"float32"``): ``dtype`` is the weights' dtype,
        ``compute_dtype`` the dtype inputs are cast to when ``autocast`` is on.
    trainable : bool, default True
        ``False`` moves every weight to :attr:`non_trainable_weights` and stops tapes from
        watching them automatically.
    autocast : bool, default True
        Cast floating inputs to the compute dtype before ``call``.
    **kwargs
        Any other keyword raises ``TypeError`` naming it.

    Attributes
    ----------
    built : bool
        Whether ``build`` has run.
    input_spec : InputSpec or None
        Checked against every input (set by ``build`` in most layers).
    supports_masking : bool
        Whether :meth:`compute_mask` passes an incoming mask on (class attribute).

    Notes
    -----
    Layers may be called from several threads at once. The first calls build the layer
    exactly once, under a per-layer lock; threads that arrive meanwhile wait and then use the
    weights that build created. Once built, calls take no lock.
    """

    _lock_names = ("_build_lock",)

    supports_masking: bool = False
    _call_takes_mask: bool = False
    _call_takes_training: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_build = cls.__dict__.get("build")
        if own_build is not None and not getattr(own_build, "_tracks_build", False):
            cls.build = _tracks_build(own_build)  # type: ignore[method-assign]
        params = inspect.signature(cls.call).parameters
        cls._call_takes_mask = "mask" in params
        cls._call_takes_training = "training" in params

    def __init__(
        self,
        *,
        name: str | None = None,
        dtype: Any = None,
        trainable: bool = True,
        autocast: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {sorted(kwargs)}. "
                f"Accepted: {sorted(self._config_keys())}."
            )
        if name is None:
            name = unique_name(to_snake_case(type(self).__name__))
        # An empty name is refused too: it would make an empty key in saved-weight paths.
        if not isinstance(name, str) or "/" in name or not name:
            raise ValueError(
                "Argument `name` must be a non-empty string and cannot contain character `/`. "
                f"Received: name={name!r}"
            )
        trainable = _check_bool(trainable, "trainable")
        if not isinstance(autocast, (bool, np.bool_)):
            raise TypeError(
                f"Expected `autocast` to be a boolean. Received: autocast={autocast!r} "
                f"(of type {type(autocast).__name__})"
            )
        # Guards build(): see _tracks_build. Reentrant so that a build may call nested builds.
        self._build_lock = threading.RLock()
        self.name = name
        self._dtype_policy = _policies.get(dtype)
        self._trainable = trainable
        self.autocast = bool(autocast)
        self.built = False
        self.input_spec: InputSpec | None = None
        self._weights: list[Variable] = []
        # Per weight, the trainable flag it was created with; layer.trainable gates it.
        self._declared_trainable: list[bool] = []
        self._building = False
        self._build_shape: Shape | None = None

    # -- dtypes ----------------------------------------------------------------------------------

    @property
    def dtype_policy(self) -> _policies.DTypePolicy:
        """The layer's :class:`DTypePolicy`."""
        return self._dtype_policy

    @property
    def dtype(self) -> str:
        """The dtype of the weights (Keras: an alias of ``variable_dtype``)."""
        return self._dtype_policy.variable_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype of the weights."""
        return self._dtype_policy.variable_dtype

    @property
    def compute_dtype(self) -> str:
        """The dtype floating inputs are cast to when ``autocast`` is on."""
        return self._dtype_policy.compute_dtype

    # -- trainability ------------------------------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """Whether the layer's weights are trained; setting it updates every weight's flag."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        value = _check_bool(value, "trainable")
        with self._build_lock:  # a build running in another thread appends to these lists
            self._trainable = value
            for w, declared in zip(self._weights, self._declared_trainable, strict=True):
                w.trainable = declared and value

    # -- building and calling --------------------------------------------------------------------

    @_tracks_build
    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of ``input_shape`` (this base version creates none)."""

    def call(self, inputs: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The layer's computation on a Tensor; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement call().")

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Convert ``inputs`` to a Tensor, build on first use, check the input spec, ``call``.

        The result is recorded on every active :class:`~numba_gn.autograd.GradientTape`.
        """
        x = self._convert_input(inputs)
        spec = self.input_spec
        if spec is not None:
            spec.check(x.shape, self.name)
        if not self.built:
            self._maybe_build(x.shape)
            # Another thread may have built the layer for another shape while this one waited:
            # check the input against the spec that build set.
            if self.input_spec is not None and self.input_spec is not spec:
                self.input_spec.check(x.shape, self.name)
        # Like Keras, `training` is passed on only to layers whose call() uses it.
        if "training" in kwargs and not self._call_takes_training:
            del kwargs["training"]
        if "mask" in kwargs and not self._call_takes_mask:
            raise TypeError(
                f"Layer {self.name!r} ({type(self).__name__}) does not use masks: its call() "
                "takes no `mask` argument."
            )
        return self.call(x, *args, **kwargs)

    def _maybe_build(self, input_shape: Shape) -> None:
        """Build for ``input_shape`` unless built: exactly once, whichever threads call at once.

        The check is repeated under the lock (double-checked), so a thread that waited for
        another's build uses those weights instead of building again, while calls after the
        build take no lock at all.
        """
        if self.built:
            return
        with self._build_lock:
            if not self.built:
                self.build(input_shape)

    def _convert_input(self, inputs: Any) -> Tensor:
        if isinstance(inputs, Tensor):
            x = inputs
        else:
            if isinstance(inputs, (list, tuple)) and any(isinstance(i, Tensor) for i in inputs):
                raise TypeError(
                    f"Layer {self.name!r} takes one Tensor or array, got a "
                    f"{type(inputs).__name__} of Tensors (stack them into one Tensor first)."
                )
            if type(inputs) is not np.ndarray:  # np.asarray would drop a masked array's mask
                _args.check_not_masked(
                    inputs, "inputs", "Pass the data and the layer's `mask=` argument instead."
                )
            x = Tensor(np.asarray(inputs))
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"Layer {self.name!r} expects numeric input, got an array of dtype {x.dtype}."
            )
        if self.autocast and x.dtype.kind == "f" and x.dtype != self.compute_dtype:
            x = _cast(x, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for inputs of ``input_shape`` (``None`` dims stay ``None``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_output_shape().")

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        """The mask of the output: the input's mask if the layer supports masking, else None."""
        return previous_mask if self.supports_masking else None

    # -- weights ---------------------------------------------------------------------------------

    def add_weight(
        self,
        *,
        name: str | None = None,
        shape: Sequence[int] = (),
        initializer: Any = None,
        regularizer: Any = None,
        constraint: Any = None,
        trainable: bool = True,
        dtype: DTypeLike | None = None,
    ) -> Variable:
        """Create a weight, track it, and return it as a :class:`~numba_gn.params.Variable`.

        Parameters
        ----------
        name : str, optional
            The Variable's name (Keras's ``"gamma"``, ``"kernel"``, ...).
        shape : tuple of ints
            Shape of the weight.
        initializer : str, dict, Initializer or callable, optional
            Default ``"glorot_uniform"`` for floating dtypes and ``"zeros"`` otherwise (Keras).
        regularizer, constraint : optional
            Identifiers for :mod:`numba_gn.params.regularizers` and
            :mod:`numba_gn.params.constraints`; stored on the Variable.
        trainable : bool, default True
            Whether the weight is trained (while the layer is trainable).
        dtype : dtype, optional
            Default: the layer's variable dtype.

        Notes
        -----
        Weights can be added in ``__init__`` or ``build``, not once the layer is built.
        """
        if self.built:
            raise ValueError(
                f"Layer {self.name!r} is already built; weights can only be added in "
                "__init__() or build()."
            )
        dt = np.dtype(self.variable_dtype if dtype is None else dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dt.kind == "f" else "zeros"
        variable = Variable(
            initializers.get(initializer),
            shape=tuple(shape),
            dtype=dt,
            trainable=bool(trainable) and self._trainable,
            name=name,
            regularizer=regularizer,
            constraint=constraint,
        )
        self._weights.append(variable)
        self._declared_trainable.append(bool(trainable))
        return variable

    @property
    def weights(self) -> list[Variable]:
        """Every weight, in creation order."""
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Variable]:
        """The weights an optimizer updates (none while the layer is not trainable)."""
        if not self._trainable:
            return []
        return [w for w in self._weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """The other weights (all of them while the layer is not trainable)."""
        if not self._trainable:
            return list(self._weights)
        return [w for w in self._weights if not w.trainable]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights' values, in the order of :attr:`weights`."""
        return [w.numpy() for w in self._weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight from a list of arrays, in the order of :attr:`weights`.

        All values are checked (count, numeric type, every shape) before any is assigned, so
        a failed call changes nothing. Values are cast to each weight's dtype.
        """
        if isinstance(weights, (np.ndarray, Tensor)) or not isinstance(weights, Sequence):
            raise TypeError(
                f"set_weights() on layer {self.name!r} takes a list of arrays, got "
                f"{type(weights).__name__}."
            )
        if len(weights) != len(self._weights):
            raise ValueError(
                f"You called `set_weights(weights)` on layer {self.name!r} with a weight list "
                f"of length {len(weights)}, but the layer was expecting "
                f"{len(self._weights)} weights ({[w.name for w in self._weights]})."
            )
        values = []
        for i, (w, value) in enumerate(zip(self._weights, weights, strict=True)):
            try:
                arr = np.asarray(value.data if isinstance(value, Tensor) else value)
            except ValueError as exc:  # ragged nested lists
                raise ValueError(
                    f"set_weights() on layer {self.name!r}: value {i} for weight {w.name!r} "
                    f"is not an array ({exc}). No weight was changed."
                ) from None
            if arr.dtype.kind not in "biuf":
                raise TypeError(
                    f"set_weights() on layer {self.name!r}: value {i} for weight {w.name!r} "
                    f"must be numeric, got dtype {arr.dtype}. No weight was changed."
                )
            if arr.shape != w.shape:
                raise ValueError(
                    f"set_weights() on layer {self.name!r}: weight {i} ({w.name!r}) has shape "
                    f"{w.shape}, but the value given has shape {arr.shape}. "
                    "No weight was changed."
                )
            values.append(arr)
        for w, arr in zip(self._weights, values, strict=True):
            w.assign(arr)

    def count_params(self) -> int:
        """Total number of scalars in the weights."""
        return sum(math.prod(w.shape) for w in self._weights)

    def stateless_call(
        self,
        trainable_variables: Sequence[Any],
        non_trainable_variables: Sequence[Any],
        *args: Any,
        return_losses: bool = False,
        **kwargs: Any,
    ) -> tuple:
        """Call the layer with the given values standing in for its weights (Keras's API).

        The values (Tensors, or arrays wrapped as Tensors) replace :attr:`trainable_weights`
        and :attr:`non_trainable_weights`, in order, for this one call; the weights themselves
        are untouched. On a tape the result is differentiable with respect to the given
        Tensors, which makes functional-style training and gradient checks of a whole layer
        possible. Not thread-safe with other calls of the same layer.

        Returns
        -------
        ``(outputs, non_trainable_variables)``, plus the regularization losses evaluated on the
        given values when ``return_losses`` is true.
        """
        if not self.built:
            raise ValueError(f"Layer {self.name!r} must be built before stateless_call().")
        weights = self.trainable_weights + self.non_trainable_weights
        values = list(trainable_variables) + list(non_trainable_variables)
        if len(trainable_variables) != len(self.trainable_weights) or len(values) != len(weights):
            raise ValueError(
                f"stateless_call() on layer {self.name!r} needs {len(self.trainable_weights)} "
                f"trainable and {len(self.non_trainable_weights)} non-trainable values, got "
                f"{len(trainable_variables)} and {len(non_trainable_variables)}."
            )
        stand_in = {}
        for w, v in zip(weights, values, strict=True):
            t = v if isinstance(v, Tensor) else Tensor(np.asarray(v, dtype=w.dtype))
            if t.shape != w.shape:
                raise ValueError(
                    f"stateless_call() on layer {self.name!r}: weight {w.name!r} has shape "
                    f"{w.shape}, got a value of shape {t.shape}."
                )
            stand_in[id(w)] = t
        # Layers read their weights through attributes (self.gamma, self.kernel): point those
        # at the stand-ins for the duration of the call.
        swapped = {k: v for k, v in vars(self).items() if id(v) in stand_in}
        try:
            for k, v in swapped.items():
                setattr(self, k, stand_in[id(v)])
            outputs = self(*args, **kwargs)
        finally:
            for k, v in swapped.items():
                setattr(self, k, v)
        result: tuple = (outputs, list(non_trainable_variables))
        if return_losses:
            losses = [
                w.regularizer(stand_in[id(w)])
                for w in self.trainable_weights
                if w.regularizer is not None
            ]
            result += (losses,)
        return result

    @property
    def losses(self) -> list[Tensor]:
        """Regularization penalties of the trainable weights, from their current values.

        Each is a scalar Tensor; inside a :class:`~numba_gn.autograd.GradientTape` it is
        recorded, so ``loss + sum(layer.losses)`` differentiates the penalties too.
        """
        return [w.regularizer(w) for w in self.trainable_weights if w.regularizer is not None]

    # -- configuration ---------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The base configuration: ``name``, ``trainable`` and the Keras ``dtype`` policy dict."""
        return {
            "name": self.name,
            "trainable": self._trainable,
            "dtype": self._dtype_policy.serialize(),
        }

    @classmethod
    def _config_keys(cls) -> frozenset[str]:
        """Constructor keywords of ``cls`` and its bases up to :class:`Layer`."""
        keys: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            keys.update(
                p.name
                for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
            )
            if klass is Layer or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return frozenset(keys)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Layer:
        """Create a layer from :meth:`get_config` output (ours or Keras's).

        Every key must be a constructor argument (``TypeError`` naming the unknown ones).
        Nested objects (initializers, regularizers, constraints, the dtype policy) are rebuilt
        from their config dicts by name lookup only: nothing in a config is imported or
        evaluated.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"{cls.__name__}.from_config() takes a dict, got {type(config).__name__}."
            )
        accepted = cls._config_keys()
        unknown = sorted(str(k) for k in config if k not in accepted)
        if unknown:
            raise TypeError(
                f"Unknown key(s) {unknown} in the config of {cls.__name__}; accepted keys are "
                f"{sorted(accepted)}."
            )
        return cls(**config)

    def __repr__(self) -> str:
        state = f"built for {self._build_shape}" if self.built else "not built"
        return f"<{type(self).__name__} name={self.name}, {state}>"
