"""`gradcheck`: compare tape gradients with central finite differences, in float64.

Public so that authors of new `Function` subclasses can test their
`backward` the way the built-in ops are tested (PyTorch's defaults: eps 1e-6, atol 1e-5,
rtol 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from numba_gn.autograd.tape import GradientTape, no_record
from numba_gn.autograd.tensor import Tensor

__all__ = ["gradcheck"]


def gradcheck(
    f: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check the gradient of `f` at `inputs` against central finite differences.

    Parameters
    ----------
    f : callable
        Takes one Tensor per input and returns a Tensor.
    inputs : sequence of array-likes or Tensors
        Copied and cast to float64 (finite differences need double precision).
    eps, atol, rtol : float
        Step of the differences; an element passes when
        `|analytic - numeric| <= atol + rtol * |numeric|`.
    raise_exception : bool, default True
        Raise `AssertionError` on a mismatch (naming the worst element) instead of
        returning False.
    seed : int, default 0
        Seed of the random cotangent `r`.

    Returns
    -------
    True when every element of every input's gradient matches.

    Notes
    -----
    The analytic side is the tape's gradient of `sum(f(*inputs) * r)` for a fixed random
    `r` (passed as `output_gradients`), so every output element is weighted differently;
    the numeric side perturbs each input element by `±eps`. Cost: two calls of `f` per
    input element, so keep the inputs small.
    """
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = (inputs,)
    # C order so that flat views of the copies perturb the arrays the Tensors wrap.
    arrays = [
        np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64, order="C")
        for x in inputs
    ]
    tensors = [Tensor(a) for a in arrays]  # share memory with `arrays`: perturbing them works

    with GradientTape() as tape:
        tape.watch(tensors)
        out = f(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor, got {type(out).__name__}.")
    r = np.random.default_rng(seed).standard_normal(out.shape)
    analytic = tape.gradient(out, tensors, output_gradients=r, unconnected_gradients="zero")

    def objective() -> float:
        with no_record():
            y = f(*tensors)
        return float(np.sum(np.asarray(y.data, dtype=np.float64) * r))

    for k, (a, ga) in enumerate(zip(arrays, analytic, strict=True)):
        numeric = np.empty_like(a)
        flat = a.reshape(-1)  # a view: `a` is a fresh C-contiguous copy
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = objective()
            flat[i] = orig - eps
            minus = objective()
            flat[i] = orig
            numeric.flat[i] = (plus - minus) / (2 * eps)
        message = _compare(k, np.asarray(ga, dtype=np.float64), numeric, atol, rtol)
        if message is not None:
            if raise_exception:
                raise AssertionError(message)
            return False
    return True


def _compare(
    k: int, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float
) -> str | None:
    """None when the gradients agree, else a message naming the worst element."""
    diff = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    bad = ~(diff <= allowed)  # NaN anywhere counts as a mismatch
    if not bad.any():
        return None
    excess = np.where(np.isnan(diff), np.inf, diff - allowed)
    idx = np.unravel_index(int(np.argmax(excess)), analytic.shape) if analytic.ndim else ()
    return (
        f"gradcheck: gradient of input {k} (shape {analytic.shape}) mismatches at index "
        f"{tuple(int(i) for i in idx)}: analytic {analytic[idx]!r}, numeric {numeric[idx]!r} "
        f"(|diff| {diff[idx]:.3g} > allowed {allowed[idx]:.3g}); "
        f"{int(bad.sum())} of {bad.size} elements out of tolerance."
    )
