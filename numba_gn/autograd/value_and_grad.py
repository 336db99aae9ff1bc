"""`value_and_grad`: a function's value and its gradient in one call, after `jax.value_and_grad`.

JAX differentiates with respect to a function's arguments; numba_gn's tape differentiates with
respect to Variables (and watched Tensors), so `value_and_grad` takes the Variables to
differentiate as `variables=` instead of `argnums=`. Without `variables=`, it differentiates
with respect to the trainable Variables the call used, as a `GradientTape` watches them, and
returns the gradients paired with their Variables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from numba_gn import _checks
from numba_gn.autograd.tape import GradientTape, _flatten
from numba_gn.autograd.tensor import Tensor

__all__ = ["value_and_grad"]


def value_and_grad(
    fn: Callable[..., Any], variables: Any = None, *, has_aux: bool = False
) -> Callable[..., tuple[Any, Any]]:
    """Wrap `fn` so that a call returns its value and the gradient of that value.

    `g = value_and_grad(fn, variables)` returns a function with `fn`'s arguments:
    `value, grads = g(*args, **kwargs)` runs `fn(*args, **kwargs)` once on a
    `GradientTape` and differentiates the scalar it returns.

    Parameters
    ----------
    fn : callable
        Returns a scalar: a 0-d floating-point Tensor (a loss), computed with numba_gn ops,
        layers or models. With `has_aux=True`, returns a pair `(scalar, aux)`.
    variables : Variable, Tensor, or a list/tuple/dict of them, optional
        What to differentiate with respect to, watched explicitly (so a non-trainable Variable
        or a plain Tensor listed here gets its gradient too, and trainable Variables that are
        not listed are treated as constants). `grads` then has the structure of `variables`:
        one array per entry, in the same order. Checked when `value_and_grad` is called; an
        empty list is a `ValueError` (an unbuilt model's `trainable_variables` is empty).
        When omitted, every trainable Variable the call uses is watched, as `GradientTape`
        does, and `grads` pairs each gradient with its Variable (see Returns).
    has_aux : bool, default False
        `fn` returns `(value, aux)`; `g` then returns `((value, aux), grads)`, as in JAX.
        `aux` is passed through untouched and not differentiated.

    Returns
    -------
    A function `g(*args, **kwargs) -> (value, grads)`. `value` is the Tensor `fn` returned.
    With `variables=`, `grads` holds one ndarray per Variable, with its shape and dtype, in the
    structure of `variables` (a single Variable gives a single array). Without it, `grads` is a
    list of `(gradient, variable)` pairs, in the order the call first used each trainable
    Variable (`GradientTape.watched_variables`): the form `optimizer.apply_gradients` takes.

    Raises
    ------
    TypeError
        `fn` is not callable; `variables` holds something other than Tensors, or a Tensor that
        is not floating-point (checked here); when `g` is called, `fn` returns something other
        than a Tensor (or a pair with `has_aux=True`) or an integer Tensor.
    ValueError
        `variables` is empty (checked here); when `g` is called, `fn` returns a Tensor that is
        not 0-d.

    Notes
    -----
    A Variable the value does not depend on (unused by the call, or reached only through
    `stop_gradient` or non-differentiable paths) gets a gradient of zeros, not None, so the
    gradients can always be stacked or packed.

    Gradients are of first order, and `fn` runs once per call, on the values the Variables
    hold at that time. The Variables are read, never written.

    Examples
    --------
    >>> import numpy as np, numba_gn
    >>> from numba_gn import autograd as ag
    >>> w = numba_gn.Variable(np.array([1.0, 2.0]), name="w")
    >>> loss_and_grad = ag.value_and_grad(lambda x: ag.sum(w * w * x), [w])
    >>> value, (dw,) = loss_and_grad(3.0)
    >>> float(value), dw.tolist()
    (15.0, [6.0, 12.0])
    """
    if not callable(fn):
        raise TypeError(
            f"value_and_grad() needs a callable `fn`, got fn of type {type(fn).__name__}."
        )
    has_aux = _checks.boolean(has_aux, "has_aux")
    if variables is not None:
        _check_variables(variables)
    name = getattr(fn, "__name__", type(fn).__name__)

    def value_and_grad_fn(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        # With explicit variables only those are watched: the tape then records nothing that
        # cannot reach them, and the gradients' order is the caller's.
        with GradientTape(watch_accessed_variables=variables is None) as tape:
            if variables is not None:
                tape.watch(variables)
            out = fn(*args, **kwargs)
        value, aux = _split_output(out, has_aux, name)
        if variables is not None:
            grads = tape.gradient(value, variables, unconnected_gradients="zero")
        else:
            used = list(tape.watched_variables())
            grads = list(
                zip(tape.gradient(value, used, unconnected_gradients="zero"), used, strict=True)
            )
        return ((value, aux) if has_aux else value), grads

    # `updated=()`: a callable object's attributes (a model's layers) are not copied over.
    functools.update_wrapper(value_and_grad_fn, fn, updated=())
    value_and_grad_fn.__doc__ = f"Value and gradient of {name}." + (
        f"\n\n{fn.__doc__}" if getattr(fn, "__doc__", None) else ""
    )
    return value_and_grad_fn


def _check_variables(variables: Any) -> None:
    flat = _flatten(variables, "value_and_grad() `variables`")
    if not flat:
        raise ValueError(
            "value_and_grad() got an empty `variables`: there is nothing to differentiate "
            "with respect to. A model's `trainable_variables` is empty until the model is "
            "built (call it once, or build it with an input shape)."
        )
    for t in flat:
        if t.dtype.kind != "f":
            what = f"Variable {t.name!r}" if t._is_variable else "a Tensor"
            raise TypeError(
                f"value_and_grad() differentiates floating-point Tensors only; `variables` "
                f"holds {what} of dtype {t.dtype}."
            )


def _split_output(out: Any, has_aux: bool, name: str) -> tuple[Tensor, Any]:
    """The differentiated value (checked: a 0-d float Tensor) and the auxiliary output."""
    aux = None
    if has_aux:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(
                f"value_and_grad(has_aux=True): {name} must return a pair (value, aux), got "
                f"{type(out).__name__}."
            )
        out, aux = out
    if not isinstance(out, Tensor):
        raise TypeError(
            f"value_and_grad(): {name} must return a scalar Tensor, got {type(out).__name__}. "
            "Compute the value with numba_gn ops (a Python or NumPy number has no gradient)."
        )
    if out.ndim != 0:
        raise ValueError(
            f"value_and_grad(): {name} must return a scalar (0-d) Tensor, got shape "
            f"{out.shape}. Reduce it first, e.g. with numba_gn.autograd.sum or mean."
        )
    if out.dtype.kind != "f":
        raise TypeError(
            f"value_and_grad(): {name} must return a floating-point Tensor, got dtype "
            f"{out.dtype}."
        )
    return out, aux
