"""Automatic fusion of GroupNorm + residual add + activation in the models that run graphs.

A `GroupNormalization` layer whose output goes only to an `Activation` layer, or only to a
two-input `Add` whose output goes only to an `Activation` layer, is run as one fused op,
`numba_gn.autograd.group_norm(x, ..., residual=, activation=)`: one pass over the data
forward and one backward, and neither GroupNorm's output nor the sum is stored. The models
([Sequential][numba_gn.models.Sequential] and functional models) find these chains when they
first run and replace the layers' calls by a [FusedChain][numba_gn.models._fusion.FusedChain].

What fuses (each condition keeps the fused result the result of the layers, up to rounding):

* the layers are numba_gn's own `GroupNormalization`, `Add` and `Activation` (subclasses
  that override `call` or `__call__` run as they are);
* the activation is one the fused op has: "linear", "relu", "leaky_relu", "silu"/"swish",
  "sigmoid" or "gelu" (not "tanh" or "softmax", nor a callable of one's own);
* GroupNorm's output (and the sum) is used by nothing else: not by a second layer, not as a
  model output; GroupNorm is called without a `mask`;
* the dtype policies compute in float32 or float64 with no cast between the layers (the
  layers' compute dtypes agree; no "mixed_*" policy on GroupNorm). With 16-bit data the layers
  round GroupNorm's output before the activation, which the fused op does not do, so 16-bit
  models are never fused.

The last condition is checked again on every call against the data's dtype: a call whose data
would be cast between the layers (float64 data in a float32 model, say) or whose residual has
another dtype or shape (Add would broadcast it) runs the layers one by one, as unfused.

Fusion changes no layer, weight or config; it is only how a model runs its layers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from numba_gn.autograd import Tensor
from numba_gn.autograd import group_norm as _group_norm
from numba_gn.layers import activations
from numba_gn.layers.base import Layer
from numba_gn.layers.core import Activation
from numba_gn.layers.group_normalization import GroupNormalization
from numba_gn.layers.merging import Add, _Merge

__all__ = ["FusedChain", "activation_name", "is_add", "is_group_norm", "plan_sequence", "run_with"]

_T = TypeVar("_T")

#: The `Activation` functions the fused op computes, by the name it takes.
_FUSED_ACTIVATIONS: dict[Any, str] = {
    activations.linear: "linear",
    activations.relu: "relu",
    activations.leaky_relu: "leaky_relu",
    activations.silu: "silu",
    activations.sigmoid: "sigmoid",
    activations.gelu: "gelu",
}

# The dtypes the fused op computes in exactly as the layers do (see the module docstring).
_FUSIBLE = (np.dtype(np.float32), np.dtype(np.float64))

# The keyword defaults of `activations.leaky_relu` and `activations.gelu`, as `Activation`
# calls them: Keras's slope 0.2, and the exact erf form of GELU.
_NEGATIVE_SLOPE = 0.2


def is_group_norm(layer: object) -> bool:
    """Whether `layer` is a `GroupNormalization` that runs as numba_gn's own."""
    cls = type(layer)
    return (
        isinstance(layer, GroupNormalization)
        and cls.call is GroupNormalization.call
        and cls.__call__ is Layer.__call__
    )


def is_add(layer: object) -> bool:
    """Whether `layer` is an `Add` that runs as numba_gn's own."""
    cls = type(layer)
    return (
        isinstance(layer, Add)
        and cls._merge_function is Add._merge_function
        and cls.call is _Merge.call
        and cls.__call__ is Layer.__call__
    )


def activation_name(layer: object) -> str | None:
    """The fused op's name for an `Activation` layer's function; None if it has none."""
    cls = type(layer)
    if (
        not isinstance(layer, Activation)
        or cls.call is not Activation.call
        or cls.__call__ is not Layer.__call__
    ):
        return None
    try:
        return _FUSED_ACTIVATIONS.get(layer.activation)
    except TypeError:  # an unhashable callable
        return None


def _computes_in(layer: Layer | None, dtype: np.dtype) -> bool:
    """Whether `layer` leaves float input of `dtype` as it is (no cast to its compute dtype)."""
    return layer is None or not layer.autocast or np.dtype(layer.compute_dtype) == dtype


