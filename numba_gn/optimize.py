"""Fit Variables with SciPy's optimisers: `minimize`, around `scipy.optimize.minimize`.

SciPy's optimisers work on one float64 vector `x`; numba_gn models hold their weights in
Variables. `minimize` packs the Variables into `x`, hands SciPy a function that writes a point
back into the Variables and returns the loss and its gradient (`value_and_grad`, so one forward
and one backward pass per evaluation), and writes the optimum into the Variables at the end.
Full-batch quasi-Newton methods such as L-BFGS often fit small models in far fewer loss
evaluations than a first-order optimiser needs steps.

This module imports `scipy.optimize`, so it is imported explicitly (`import numba_gn.optimize`
or `from numba_gn.optimize import minimize`); `import numba_gn` does not import it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize as _sp_optimize
from scipy.optimize import OptimizeResult

from numba_gn import _checks
from numba_gn.autograd.tape import no_record
from numba_gn.autograd.tensor import Tensor
from numba_gn.autograd.value_and_grad import _split_output, value_and_grad
from numba_gn.params import constraints as _constraints
from numba_gn.params.variable import Variable

__all__ = ["minimize"]

# SciPy's method names (lower case) by what they can use. A callable `method` (a custom
# optimiser) is given the gradient and any bounds, and left to decide.
_GRADIENT_FREE = frozenset({"nelder-mead", "powell", "cobyla", "cobyqa"})
_TAKES_BOUNDS = frozenset(
    {"nelder-mead", "powell", "l-bfgs-b", "tnc", "slsqp", "trust-constr", "cobyla", "cobyqa"}
)
_NEEDS_HESSIAN = frozenset({"dogleg", "trust-ncg", "trust-krylov", "trust-exact"})
_BOUNDED_NAMES = "L-BFGS-B, TNC, SLSQP, trust-constr, Powell, Nelder-Mead or COBYLA"

_STOPPED = "`callback` raised `StopIteration`."


def minimize(
    loss_fn: Callable[[], Tensor],
    variables: Variable | Sequence[Variable],
    method: str | Callable[..., Any] | None = "L-BFGS-B",
    *,
    bounds: Any = None,
    tol: float | None = None,
    options: Mapping[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    use_constraints: bool = True,
) -> OptimizeResult:
    """Minimise `loss_fn()` over `variables` with `scipy.optimize.minimize`; write the optimum.

    Each evaluation writes SciPy's point into the Variables (cast to each Variable's dtype),
    calls `loss_fn()` on a `GradientTape`, and returns the loss and the gradient with respect
    to `variables`, packed into one float64 vector in the order of `variables`
    (`jac=True` in SciPy's terms). At the end, the point SciPy returns (`result.x`) is written
    into the Variables, also when SciPy stops early (its iteration limit, a failed line search,
    or `callback` raising `StopIteration`: `result.message` then says so).

    Parameters
    ----------
    loss_fn : callable
        Takes no arguments and returns the loss, a 0-d floating-point Tensor, computed from
        the Variables with numba_gn ops, layers or models (a closure over the data:
        `lambda: loss(y, model(x))`). It is minimised as it is: add regularisation terms
        such as `model.losses` to it if they are wanted.
    variables : Variable or list/tuple of Variables
        What to fit, for example `model.trainable_variables`: trainable, floating-point
        Variables, each listed once. Other Variables the loss uses stay constant.
    method : str or callable, default "L-BFGS-B"
        A `scipy.optimize.minimize` method. Gradient methods (L-BFGS-B, BFGS, CG, TNC,
        SLSQP, trust-constr, Newton-CG) get the tape's gradient (Newton-CG's Hessian-vector
        products are then finite differences of the gradient, with steps too small for float32
        Variables: use it with float64 ones); gradient-free ones
        (Nelder-Mead, Powell, COBYLA, COBYQA) get the loss alone and no backward pass runs.
        Methods that need the Hessian (dogleg, trust-ncg, trust-krylov, trust-exact) are a
        `ValueError`: the tape gives first-order gradients only. None picks as SciPy does
        (L-BFGS-B with bounds, BFGS without).
    bounds : optional
        Box bounds per Variable: a list with one entry per Variable (or the entry alone when
        `variables` is a single Variable). An entry is None (unbounded) or a pair `(lo, hi)`
        whose sides are None (unbounded), a number for every element, or an array broadcastable
        to the Variable's shape (one bound per element). Needs a method that takes bounds.
    tol : float, optional
        Passed to SciPy (its meaning depends on the method).
    options : dict, optional
        Method options passed to SciPy, such as `{"maxiter": 200}`.
    callback : callable, optional
        Called by SciPy after each iteration, with SciPy's conventions: `callback(xk)` with the
        packed vector, or `callback(intermediate_result)` (an `OptimizeResult` with `x` and
        `fun`) when its only parameter has that name. The Variables hold the iterate while it
        runs, so the callback can evaluate the model; raising `StopIteration` ends the run, and
        that iterate is written back (for every method, including those, such as TNC, that
        SciPy does not stop itself).
    use_constraints : bool, default True
        Turn the Variables' constraints into bounds: `NonNeg` becomes a lower bound of 0,
        combined with `bounds` (the tighter bound wins). Other constraints (`MaxNorm`,
        `MinMaxNorm`, `UnitNorm`, custom ones) are not box bounds and are a `ValueError`;
        False ignores every constraint (the result may then violate them).

    Returns
    -------
    SciPy's `OptimizeResult`: `x` is the packed float64 vector (the Variables' elements in
    order, each raveled in C order), `fun` the final loss, `jac` the packed gradient (for
    gradient methods), `nfev` the number of loss evaluations, `nit`, `success`, `status`,
    `message`.

    Raises
    ------
    TypeError
        `loss_fn` or `callback` is not callable, `variables` holds something other than a
        Variable or a non-float Variable, `method` is not a string or callable, `options` is
        not a dict, `use_constraints` not a bool; `loss_fn` returns something other than a
        floating-point Tensor.
    ValueError
        `variables` is empty, repeats a Variable or holds a non-trainable one; `bounds` does not
        fit the Variables (wrong count, unbroadcastable shape, NaN, `lo > hi`); a constraint
        that is not a box bound with `use_constraints=True`; bounds with a method that cannot
        take them; a method that needs the Hessian; `loss_fn` returns a non-scalar Tensor.

    Notes
    -----
    A failing call changes nothing: argument errors are raised before any Variable is written,
    and if `loss_fn`, `callback` or SciPy raises (or the run is interrupted), the Variables get
    their values from before the call back, and the exception propagates.

    A starting point outside the bounds is moved onto them before SciPy starts (L-BFGS-B would
    do so itself). SciPy works in float64; with float32 Variables every point is rounded to
    float32 and the loss and gradient are float32-accurate, which limits how tightly a
    quasi-Newton method converges: use float64 Variables (layers with `dtype="float64"`) for
    tight tolerances.

    Evaluations run with every enclosing `GradientTape` paused: the fit itself is not
    differentiable and is not recorded.
    """
    if not callable(loss_fn):
        raise TypeError(
            f"minimize() needs a callable `loss_fn` (no arguments, returns a scalar Tensor), "
            f"got loss_fn of type {type(loss_fn).__name__}."
        )
    single = isinstance(variables, Tensor)
    vars_ = _check_variables(variables)
    meth = _check_method(method)
    use_constraints = _checks.boolean(use_constraints, "use_constraints")
    if tol is not None:
        tol = _checks.real(tol, "tol", low=0.0)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(
            f"`options` must be a dict of method options or None, got {type(options).__name__}."
        )
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable or None, got {type(callback).__name__}.")

    lower, upper, source = _bounds(vars_, bounds, single, use_constraints)
    has_bounds = source is not None
    if meth is None:  # SciPy's own choice (without constraints)
        method = meth = "L-BFGS-B" if has_bounds else "BFGS"
        meth = meth.lower()
    if has_bounds and meth != "_custom" and meth not in _TAKES_BOUNDS:
        raise ValueError(
            f"method={method!r} cannot take bounds (SciPy would ignore them), but {source}. "
            f"Use a method that takes bounds ({_BOUNDED_NAMES})"
            + (", or pass use_constraints=False to ignore the constraints." if "constraint"
               in source else ".")
        )

    packer = _Packer(vars_)
    x0 = packer.pack()
    if has_bounds:
        x0 = np.clip(x0, lower, upper)
    saved = [v.data.copy() for v in vars_]
    run = _Run(loss_fn, vars_, packer, gradient=meth not in _GRADIENT_FREE)
    try:
        try:
            result = _sp_optimize.minimize(
                run.fun,
                x0,
                jac=run.gradient or None,
                method=method,
                bounds=_sp_optimize.Bounds(lower, upper) if has_bounds else None,
                tol=tol,
                options=None if options is None else dict(options),
                callback=None if callback is None else run.wrap_callback(callback),
            )
        except StopIteration:
            # SciPy stops on its own for most methods; for the others (TNC) the exception
            # comes through, and the run ends at the callback's iterate all the same.
            if not run.stop_requested:
                raise
            result = run.stopped_result()
        packer.unpack(np.asarray(result.x, dtype=np.float64))
    except BaseException:
        for v, old in zip(vars_, saved, strict=True):
            np.copyto(v.data, old)
        raise
    return result


# -- arguments ------------------------------------------------------------------------------------


def _check_variables(variables: Any) -> list[Variable]:
    if isinstance(variables, Tensor):
        variables = [variables]
    elif not isinstance(variables, (list, tuple)):
        raise TypeError(
            "minimize() `variables` must be a Variable or a list/tuple of Variables, got "
            f"{type(variables).__name__}."
        )
    if not variables:
        raise ValueError(
            "minimize() got an empty `variables`: there is nothing to fit. A model's "
            "`trainable_variables` is empty until the model is built (call it once, or build "
            "it with an input shape)."
        )
    seen: set[int] = set()
    for i, v in enumerate(variables):
        if not isinstance(v, Variable):
            raise TypeError(
                f"minimize() writes the optimum into `variables`, so they must be Variables; "
                f"variables[{i}] is a {type(v).__name__}."
            )
        if id(v) in seen:
            raise ValueError(f"minimize() `variables` lists Variable {v.path!r} twice.")
        seen.add(id(v))
        if v.dtype.kind != "f":
            raise TypeError(
                f"minimize() fits floating-point Variables only; {v.path!r} has dtype {v.dtype}."
            )
        if not v.trainable:
            raise ValueError(
                f"minimize() got the non-trainable Variable {v.path!r}; pass trainable "
                "Variables only (`model.trainable_variables`), or set `trainable = True` on it "
                "first to fit it."
            )
    if sum(v.size for v in variables) == 0:
        raise ValueError("minimize() `variables` hold no elements: there is nothing to fit.")
    return list(variables)


def _check_method(method: Any) -> str | None:
    """The lower-case method name, "_custom" for a callable, None for SciPy's default."""
    if method is None:
        return None
    if callable(method):
        return "_custom"
    if not isinstance(method, str):
        raise TypeError(
            f"`method` must be a scipy.optimize.minimize method name, a callable or None, got "
            f"{type(method).__name__}."
        )
    meth = method.lower()
    if meth in _NEEDS_HESSIAN:
        raise ValueError(
            f"method={method!r} needs the Hessian, and numba_gn's autograd computes first-order "
            "gradients only. Use L-BFGS-B, BFGS, CG, TNC, SLSQP, trust-constr or Newton-CG "
            "(which takes Hessian-vector products by finite differences of the gradient)."
        )
    return meth


