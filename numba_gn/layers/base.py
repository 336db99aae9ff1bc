"""`Layer`: the small Keras-like base class every numba_gn layer derives from.

Lifecycle (as in Keras 3):

1. `__init__` stores and validates the configuration; no shapes are known yet.
2. The first `layer(x)` converts `x` to a `Tensor`, calls
   `build(x.shape)`, which creates the weights with `Layer.add_weight` (and may set an
   `InputSpec`), then calls `call(x)`. Later calls check `x` against the input spec
   first. `build` may also be called directly; afterwards no weight can be added.
3. The weights are `Variable` objects carrying their own regularizer
   and constraint: `Layer.losses` evaluates the regularizers on the current values, and an
   optimizer applies `variable.constraint` after each update.
4. `Layer.get_config` / `Layer.from_config` round-trip the constructor arguments in
   Keras's format.
5. Layers and Variables assigned to attributes, directly or inside lists, tuples and dicts, are
   tracked (as Keras tracks them): their weights, regularization losses and `trainable` flag
   belong to the outer layer, and `training` reaches them through the call context.

Subclasses implement `__init__` (passing `**kwargs` on), `build`, `call`,
`compute_output_shape` and `get_config`; a custom layer may leave out `build` (its
sublayers build on their first call) and `compute_output_shape` (inferred by running `call`
on zeros where a model needs it).
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
from numba_gn._dtypes import is_float
from numba_gn._locks import FreshLocks
from numba_gn.autograd import Tensor, no_record
from numba_gn.autograd import cast as _cast
from numba_gn.layers import dtype_policy as _policies
from numba_gn.layers._tracking import TrackedDict, TrackedList
from numba_gn.layers.input_spec import InputSpec
from numba_gn.layers.symbolic import KerasTensor, Node, is_symbolic, map_symbolic
from numba_gn.params import Variable, _scope, initializers
from numba_gn.params._registry import to_snake_case
from numba_gn.params._scope import current_path, name_scope

__all__ = ["Layer", "unique_name"]

Shape = tuple[int | None, ...]

_MISSING: Any = object()

# The `training` value of the layer call running in this thread (None outside any call): a
# layer called without an explicit `training` inherits it, as Keras's call context does. Per
# thread, so that a model predicting in one thread and training in another keeps them apart.
class _CallContext(threading.local):
    training: Any = None


_call_context = _CallContext()

# Sizes given to the free (None) dimensions of the zero inputs that infer an output shape. Two
# runs with different sizes tell which output dimensions follow the free input ones; odd sizes
# and ratios keep strides and pooling from mapping both to the same size.
_PROBE_BATCH = (1, 2)
_PROBE_DIM = (16, 23)

_name_lock = threading.Lock()
_name_counts: dict[str, int] = {}


def unique_name(prefix: str) -> str:
    """`prefix`, then `prefix_1`, `prefix_2`, ... on later calls (Keras's auto names)."""
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


def _standardize_shapes(shapes: object) -> Any:
    """A list of input shapes (layers taking a list of inputs) as a list of standard shapes.

    Anything that is not a list or tuple of shapes (a single shape, say) is returned unchanged,
    so that the layer's `build` can refuse it with its own message.
    """
    if isinstance(shapes, (list, tuple)) and shapes and all(
        isinstance(s, (list, tuple)) for s in shapes
    ):
        return [_standardize_shape(s) for s in shapes]
    return shapes


def _tracks_build(build: Callable[..., None]) -> Callable[..., None]:
    """Wrap a `build` method: standardize the shape, set `built`, undo a failed build.

    Applied to every class's own `build` so that calling `layer.build(shape)` directly
    behaves like the implicit build of the first call. A subclass's `super().build(...)`
    runs the parent's code without the bookkeeping.

    The whole build runs under the layer's `_build_lock`: two threads building the same layer
    would otherwise both append weights to it. The lock is reentrant, so the nested
    `super().build()` of the thread that holds it passes straight through, and a build may
    build other layers (each under its own lock).
    """

    @functools.wraps(build)
    def wrapper(self: Layer, input_shape: Any) -> None:
        with self._build_lock:
            if self._building:  # nested super().build() call: the outer wrapper does the work
                build(self, input_shape)
                return
            shape = self._standardize_build_shape(input_shape)
            saved = (list(self._weights), list(self._declared_trainable),
                     list(self._tracked_layers))
            spec = self.input_spec
            self._building = True
            try:
                # Variables created by the build are named after this layer (Keras's paths).
                with self._open_name_scope():
                    build(self, shape)
            except BaseException:
                # Leave no half-built state behind: the layer can be built again with a good
                # shape.
                self._weights[:], self._declared_trainable[:], self._tracked_layers[:] = saved
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
    """`value` as a bool; anything but a (NumPy) bool is refused (Keras's message)."""
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
        Default: the snake_case class name, made unique (`"group_normalization"`,
        `"group_normalization_1"`, ...). Must be non-empty and must not contain `"/"`.
    dtype : str, numpy dtype, DTypePolicy or Keras policy dict, optional
        The dtype policy (default `"float32"`): `dtype` is the weights' dtype,
        `compute_dtype` the dtype inputs are cast to when `autocast` is on.
    trainable : bool, default True
        `False` moves every weight to `non_trainable_weights` and stops tapes from
        watching them automatically.
    autocast : bool, default True
        Cast floating inputs to the compute dtype before `call`.
    **kwargs
        Any other keyword raises `TypeError` naming it.

    Attributes
    ----------
    built : bool
        Whether `build` has run.
    input_spec : InputSpec or None
        Checked against every input (set by `build` in most layers).
    supports_masking : bool
        Whether `compute_mask` passes an incoming mask on (class attribute).

    Notes
    -----
    Layers may be called from several threads at once. The first calls build the layer
    exactly once, under a per-layer lock; threads that arrive meanwhile wait and then use the
    weights that build created. Once built, calls take no lock.

    Layers and `Variable` objects assigned to attributes are tracked,
    also inside lists, tuples and dicts (nested ones too), in the order they were first
    assigned, as Keras tracks them. Lists and dicts are replaced by tracking copies
    (`TrackedList`, `TrackedDict`, subclasses of `list` and `dict`), so layers appended
    or stored in them later are tracked as well. A layer's `weights` are its own (the
    trainable ones first, then the others, each in tracking order), then those of its
    sublayers in tracking order. Reassigning an attribute puts the new object in the old one's
    place; the old one, like anything deleted or removed from a tracked container, is
    untracked unless another attribute still holds it.

    `training` travels through a call context (per thread): a layer called without an
    explicit `training` inside another layer's call takes the outer call's value, as in
    Keras.
    """

    _lock_names = ("_build_lock",)

    supports_masking: bool = False
    # Whether call() takes a list of inputs (the merging layers): __call__ then converts each
    # one, and build() and compute_output_shape() receive a list of shapes.
    _takes_input_list: bool = False
    # Whether __call__ takes a list or dict of inputs as given (models with several inputs).
    _takes_input_structure: bool = False
    _call_takes_mask: bool = False
    _call_takes_training: bool = False
    # The default of call()'s `training` argument, and its index among the positional
    # arguments after the inputs (None when it cannot be given positionally).
    _call_training_default: Any = None
    _call_training_index: int | None = None
    # Attributes holding the layer's own bookkeeping: never tracked, wrapped or searched.
    _untracked_attributes: frozenset[str] = frozenset(
        {
            "_weights",
            "_declared_trainable",
            "_tracked_layers",
            "_inferred_output_shapes",
            "_inbound_nodes",
            "_build_lock",
            "_build_shape",
            "input_spec",
        }
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_build = cls.__dict__.get("build")
        if own_build is not None and not getattr(own_build, "_tracks_build", False):
            cls.build = _tracks_build(own_build)  # type: ignore[method-assign]
        params = inspect.signature(cls.call).parameters
        cls._call_takes_mask = "mask" in params
        cls._call_takes_training = "training" in params
        cls._call_training_default = None
        cls._call_training_index = None
        if cls._call_takes_training:
            param = params["training"]
            if param.default is not param.empty:
                cls._call_training_default = param.default
            positional = [
                p.name for p in params.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if "training" in positional:
                # Positions in `args` of __call__(inputs, *args): after self and the inputs.
                cls._call_training_index = positional.index("training") - 2

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
        # A subclass may assign sublayers before calling this: keep what was tracked.
        self._init_tracking()
        self.name = name
        self._dtype_policy = _policies.get(dtype)
        self._trainable = trainable
        if not trainable:
            for w in self._weights:
                w.trainable = False
        self.autocast = bool(autocast)
        self.built = False
        self.input_spec: InputSpec | None = None
        self._building = False
        self._building_for_call = False
        self._build_shape: Shape | None = None

    def _init_tracking(self) -> None:
        """Create the tracking state once (on the first attribute set, or in `__init__`)."""
        d = self.__dict__
        if "_tracked_layers" in d:
            return
        # Guards build(): see _tracks_build. Reentrant so that a build may call nested builds.
        d.setdefault("_build_lock", threading.RLock())
        d["_weights"] = []  # the layer's own Variables, in tracking order
        # Per weight, the trainable flag it was created (or tracked) with; layer.trainable
        # gates it.
        d["_declared_trainable"] = []
        d["_tracked_layers"] = []  # direct sublayers, in tracking order
        d["_inferred_output_shapes"] = {}
        # The calls on symbolic tensors (functional API), as Keras's nodes.
        d["_inbound_nodes"] = []
        # Scope path of the layer that first called or built this one (Keras's parent path).
        d["_parent_path"] = None

    # -- dtypes ----------------------------------------------------------------------------------

    @property
    def dtype_policy(self) -> _policies.DTypePolicy:
        """The layer's `DTypePolicy`."""
        return self._dtype_policy

    @property
    def dtype(self) -> str:
        """The dtype of the weights (Keras: an alias of `variable_dtype`)."""
        return self._dtype_policy.variable_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype of the weights."""
        return self._dtype_policy.variable_dtype

    @property
    def compute_dtype(self) -> str:
        """The dtype floating inputs are cast to when `autocast` is on."""
        return self._dtype_policy.compute_dtype

    # -- trainability ------------------------------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """Whether the layer's weights are trained; setting it sets every weight's flag.

        As in Keras, the value is set on every sublayer too (all the way down): freezing a
        block freezes everything in it, and unfreezing it unfreezes everything again. Weights
        created non-trainable stay so.
        """
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        value = _check_bool(value, "trainable")
        for layer in self._flatten_layers():
            layer._set_own_trainable(value)

    def _set_own_trainable(self, value: bool) -> None:
        with self._build_lock:  # a build running in another thread appends to these lists
            self._trainable = value
            for w, declared in zip(self._weights, self._declared_trainable, strict=True):
                w.trainable = declared and value

    # -- tracking --------------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        """Set an attribute, tracking the layers and Variables in `value` (see the Notes)."""
        d = self.__dict__
        # Fast path for everything that holds no layer or Variable (numbers, strings, arrays,
        # callables): most attributes of most layers.
        if name in self._untracked_attributes or not (
            isinstance(value, _TRACKABLE_KINDS) or isinstance(d.get(name), _TRACKABLE_KINDS)
        ):
            object.__setattr__(self, name, value)
            return
        if isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
            return
        self._init_tracking()
        old = d.get(name, _MISSING)
        value, found = self._wrap_for_tracking(value)
        object.__setattr__(self, name, value)
        self._tracking_changed(found, [] if old is _MISSING else self._trackables_in([old]))

    def __delattr__(self, name: str) -> None:
        """Delete an attribute; what it held is untracked unless another attribute holds it."""
        old = self.__dict__.get(name, _MISSING)
        object.__delattr__(self, name)
        if (
            old is not _MISSING
            and name not in self._untracked_attributes
            and isinstance(old, _TRACKABLE_KINDS)
        ):
            self._tracking_changed([], self._trackables_in([old]))

    def _wrap_for_tracking(self, value: Any) -> tuple[Any, list[Any]]:
        """`value` with its lists and dicts replaced by tracking copies; its trackables.

        Returns the value to store and the layers and Variables found in it, in order. Plain
        lists and dicts (and tracking ones of another layer) are copied into tracking ones owned
        by this layer; tuples are rebuilt around them when something inside changed; other
        list and dict subclasses are searched but kept as they are (later changes to them are
        not seen).
        """
        found: list[Any] = []
        memo: dict[int, Any] = {}

        def wrap(v: Any) -> Any:
            if isinstance(v, Layer):
                if v is not self:
                    found.append(v)
                return v
            if isinstance(v, Variable):
                found.append(v)
                return v
            if not isinstance(v, (list, tuple, dict)):
                return v
            if id(v) in memo:  # a container holding itself
                return memo[id(v)]
            if isinstance(v, (TrackedList, TrackedDict)) and v._owner is self:
                memo[id(v)] = v
                for item in v.values() if isinstance(v, dict) else v:
                    wrap(item)
                return v
            if type(v) is list or isinstance(v, TrackedList):
                new_list = memo[id(v)] = TrackedList(owner=self)
                list.extend(new_list, [wrap(item) for item in v])
                return new_list
            if type(v) is dict or isinstance(v, TrackedDict):
                new_dict = memo[id(v)] = TrackedDict(owner=self)
                for key, item in v.items():
                    dict.__setitem__(new_dict, key, wrap(item))
                return new_dict
            memo[id(v)] = v
            if isinstance(v, dict):
                for item in v.values():
                    wrap(item)
                return v
            items = [wrap(item) for item in v]
            if not isinstance(v, tuple) or all(a is b for a, b in zip(items, v, strict=True)):
                return v
            if hasattr(v, "_fields"):  # a named tuple
                return type(v)._make(items)
            return tuple(items) if type(v) is tuple else v

        return wrap(value), found

    def _trackables_in(self, values: Any) -> list[Any]:
        """The layers and Variables in `values` (searched through lists, tuples, dicts)."""
        out: list[Any] = []
        seen: set[int] = set()
        stack = list(reversed(list(values)))
        while stack:
            v = stack.pop()
            if isinstance(v, Layer):
                if v is not self:
                    out.append(v)
            elif isinstance(v, Variable):
                out.append(v)
            elif isinstance(v, (list, tuple, dict)) and id(v) not in seen:
                seen.add(id(v))
                items = list(v.values()) if isinstance(v, dict) else list(v)
                stack.extend(reversed(items))
        return out

    def _held_ids(self) -> set[int]:
        """Ids of the layers and Variables the attributes hold now."""
        values = [
            v
            for name, v in list(self.__dict__.items())
            if name not in self._untracked_attributes and isinstance(v, _TRACKABLE_KINDS)
        ]
        return {id(o) for o in self._trackables_in(values)}

    def _tracking_changed(self, added: list[Any], removed: list[Any]) -> None:
        """Track `added`; untrack what of `removed` no attribute holds any more.

        A new object takes the place of the first untracked one of its kind (an attribute
        reassigned keeps its position); otherwise it goes last.
        """
        if not added and not removed:
            return
        self._init_tracking()
        with self._build_lock:
            added_ids = {id(o) for o in added}
            candidates = [o for o in removed if id(o) not in added_ids]
            gone: set[int] = set()
            if candidates:
                held = self._held_ids()
                gone = {id(o) for o in candidates if id(o) not in held}
            tracked = {id(o) for o in self._tracked_layers}
            new_layers: list[Any] = []
            for o in added:
                if isinstance(o, Layer) and id(o) not in tracked:
                    tracked.add(id(o))
                    new_layers.append(o)
            self._tracked_layers[:] = _splice(self._tracked_layers, gone, new_layers, id)
            tracked = {id(w) for w in self._weights}
            new_vars: list[tuple[Variable, bool]] = []
            for o in added:
                if isinstance(o, Variable) and id(o) not in tracked:
                    tracked.add(id(o))
                    # Its group (trainable or not) is fixed now, as Keras files it on tracking.
                    new_vars.append((o, o.trainable))
                    if not self.__dict__.get("_trainable", True):
                        o.trainable = False
            entries = _splice(
                list(zip(self._weights, self._declared_trainable, strict=True)),
                gone,
                new_vars,
                lambda e: id(e[0]),
            )
            self._weights[:] = [w for w, _ in entries]
            self._declared_trainable[:] = [d for _, d in entries]

    def _sublayers(self) -> list[Layer]:
        """The directly tracked sublayers, in tracking order."""
        return list(self._tracked_layers)

    def _flatten_layers(self, include_self: bool = True) -> list[Layer]:
        """The layer itself and every layer below it, depth first, each once (Keras's order)."""
        out: list[Layer] = [self] if include_self else []
        seen = {id(self)}
        stack = list(reversed(self._sublayers()))
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            out.append(layer)
            stack.extend(reversed(layer._sublayers()))
        return out

    def _own_weights(self) -> list[Variable]:
        """The layer's own Variables: the trainable-declared ones first, as Keras lists them."""
        weights, declared = list(self._weights), list(self._declared_trainable)
        pairs = list(zip(weights, declared, strict=False))  # a build may be appending
        return [w for w, d in pairs if d] + [w for w, d in pairs if not d]

    # -- building and calling --------------------------------------------------------------------

    @_tracks_build
    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of `input_shape` (this base version creates none).

        Called directly on a custom layer that has no `build` of its own but has sublayers
        not built yet, it builds them by running `call` on zeros of `input_shape` (free
        dimensions filled in), as Keras builds such a layer by tracing `call`. The first call
        of the layer needs no such run: its sublayers build on their own first calls inside it.
        """
        if (
            type(self).build is Layer.build
            and not self._building_for_call
            and any(not layer.built for layer in self._sublayers())
        ):
            self._infer_output_shape(input_shape, inside_build=True)

    def call(self, inputs: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The layer's computation on a Tensor; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement call().")

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Convert `inputs` to a Tensor, build on first use, check the input spec, `call`.

        `training` is resolved as in Keras: the value given (when not None), else the value
        of the layer call this one runs inside, else the default of `call`'s `training`
        argument. It is passed to `call` only when `call` takes it, and is the value inner
        layers inherit while `call` runs.

        The result is recorded on every active `GradientTape`.

        Layers that merge several inputs (`Add`, `Concatenate`, ...) take a list or tuple of
        inputs: each is converted on its own, and `build` receives the list of their shapes.

        Called on symbolic tensors (`Input(...)` and what layers return for them), the layer
        computes nothing: it builds from their shapes, records the call (a
        [Node][numba_gn.layers.symbolic.Node]) and returns symbolic outputs, as in Keras's
        functional API.
        """
        if is_symbolic(inputs):
            return self._symbolic_call(inputs, args, kwargs)
        x, x_shape = self._convert_call_inputs(inputs)
        spec = self.input_spec
        if spec is not None:
            spec.check(x_shape, self.name)
        training = kwargs.pop("training", None)
        index = self._call_training_index
        positional = index is not None and len(args) > index
        if positional:
            training = args[index]  # type: ignore[index]
        context = _call_context
        outer = context.training
        if training is None:
            training = outer if outer is not None else self._call_training_default
        # This layer's name scope, pushed directly (this runs on every call): weights that
        # sublayers create while building inside it are named after it.
        parent = self._parent_path
        if parent is None:
            parent = self._parent_path = current_path()
        scopes = _scope.stack()
        scopes.append(_scope.Scope(self.name, self, parent))
        context.training = training
        try:
            if not self.built:
                self._maybe_build(x_shape)
                # Another thread may have built the layer for another shape while this one
                # waited: check the input against the spec that build set.
                if self.input_spec is not None and self.input_spec is not spec:
                    self.input_spec.check(x_shape, self.name)
            if "mask" in kwargs and not self._call_takes_mask:
                raise TypeError(
                    f"Layer {self.name!r} ({type(self).__name__}) does not use masks: its call() "
                    "takes no `mask` argument."
                )
            # Like Keras, `training` is passed on only to layers whose call() uses it.
            if training is not None and self._call_takes_training and not positional:
                kwargs["training"] = training
            return self.call(x, *args, **kwargs)
        finally:
            context.training = outer
            scopes.pop()

    def _open_name_scope(self) -> name_scope:
        """The scope naming Variables created while this layer builds or calls (Keras's)."""
        if self._parent_path is None:
            self._parent_path = current_path()
        return name_scope(self.name, caller=self, parent=self._parent_path)

    def _maybe_build(self, input_shape: Shape) -> None:
        """Build for `input_shape` unless built: exactly once, whichever threads call at once.

        The check is repeated under the lock (double-checked), so a thread that waited for
        another's build uses those weights instead of building again, while calls after the
        build take no lock at all.
        """
        if self.built:
            return
        with self._build_lock:
            if not self.built:
                # The call that follows builds the sublayers: build() need not run call itself.
                self._building_for_call = True
                try:
                    self.build(input_shape)
                finally:
                    self._building_for_call = False

    def _convert_call_inputs(self, inputs: Any) -> tuple[Any, Any]:
        """The inputs of a call as Tensors, and their shapes (what `build` receives).

        One Tensor, or a list of them for layers that take a list of inputs; models override
        this to take their structures of inputs (lists and dicts).
        """
        if self._takes_input_list and isinstance(inputs, (list, tuple)):
            x = [self._convert_input(i) for i in inputs]
            return x, [t.shape for t in x]
        x = self._convert_input(inputs)
        return x, x.shape

    def _standardize_build_shape(self, input_shape: Any) -> Any:
        """`input_shape` as `build` receives it.

        One standard shape, or a list of them for layers that take a list of inputs (models
        also take dicts of them).
        """
        if self._takes_input_list:
            return _standardize_shapes(input_shape)
        return _standardize_shape(input_shape)

    # -- symbolic calls (functional API) -----------------------------------------------------------

    def _symbolic_call(self, inputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Build from the symbolic inputs' shapes, record a node, return symbolic outputs.

        A shape the layer cannot take is a `ValueError` naming the layer, the input shape and,
        for a built layer, the shape it was built for.
        """
        if isinstance(inputs, (list, tuple, dict)):
            values = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
            if not all(isinstance(v, KerasTensor) for v in values):
                raise TypeError(
                    f"Layer {self.name!r} ({type(self).__name__}) was called on a "
                    f"{type(inputs).__name__} mixing symbolic tensors and other values; pass "
                    "symbolic tensors only (what Input() and layers called on it return)."
                )
            if not (self._takes_input_list and not isinstance(inputs, dict)) and not \
                    self._takes_input_structure:
                raise TypeError(
                    f"Layer {self.name!r} ({type(self).__name__}) takes one input, got a "
                    f"{type(inputs).__name__} of {len(values)} symbolic tensors."
                )
        if "mask" in kwargs and not self._call_takes_mask:
            raise TypeError(
                f"Layer {self.name!r} ({type(self).__name__}) does not use masks: its call() "
                "takes no `mask` argument."
            )
        shape = map_symbolic(lambda t: t.shape, inputs)
        if isinstance(shape, tuple) and not isinstance(inputs, KerasTensor):
            shape = list(shape)  # a tuple of inputs: a list of shapes, not one shape
        was_built = self.built
        built_for = self._build_shape
        spec = self.input_spec
        if spec is not None and not isinstance(shape, (list, dict)):
            spec.check(shape, self.name)  # its message names the layer and both shapes
        try:
            if not self.built:
                self._maybe_build(shape)
        except (ValueError, NotImplementedError) as exc:
            raise self._symbolic_shape_error(shape, None, exc) from exc
        if self.input_spec is not None and self.input_spec is not spec and \
                not isinstance(shape, (list, dict)):
            self.input_spec.check(shape, self.name)
        try:
            out_shape = self._output_shape(shape)
        except (ValueError, NotImplementedError) as exc:
            raise self._symbolic_shape_error(shape, built_for if was_built else None,
                                             exc) from exc
        outputs = _symbolic_outputs(out_shape, self._symbolic_output_dtype(), self.name)
        flat: list[KerasTensor] = []
        map_symbolic(flat.append, outputs)
        Node(self, (inputs, *args), kwargs, flat)
        return outputs

    def _symbolic_shape_error(self, shape: Any, built_for: Any, exc: Exception) -> ValueError:
        built = f" (it was built for inputs of shape {built_for})" if built_for else ""
        return ValueError(
            f"Layer {self.name!r} ({type(self).__name__}) cannot be called on inputs of shape "
            f"{shape}{built}: {exc}"
        )

    def _symbolic_output_dtype(self) -> str:
        """The dtype of the symbolic outputs: the layer's compute dtype."""
        return self.compute_dtype

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
        if x.dtype.kind not in "biuf" and not is_float(x.dtype):  # bfloat16 is kind "V"
            raise TypeError(
                f"Layer {self.name!r} expects numeric input, got an array of dtype {x.dtype}."
            )
        if self.autocast and is_float(x.dtype) and x.dtype != self.compute_dtype:
            x = _cast(x, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for inputs of `input_shape` (`None` dims stay `None`).

        This base version raises `NotImplementedError`, as Keras's does; models that need the
        output shape of a layer without its own version infer it by running the layer.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_output_shape().")

    def _output_shape(self, input_shape: Shape) -> Shape:
        """`compute_output_shape` where the class defines it, else inferred by a run.

        The inferred shape comes from calling the layer (built first for `input_shape`) on
        zeros, and is remembered per input shape.
        """
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            return self.compute_output_shape(input_shape)
        return self._inferred_output_shape(input_shape)

    def _inferred_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape found by a run on zeros (built first), remembered per shape."""
        shape = _standardize_shape(input_shape)
        known = self._inferred_output_shapes.get(shape)
        if known is not None:
            return known
        if not self.built:
            self._maybe_build(shape)
        return self._infer_output_shape(shape)

    def _infer_output_shape(self, input_shape: Shape, *, inside_build: bool = False) -> Shape:
        """The output shape found by running the layer on zeros, in inference mode, untaped.

        Free dimensions are filled in (batch 1); when a dimension other than the batch is free,
        a second run with other sizes tells which output dimensions follow the free ones (they
        are None). `inside_build`: run `call` directly (the layer is building).
        """
        shape = _standardize_shape(input_shape)
        free_dims = any(d is None for d in shape[1:])
        runs = range(2 if free_dims else 1)
        probes = [
            tuple(
                d if d is not None else (_PROBE_BATCH[r] if i == 0 else _PROBE_DIM[r])
                for i, d in enumerate(shape)
            )
            for r in runs
        ]
        dtype = np.dtype(self.compute_dtype)
        if dtype.kind not in "biuf" and not is_float(dtype):
            dtype = np.dtype(np.float32)
        outputs = []
        outer = _call_context.training
        for probe in probes:
            try:
                zeros = np.zeros(probe, dtype)
                # Inference mode, so that no random generator (Dropout) moves and no state
                # changes; no tape, so that an enclosing training step records nothing.
                with no_record():
                    if inside_build:
                        _call_context.training = False
                        try:
                            kw = {"training": False} if self._call_takes_training else {}
                            y = self.call(Tensor(zeros), **kw)
                        finally:
                            _call_context.training = outer
                    else:
                        y = self(zeros, training=False)
            except Exception as exc:
                raise ValueError(
                    f"Could not infer the output shape of layer {self.name!r} "
                    f"({type(self).__name__}) for inputs of shape {shape}: calling it on zeros "
                    f"of shape {probe} raised {type(exc).__name__}: {exc}. Define "
                    "compute_output_shape(input_shape) on the layer."
                ) from exc
            if not isinstance(y, Tensor):
                raise TypeError(
                    f"Layer {self.name!r} ({type(self).__name__}) returned a "
                    f"{type(y).__name__}, not one Tensor; its output shape cannot be inferred. "
                    "Define compute_output_shape(input_shape) on the layer."
                )
            outputs.append(tuple(y.shape))
        first = outputs[0]
        if len(outputs) == 2:
            if len(outputs[1]) != len(first):
                raise ValueError(
                    f"Layer {self.name!r} returned outputs of different ranks for inputs of "
                    f"shapes {probes[0]} and {probes[1]}; its output shape cannot be inferred. "
                    "Define compute_output_shape(input_shape) on the layer."
                )
            result: Shape = tuple(a if a == b else None for a, b in zip(first, outputs[1],
                                                                        strict=True))
        elif shape and shape[0] is None and first and first[0] == probes[0][0]:
            result = (None, *first[1:])  # the batch axis stays free
        else:
            result = first
        self._inferred_output_shapes[shape] = result
        return result

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
        """Create a weight, track it, and return it as a `Variable`.

        Parameters
        ----------
        name : str, optional
            The Variable's name (Keras's `"gamma"`, `"kernel"`, ...).
        shape : tuple of ints
            Shape of the weight.
        initializer : str, dict, Initializer or callable, optional
            Default `"glorot_uniform"` for floating dtypes and `"zeros"` otherwise (Keras).
        regularizer, constraint : optional
            Identifiers for `numba_gn.params.regularizers` and
            `numba_gn.params.constraints`; stored on the Variable.
        trainable : bool, default True
            Whether the weight is trained (while the layer is trainable).
        dtype : dtype, optional
            Default: the layer's variable dtype.

        Notes
        -----
        Weights can be added in `__init__` or `build`, not once the layer is built.
        """
        if self.built:
            raise ValueError(
                f"Layer {self.name!r} is already built; weights can only be added in "
                "__init__() or build()."
            )
        dt = np.dtype(self.variable_dtype if dtype is None else dtype)
        if initializer is None:
            initializer = "glorot_uniform" if is_float(dt) else "zeros"
        # Named after the layer ("dense/kernel") even when created in __init__, as Keras.
        with name_scope(self.name, caller=self, parent=self._parent_path):
            variable = Variable(
                initializers.get(initializer),
                shape=tuple(shape),
                dtype=dt,
                trainable=bool(trainable) and self._trainable,
                name=name,
                regularizer=regularizer,
                constraint=constraint,
            )
        with self._build_lock:
            self._weights.append(variable)
            self._declared_trainable.append(bool(trainable))
        return variable

    @property
    def weights(self) -> list[Variable]:
        """Every weight: the layer's own, then its sublayers' in tracking order (Keras's order).

        The own weights are those created by `add_weight` and the Variables assigned to
        attributes, the trainable ones first; a Variable reachable twice is listed once.
        """
        out: list[Variable] = []
        seen: set[int] = set()
        for layer in self._flatten_layers():
            for w in layer._own_weights():
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def trainable_weights(self) -> list[Variable]:
        """The weights an optimizer updates (none while the layer is not trainable)."""
        if not self._trainable:
            return []
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """The other weights (all of them while the layer is not trainable)."""
        if not self._trainable:
            return self.weights
        return [w for w in self.weights if not w.trainable]

    # Keras 3 names the same lists "variables" as well (optimizer code is written against
    # `model.trainable_variables`). Keras's `variables` also holds its seed generators' states;
    # numba_gn's Dropout draws from a NumPy Generator, which is no Variable, so these lists are
    # exactly the weight lists.
    @property
    def variables(self) -> list[Variable]:
        """Every Variable of the layer: the same list as `weights`, in the same order.

        Keras 3 adds its seed generators' states (Dropout's) to this list; numba_gn's random
        layers keep their state in a NumPy Generator instead, so nothing is added.
        """
        return self.weights

    @property
    def trainable_variables(self) -> list[Variable]:
        """Keras 3's name for `trainable_weights`: the weights an optimizer updates.

        `optimizer.apply_gradients(zip(grads, model.trainable_variables))` works as in Keras.
        """
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[Variable]:
        """Keras 3's name for `non_trainable_weights` (all of them while not trainable)."""
        return self.non_trainable_weights

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights' values, in the order of `weights`."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight from a list of arrays, in the order of `weights`.

        All values are checked (count, numeric type, every shape) before any is assigned, so
        a failed call changes nothing. Values are cast to each weight's dtype.
        """
        if isinstance(weights, (np.ndarray, Tensor)) or not isinstance(weights, Sequence):
            raise TypeError(
                f"set_weights() on layer {self.name!r} takes a list of arrays, got "
                f"{type(weights).__name__}."
            )
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"You called `set_weights(weights)` on layer {self.name!r} with a weight list "
                f"of length {len(weights)}, but the layer was expecting "
                f"{len(own)} weights ({[w.name for w in own]})."
            )
        values = []
        for i, (w, value) in enumerate(zip(own, weights, strict=True)):
            try:
                arr = np.asarray(value.data if isinstance(value, Tensor) else value)
            except ValueError as exc:  # ragged nested lists
                raise ValueError(
                    f"set_weights() on layer {self.name!r}: value {i} for weight {w.name!r} "
                    f"is not an array ({exc}). No weight was changed."
                ) from None
            if arr.dtype.kind not in "biuf" and not is_float(arr.dtype):
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
        for w, arr in zip(own, values, strict=True):
            w.assign(arr)

    def count_params(self) -> int:
        """Total number of scalars in the weights (sublayers' included)."""
        return sum(math.prod(w.shape) for w in self.weights)

    def weight_paths(self) -> list[tuple[str, Variable]]:
        """`("conv2d_1/kernel", variable)` for every weight: the keys of saved weight files.

        In the order of `weights`. The layer's own weights go by their names; a
        sublayer's are prefixed by the sublayer's class and its rank among this layer's
        sublayers of that class (`conv2d`, `conv2d_1`, ...), as in Keras's weight files,
        not by its `name`: the same architecture built twice has the same paths.
        """
        out: list[tuple[str, Variable]] = []
        self._collect_weight_paths("", out, set(), {id(self)})
        return out

    def _collect_weight_paths(
        self,
        prefix: str,
        out: list[tuple[str, Variable]],
        seen_weights: set[int],
        seen_layers: set[int],
    ) -> None:
        for w in self._own_weights():
            if id(w) not in seen_weights:
                seen_weights.add(id(w))
                out.append((prefix + w.name, w))
        ranks: dict[str, int] = {}
        for layer in self._sublayers():
            if id(layer) in seen_layers:
                continue
            seen_layers.add(id(layer))
            base = to_snake_case(type(layer).__name__)
            n = ranks.get(base, 0)
            ranks[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            layer._collect_weight_paths(f"{prefix}{name}/", out, seen_weights, seen_layers)

    def stateless_call(
        self,
        trainable_variables: Sequence[Any],
        non_trainable_variables: Sequence[Any],
        *args: Any,
        return_losses: bool = False,
        **kwargs: Any,
    ) -> tuple:
        """Call the layer with the given values standing in for its weights (Keras's API).

        The values (Tensors, or arrays wrapped as Tensors) replace `trainable_weights`
        and `non_trainable_weights`, in order, for this one call; the weights themselves
        are untouched. On a tape the result is differentiable with respect to the given
        Tensors, which makes functional-style training and gradient checks of a whole layer
        possible. Not thread-safe with other calls of the same layer.

        The stand-ins replace the weights where this layer and the layers below it hold them
        as attributes (`self.kernel`); a weight held only inside a list or dict cannot be
        replaced, and is refused with a `ValueError`.

        Returns
        -------
        `(outputs, non_trainable_variables)`, plus the regularization losses evaluated on the
        given values when `return_losses` is true.
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
        # at the stand-ins for the duration of the call, in this layer and every one below it.
        # Set past the tracking, which would otherwise untrack the weights and track them
        # again in another place.
        swapped = [
            (layer, k, v)
            for layer in self._flatten_layers()
            for k, v in list(vars(layer).items())
            if id(v) in stand_in
        ]
        held = {id(v) for _, _, v in swapped}
        unheld = [w.path for w in weights if id(w) not in held]
        if unheld:
            raise ValueError(
                f"stateless_call() on layer {self.name!r}: weight(s) {unheld} are not held as "
                "layer attributes, so no value can stand in for them."
            )
        try:
            for layer, k, v in swapped:
                object.__setattr__(layer, k, stand_in[id(v)])
            outputs = self(*args, **kwargs)
        finally:
            for layer, k, v in swapped:
                object.__setattr__(layer, k, v)
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
        """Regularization penalties of the trainable weights (sublayers' too), current values.

        Each is a scalar Tensor; inside a `GradientTape` it is
        recorded, so `loss + sum(layer.losses)` differentiates the penalties too.
        """
        return [w.regularizer(w) for w in self.trainable_weights if w.regularizer is not None]

    # -- configuration ---------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The base configuration: `name`, `trainable` and the Keras `dtype` policy dict."""
        return {
            "name": self.name,
            "trainable": self._trainable,
            "dtype": self._dtype_policy.serialize(),
        }

    @classmethod
    def _config_keys(cls) -> frozenset[str]:
        """Constructor keywords of `cls` and its bases up to `Layer`."""
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
        """Create a layer from `get_config` output (ours or Keras's).

        Every key must be a constructor argument (`TypeError` naming the unknown ones).
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
        # getattr: a layer whose __init__ failed half-way is still shown in tracebacks.
        built = getattr(self, "built", False)
        state = f"built for {getattr(self, '_build_shape', None)}" if built else "not built"
        name = getattr(self, "name", "?")
        return f"<{type(self).__name__} name={name}, {state}>"


def _is_shape(value: object) -> bool:
    return isinstance(value, (tuple, list)) and all(
        d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool)) for d in value
    )


def _symbolic_outputs(shape: Any, dtype: str, layer_name: str) -> Any:
    """Symbolic tensors for an output shape: one shape, or a list, tuple or dict of shapes."""
    if _is_shape(shape):
        return KerasTensor(tuple(shape), dtype)
    if isinstance(shape, (list, tuple)) and shape and all(_is_shape(s) for s in shape):
        return [KerasTensor(tuple(s), dtype) for s in shape]
    if isinstance(shape, dict) and all(_is_shape(s) for s in shape.values()):
        return {k: KerasTensor(tuple(s), dtype) for k, s in shape.items()}
    raise TypeError(
        f"Layer {layer_name!r}: compute_output_shape() returned {shape!r}, which is neither a "
        "shape nor a list or dict of shapes."
    )


# What may hold a layer or Variable: anything else is set without looking inside.
_TRACKABLE_KINDS: tuple[type, ...] = (Layer, Variable, list, tuple, dict)


def _splice(
    items: list[Any], gone: set[int], new: list[Any], key: Callable[[Any], int]
) -> list[Any]:
    """`items` without those whose key is in `gone`, `new` in place of the first of them.

    With nothing gone, `new` goes last.
    """
    out: list[Any] = []
    placed = False
    for item in items:
        if key(item) in gone:
            if not placed:
                out.extend(new)
                placed = True
            continue
        out.append(item)
    if not placed:
        out.extend(new)
    return out