class FusedChain:
    """GroupNorm (+ Add) + Activation layers run as one fused op.

    Called as the first layer is, on GroupNorm's input (and the residual, Add's other input,
    when there is an Add); returns what the last layer would. A call the fused op cannot
    compute exactly as the layers do (see `numba_gn.models._fusion`) runs the layers one by
    one instead.

    Args:
        gn: The `GroupNormalization` layer.
        add: The `Add` layer, or None.
        act: The `Activation` layer.
        activation: The fused op's name of `act`'s function (`activation_name`).
        gn_first: Whether GroupNorm's output is Add's first input (else the residual is).
    """

    __slots__ = ("gn", "add", "act", "activation", "gn_first", "name")

    def __init__(
        self,
        gn: GroupNormalization,
        add: Add | None,
        act: Activation,
        activation: str,
        gn_first: bool = True,
    ) -> None:
        self.gn = gn
        self.add = add
        self.act = act
        self.activation = activation
        self.gn_first = gn_first
        # How messages name the chain, in place of a layer name.
        self.name = "+".join(layer.name for layer in (gn, add, act) if layer is not None)

    @property
    def names(self) -> tuple[str, str | None, str]:
        """`(GroupNorm's name, Add's name or None, Activation's name)`."""
        return (self.gn.name, None if self.add is None else self.add.name, self.act.name)

    def statically_fusible(self) -> bool:
        """Whether the layers' dtype policies let data of their compute dtype run fused."""
        dtype = np.dtype(self.gn.compute_dtype)
        return (
            dtype in _FUSIBLE
            and not self.gn.dtype_policy.is_mixed
            and _computes_in(self.add, dtype)
            and _computes_in(self.act, dtype)
        )

    def __call__(self, x: Any, residual: Any = None) -> Any:
        """The last layer's output for GroupNorm's input `x` (and Add's other input)."""
        y = self._fused(x, residual)
        if y is not None:
            return y
        gn, add, act = self.gn, self.add, self.act
        h = gn(x)
        if add is not None:
            h = add([h, residual] if self.gn_first else [residual, h])
        return act(h)

    def _fused(self, x: Any, residual: Any) -> Tensor | None:
        """The fused op's result, or None when it would not match the layers' result."""
        gn, add, act = self.gn, self.add, self.act
        if not (gn.built and act.built and (add is None or add.built)):
            return None  # the layers build on their own first calls
        if not isinstance(x, Tensor):
            return None
        dtype = x.dtype
        if dtype not in _FUSIBLE:
            return None  # integers (GroupNorm casts them) and 16-bit floats
        if gn.dtype_policy.is_mixed and dtype != np.dtype(gn.compute_dtype):
            return None  # GroupNorm casts its output
        if not _computes_in(act, dtype):
            return None
        if add is not None:
            if not isinstance(residual, Tensor) or not _computes_in(add, dtype):
                return None
            if residual.dtype != dtype or residual.shape != x.shape:
                return None  # Add would promote or broadcast
        spec = gn.input_spec
        if spec is not None:
            spec.check(x.shape, gn.name)
        # As GroupNormalization.call computes it (float input, no mask).
        axes = gn._axes
        axis = axes[0] if len(axes) == 1 else axes
        return _group_norm(
            x,
            gn._groups or -1,
            gn.gamma,
            gn.beta,
            axis=axis,
            epsilon=gn.epsilon,
            residual=residual,
            activation=self.activation,
            negative_slope=_NEGATIVE_SLOPE,
            approximate=False,
        )

    def __repr__(self) -> str:
        return f"<FusedChain {self.names}>"


def plan_sequence(
    calls: Sequence[tuple[Layer, bool]],
) -> tuple[list[tuple[Any, bool]], list[tuple[str, str | None, str]]]:
    """A stack of layer calls with each fusible GroupNorm + Activation pair made one call.

    Args:
        calls: `(layer, takes_training)` per layer, in order (`Sequential`'s list).

    Returns:
        The calls to run instead (a `FusedChain` takes no `training`), and the names of each
        fused chain (`FusedChain.names`).
    """
    out: list[tuple[Any, bool]] = []
    names: list[tuple[str, str | None, str]] = []
    i = 0
    while i < len(calls):
        layer, takes_training = calls[i]
        if i + 1 < len(calls) and is_group_norm(layer):
            act = calls[i + 1][0]
            name = activation_name(act)
            if name is not None:
                chain = FusedChain(layer, None, act, name)  # type: ignore[arg-type]
                if chain.statically_fusible():
                    out.append((chain, False))
                    names.append(chain.names)
                    i += 2
                    continue
        out.append((layer, takes_training))
        i += 1
    return out, names


class _State(threading.local):
    # True while a model compiled with fuse=False runs: the models inside it do not fuse
    # either, so that `fuse=False` compares against the whole model unfused.
    off = False


_STATE = _State()


def run_with(fuse: bool, run: Callable[[bool], _T]) -> _T:
    """`run(fuse_now)` for a model whose own setting is `fuse`.

    `fuse_now` is false when `fuse` is, or inside a model whose setting is false; while a
    model with `fuse=False` runs, the models it calls do not fuse.
    """
    state = _STATE
    if fuse:
        return run(not state.off)
    outer = state.off
    state.off = True
    try:
        return run(False)
    finally:
        state.off = outer