def _bounds(
    variables: list[Variable], bounds: Any, single: bool, use_constraints: bool
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Packed lower and upper bounds, and what set the first finite one (None: unbounded)."""
    n = len(variables)
    if bounds is None:
        entries: list[Any] = [None] * n
    elif single:
        entries = [bounds]
    elif isinstance(bounds, (list, tuple)):
        if len(bounds) != n:
            raise ValueError(
                f"`bounds` needs one entry per Variable (None or a (lo, hi) pair): got "
                f"{len(bounds)} entries for {n} Variables."
            )
        entries = list(bounds)
    else:
        raise TypeError(
            "`bounds` must be a list with one entry per Variable (None or a (lo, hi) pair), "
            f"got {type(bounds).__name__}."
        )
    lows, highs = [], []
    source = None
    for i, (v, entry) in enumerate(zip(variables, entries, strict=True)):
        where = f"bounds[{i}]" if not single else "bounds"
        lo, hi = _entry(entry, v, where)
        if np.isfinite(lo).any() or np.isfinite(hi).any():
            source = source or f"`bounds` are given for Variable {v.path!r}"
        if use_constraints:
            floor = _constraint_floor(v)
            if floor is not None:
                lo = np.maximum(lo, floor)
                source = source or f"Variable {v.path!r} has a NonNeg constraint"
        if (lo > hi).any():
            raise ValueError(
                f"{where}: the lower bound exceeds the upper bound for Variable {v.path!r}"
                + (" (its NonNeg constraint sets the lower bound to 0)." if use_constraints
                   and _constraint_floor(v) is not None else ".")
            )
        lows.append(lo.ravel())
        highs.append(hi.ravel())
    return np.concatenate(lows), np.concatenate(highs), source


def _entry(entry: Any, v: Variable, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One Variable's `(lo, hi)` entry as two float64 arrays of its shape (+-inf: none)."""
    if entry is None:
        entry = (None, None)
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
        raise TypeError(
            f"{where} must be None or a (lo, hi) pair for Variable {v.path!r}, got "
            f"{_checks.show(entry)}."
        )
    sides = []
    for side, default in zip(entry, (-np.inf, np.inf), strict=True):
        if side is None:
            sides.append(np.full(v.shape, default))
            continue
        try:
            arr = np.asarray(side, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: a bound must be None, a number or an array of numbers, got "
                f"{_checks.show(side)}."
            ) from None
        if np.isnan(arr).any():
            raise ValueError(f"{where}: a bound is NaN (use None or +-inf for no bound).")
        try:
            sides.append(np.array(np.broadcast_to(arr, v.shape)))
        except ValueError:
            raise ValueError(
                f"{where}: a bound of shape {arr.shape} does not broadcast to Variable "
                f"{v.path!r} of shape {v.shape}."
            ) from None
    return sides[0], sides[1]


def _constraint_floor(v: Variable) -> float | None:
    """0.0 for a NonNeg constraint, None for none; any other constraint is a ValueError."""
    c = v.constraint
    # Exact types: a subclass may project differently, and only these two are known boxes.
    if c is None or type(c) is _constraints.Constraint:
        return None
    if type(c) is _constraints.NonNeg:
        return 0.0
    raise ValueError(
        f"Variable {v.path!r} has the constraint {c!r}, which is not a box bound: SciPy's bounds "
        "cannot express it (only NonNeg maps onto them, as a lower bound of 0). Pass "
        "use_constraints=False to ignore the Variables' constraints (the result may violate "
        "them)."
    )


# -- the run --------------------------------------------------------------------------------------


class _Packer:
    """Moves values between the Variables and one float64 vector, in the Variables' order."""

    def __init__(self, variables: list[Variable]) -> None:
        self.variables = variables
        ends = np.cumsum([v.size for v in variables])
        self.slices = [slice(int(e - v.size), int(e)) for v, e in zip(variables, ends,
                                                                       strict=True)]

    def pack(self) -> np.ndarray:
        return np.concatenate([v.data.ravel() for v in self.variables], dtype=np.float64)

    def unpack(self, x: np.ndarray) -> None:
        for v, s in zip(self.variables, self.slices, strict=True):
            v.assign(x[s].reshape(v.shape))  # assign casts to the Variable's dtype


class _Run:
    """SciPy's objective and callback for one `minimize` call, and what they have seen."""

    def __init__(
        self, loss_fn: Callable[[], Tensor], variables: list[Variable], packer: _Packer,
        gradient: bool,
    ) -> None:
        self.loss_fn = loss_fn
        self.name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        self.packer = packer
        self.gradient = gradient
        self.value_and_grad = value_and_grad(loss_fn, variables)
        self.nfev = 0
        self.nit = 0
        self.last: tuple[np.ndarray, float] | None = None  # last point evaluated, its loss
        self.last_iterate: np.ndarray | None = None
        self.stop_requested = False

    def fun(self, x: np.ndarray) -> float | tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        self.packer.unpack(x)
        self.nfev += 1
        # Paused outer tapes: an enclosing tape must not record every evaluation of the fit.
        with no_record():
            if self.gradient:
                value, grads = self.value_and_grad()
            else:
                value, _ = _split_output(self.loss_fn(), False, self.name)
        f = float(value)
        self.last = (x.copy(), f)
        if not self.gradient:
            return f
        return f, np.concatenate([g.ravel() for g in grads], dtype=np.float64)

    def wrap_callback(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """`callback` with the iterate written into the Variables first; keeps SciPy's style."""
        try:
            params = set(inspect.signature(callback).parameters)
        except (TypeError, ValueError):  # no signature to read: SciPy passes xk then
            params = set()

        def enter(x: np.ndarray) -> None:
            self.nit += 1
            self.last_iterate = np.array(x, dtype=np.float64)
            self.packer.unpack(self.last_iterate)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except StopIteration:
                self.stop_requested = True
                raise

        # SciPy picks the calling convention from the signature: keep the user's.
        if params == {"intermediate_result"}:

            def wrapped_result(intermediate_result: OptimizeResult) -> Any:
                enter(intermediate_result.x)
                return call(intermediate_result=intermediate_result)

            return wrapped_result

        def wrapped_xk(xk: np.ndarray, *args: Any) -> Any:
            enter(xk)
            return call(xk, *args)

        return wrapped_xk

    def stopped_result(self) -> OptimizeResult:
        """SciPy's result for a run its callback stopped, where SciPy let the exception out."""
        x = np.asarray(self.last_iterate)  # set by the callback that raised
        if self.last is not None and np.array_equal(self.last[0], x):
            f = self.last[1]
        else:
            self.packer.unpack(x)
            with no_record():
                f = float(_split_output(self.loss_fn(), False, self.name)[0])
        return OptimizeResult(
            x=x, fun=f, success=False, status=99, message=_STOPPED, nfev=self.nfev, nit=self.nit
        )
