"""`value_and_grad` and `numba_gn.optimize.minimize`: the tape's gradients driving SciPy.

`value_and_grad` is checked against finite differences and against `GradientTape`;
`minimize` recovers known parameters (a linear regression, a GroupNormalization's gamma/beta),
respects bounds and NonNeg constraints, and leaves the Variables as they were when anything
fails. The worked example of docs/pipelines/scipy.md runs here, so it cannot rot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _subprocess import check_python, last_json_line
from scipy.optimize import LbfgsInvHessProduct, OptimizeResult

import numba_gn
from numba_gn import autograd as ag
from numba_gn import layers
from numba_gn.autograd import value_and_grad
from numba_gn.optimize import minimize

ROOT = Path(__file__).resolve().parent.parent


def _var(value, name, **kwargs):
    return numba_gn.Variable(np.asarray(value, dtype=kwargs.pop("dtype", np.float64)),
                             name=name, **kwargs)


def _quadratic(v, target):
    return lambda: ag.sum(ag.square(v - target))


# -- value_and_grad -------------------------------------------------------------------------------


def test_value_and_grad_matches_finite_differences(rng):
    x = rng.standard_normal((5, 3))
    w = _var(rng.standard_normal((3, 2)), "w")
    b = _var(rng.standard_normal(2), "b")

    def loss(x, scale=1.0):
        return ag.sum(ag.square(ag.tanh(ag.matmul(x, w) + b))) * scale

    value, (dw, db) = value_and_grad(loss, [w, b])(x, scale=0.5)
    assert isinstance(value, numba_gn.Tensor) and value.shape == ()
    np.testing.assert_allclose(float(value), 0.5 * np.sum(np.tanh(x @ w.data + b.data) ** 2))

    eps = 1e-6
    for var, grad in ((w, dw), (b, db)):
        assert grad.shape == var.shape and grad.dtype == np.float64
        numeric = np.zeros(var.shape)
        flat = var.data.reshape(-1)  # a view: perturbs the Variable in place
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = float(loss(x, scale=0.5))
            flat[i] = old - eps
            down = float(loss(x, scale=0.5))
            flat[i] = old
            numeric.reshape(-1)[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def _dense_model(seed=0):
    model = numba_gn.Sequential([
        numba_gn.Input((4,)),
        layers.Dense(6, activation="tanh",
                     kernel_initializer=numba_gn.initializers.GlorotUniform(seed=seed)),
        layers.Dense(2, kernel_initializer=numba_gn.initializers.GlorotUniform(seed=seed + 1),
                     bias_initializer="ones"),
    ])
    return model


def test_value_and_grad_matches_gradient_tape_on_a_dense_model(rng):
    model = _dense_model()
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    mse = numba_gn.losses.MeanSquaredError()
    before = model.get_weights()

    def loss_fn():
        return mse(y, model(x, training=True))

    value, grads = value_and_grad(loss_fn, model.trainable_variables)()
    with numba_gn.GradientTape() as tape:
        expected_value = loss_fn()
    expected = tape.gradient(expected_value, model.trainable_variables)

    assert float(value) == float(expected_value)
    assert isinstance(grads, list) and len(grads) == 4
    for g, e, v in zip(grads, expected, model.trainable_variables, strict=True):
        assert g.dtype == v.dtype == np.float32 and g.shape == v.shape
        np.testing.assert_array_equal(g, e)
    # The Variables are read, never written.
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)

    # Without variables=: (gradient, variable) pairs in first-use order, as a tape watches.
    _, pairs = value_and_grad(loss_fn)()
    assert [v for _, v in pairs] == list(model.trainable_variables)
    for (g, _), e in zip(pairs, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_value_and_grad_structures_unused_and_non_trainable_variables():
    a = _var([1.0, 2.0], "a")
    unused = _var([[3.0]], "unused", dtype=np.float32)
    frozen = _var(2.0, "frozen", trainable=False)

    def fn():
        return ag.sum(a * a) * frozen

    # A single Variable gives a single array; a dict a dict; unused Variables zeros.
    _, da = value_and_grad(fn, a)()
    np.testing.assert_array_equal(da, [4.0, 8.0])
    _, grads = value_and_grad(fn, {"a": a, "unused": unused, "frozen": frozen})()
    assert list(grads) == ["a", "unused", "frozen"]
    np.testing.assert_array_equal(grads["unused"], [[0.0]])
    assert grads["unused"].dtype == np.float32
    # Listed explicitly, a non-trainable Variable is watched and gets its gradient.
    np.testing.assert_array_equal(grads["frozen"], 5.0)

    # Without variables=, non-trainable Variables are not watched and unused ones not listed.
    _, pairs = value_and_grad(fn)()
    assert [v.name for _, v in pairs] == ["a"]

    # Listed, a trainable Variable used by the call but not listed is a constant.
    b = _var(3.0, "b")
    _, (db,) = value_and_grad(lambda: a[0] * b, [b])()
    np.testing.assert_array_equal(db, 1.0)


def test_value_and_grad_has_aux_and_wraps_the_function():
    w = _var([1.0, -1.0], "w")

    def predict_and_loss(x):
        """Docs of the wrapped function."""
        pred = w * x
        return ag.sum(ag.square(pred)), pred

    g = value_and_grad(predict_and_loss, [w], has_aux=True)
    (value, pred), (dw,) = g(np.array([2.0, 3.0]))
    assert float(value) == 13.0
    np.testing.assert_array_equal(pred.numpy(), [2.0, -3.0])
    np.testing.assert_array_equal(dw, [8.0, -18.0])  # 2 w x**2
    assert g.__name__ == "predict_and_loss" and "Docs of the wrapped function." in g.__doc__


def test_value_and_grad_argument_errors():
    w = _var([1.0, 2.0], "w")
    with pytest.raises(TypeError, match="callable `fn`"):
        value_and_grad(3.0)
    with pytest.raises(ValueError, match="empty `variables`"):
        value_and_grad(lambda: ag.sum(w), [])
    with pytest.raises(TypeError, match="`variables`"):
        value_and_grad(lambda: ag.sum(w), [w, np.ones(2)])
    with pytest.raises(TypeError, match="floating-point"):
        value_and_grad(lambda: ag.sum(w), [numba_gn.Variable(np.arange(3), name="ints")])
    with pytest.raises(TypeError, match="has_aux"):
        value_and_grad(lambda: ag.sum(w), [w], has_aux=1)

    with pytest.raises(ValueError, match=r"scalar \(0-d\) Tensor, got shape \(2,\)"):
        value_and_grad(lambda: w * 2.0, [w])()
    with pytest.raises(TypeError, match="must return a scalar Tensor, got float"):
        value_and_grad(lambda: float(np.sum(w)), [w])()
    with pytest.raises(TypeError, match="floating-point Tensor, got dtype int64"):
        value_and_grad(lambda: numba_gn.Tensor(np.int64(3)), [w])()
    with pytest.raises(TypeError, match=r"pair \(value, aux\)"):
        value_and_grad(lambda: ag.sum(w), [w], has_aux=True)()


# -- minimize: fitting ----------------------------------------------------------------------------


def test_lbfgs_recovers_a_linear_regression(rng):
    x = rng.standard_normal((64, 3))
    w_true, b_true = np.array([[1.5], [-2.0], [0.25]]), np.array([0.75])
    y = x @ w_true + b_true
    w = _var(np.zeros((3, 1)), "w")
    b = _var(np.zeros(1), "b")

    result = minimize(lambda: ag.mean(ag.square(ag.matmul(x, w) + b - y)), [w, b])
    assert result.success, result.message
    np.testing.assert_allclose(w.numpy(), w_true, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), b_true, atol=1e-6)
    # x is the packed vector, in the order of `variables`, and the Variables hold it.
    assert result.x.dtype == np.float64 and result.x.shape == (4,)
    np.testing.assert_array_equal(result.x, np.concatenate([w.numpy().ravel(), b.numpy()]))
    assert result.fun < 1e-12 and result.jac.shape == (4,)


def test_lbfgs_recovers_group_normalization_gamma_and_beta(rng):
    channels, groups = 6, 3
    gamma_true = rng.uniform(0.5, 2.0, channels)
    beta_true = rng.uniform(-1.0, 1.0, channels)
    x = rng.standard_normal((16, 5, channels))
    y = numba_gn.group_norm(x, groups, gamma_true, beta_true)

    layer = layers.GroupNormalization(groups, dtype="float64")
    layer.build(x.shape)
    assert [v.name for v in layer.trainable_variables] == ["gamma", "beta"]

    def loss_fn():
        return ag.mean(ag.square(layer(x) - y))

    result = minimize(loss_fn, layer.trainable_variables, tol=1e-14)
    assert result.success, result.message
    np.testing.assert_allclose(layer.gamma.numpy(), gamma_true, atol=1e-5)
    np.testing.assert_allclose(layer.beta.numpy(), beta_true, atol=1e-5)


def test_float32_variables_keep_their_dtype_and_other_methods_work():
    target = np.array([0.5, -1.5, 2.0], dtype=np.float32)
    for method in ("L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP", "trust-constr", None):
        v = _var(np.zeros(3), "v", dtype=np.float32)
        result = minimize(_quadratic(v, target), v, method=method)
        assert v.dtype == np.float32 and result.x.dtype == np.float64, method
        np.testing.assert_allclose(v.numpy(), target, atol=1e-4, err_msg=str(method))
        np.testing.assert_array_equal(v.numpy(), result.x.astype(np.float32))
    # Newton-CG takes Hessian-vector products by finite differences of the gradient, with
    # steps that float32 rounds away: it needs float64 Variables.
    v = _var(np.zeros(3), "v")
    minimize(_quadratic(v, target), v, method="Newton-CG")
    np.testing.assert_allclose(v.numpy(), target, atol=1e-6)


def test_gradient_free_methods_get_the_loss_only():
    target = np.array([0.5, -1.5])
    for method in ("Nelder-Mead", "Powell", "COBYLA"):
        v = _var(np.zeros(2), "v")
        # No warning (SciPy warns when a gradient-free method is handed jac=True).
        result = minimize(_quadratic(v, target), [v], method=method,
                          options={"maxiter": 2000}, tol=1e-10)
        np.testing.assert_allclose(v.numpy(), target, atol=1e-4, err_msg=method)
        assert "jac" not in result or method == "COBYLA"


def test_a_callable_method_gets_the_gradient():
    v = _var([3.0, -4.0], "v")
    seen = {}

    def gradient_descent(fun, x0, args=(), jac=None, callback=None, **kwargs):
        seen["options"] = kwargs
        x = x0.copy()
        for _ in range(100):
            f, g = fun(x), jac(x)  # SciPy splits our (value, gradient) for custom methods
            x = x - 0.25 * g
        return OptimizeResult(x=x, fun=f, success=True, nfev=100)

    result = minimize(_quadratic(v, np.zeros(2)), v, method=gradient_descent,
                      options={"rate": 0.25})
    assert seen["options"]["rate"] == 0.25 and result.nfev == 100
    np.testing.assert_allclose(v.numpy(), [0.0, 0.0], atol=1e-12)


# -- minimize: bounds and constraints -------------------------------------------------------------


def test_bounds_scalar_pairs_arrays_and_none():
    a = _var(np.zeros((2, 2)), "a")
    b = _var(np.zeros(3), "b")
    c = _var([10.0], "c")
    target_a = np.array([[5.0, -5.0], [0.5, 3.0]])
    target_b = np.array([-1.0, 1.0, 2.0])

    def loss_fn():
        return (ag.sum(ag.square(a - target_a)) + ag.sum(ag.square(b - target_b))
                + ag.sum(ag.square(c + 3.0)))

    hi_b = np.array([0.0, 0.5, np.inf])
    result = minimize(loss_fn, [a, b, c], bounds=[(-1.0, 2.0), (None, hi_b), None])
    assert result.success, result.message
    np.testing.assert_allclose(a.numpy(), [[2.0, -1.0], [0.5, 2.0]], atol=1e-8)
    np.testing.assert_allclose(b.numpy(), [-1.0, 0.5, 2.0], atol=1e-8)
    np.testing.assert_allclose(c.numpy(), [-3.0], atol=1e-6)

    # Per-element bounds of the Variable's shape; a start outside them is moved onto them.
    d = _var([[-9.0, 9.0]], "d")
    minimize(_quadratic(d, 0.0), d, bounds=(np.array([[1.0, -2.0]]), [[3.0, -1.0]]))
    np.testing.assert_allclose(d.numpy(), [[1.0, -1.0]], atol=1e-8)


def test_non_neg_constraint_becomes_a_lower_bound():
    target = np.array([-2.0, 0.5, 3.0])
    v = _var([1.0, 1.0, 1.0], "v", constraint="non_neg")
    minimize(_quadratic(v, target), [v])
    np.testing.assert_allclose(v.numpy(), [0.0, 0.5, 3.0], atol=1e-8)

    # Combined with bounds, the tighter bound wins.
    v.assign([1.0, 1.0, 1.0])
    minimize(_quadratic(v, target), [v], bounds=[(-5.0, 2.0)])
    np.testing.assert_allclose(v.numpy(), [0.0, 0.5, 2.0], atol=1e-8)
    v.assign([1.0, 1.0, 1.0])
    minimize(_quadratic(v, target), [v], bounds=[(0.75, None)])
    np.testing.assert_allclose(v.numpy(), [0.75, 0.75, 3.0], atol=1e-8)

    # use_constraints=False ignores it.
    v.assign([1.0, 1.0, 1.0])
    minimize(_quadratic(v, target), [v], use_constraints=False)
    np.testing.assert_allclose(v.numpy(), target, atol=1e-6)


def test_constraints_that_are_not_box_bounds_are_refused_or_ignored_on_request():
    target = np.array([3.0, 4.0])
    v = _var([1.0, 0.0], "v", constraint=numba_gn.constraints.UnitNorm(axis=0))
    with pytest.raises(ValueError, match="UnitNorm.*not a box bound.*use_constraints=False"):
        minimize(_quadratic(v, target), [v])
    np.testing.assert_array_equal(v.numpy(), [1.0, 0.0])
    minimize(_quadratic(v, target), [v], use_constraints=False)
    np.testing.assert_allclose(v.numpy(), target, atol=1e-6)

    for c in (numba_gn.constraints.MaxNorm(1.0), numba_gn.constraints.MinMaxNorm(0.0, 1.0),
              lambda w: w):
        u = _var([1.0], "u", constraint=c)
        with pytest.raises(ValueError, match="not a box bound"):
            minimize(_quadratic(u, 0.0), [u])
    # The identity base class has nothing to enforce.
    u = _var([1.0], "u", constraint=numba_gn.constraints.Constraint())
    minimize(_quadratic(u, 2.0), [u], method="BFGS")
    np.testing.assert_allclose(u.numpy(), [2.0], atol=1e-6)


def test_bounds_with_a_method_that_cannot_take_them_are_an_error():
    v = _var([1.0], "v", constraint="non_neg")
    with pytest.raises(ValueError, match="method='BFGS' cannot take bounds.*NonNeg.*"
                                         "use_constraints=False"):
        minimize(_quadratic(v, -1.0), [v], method="BFGS")
    w = _var([1.0], "w")
    with pytest.raises(ValueError, match="method='CG' cannot take bounds.*`bounds` are given"):
        minimize(_quadratic(w, -1.0), [w], method="CG", bounds=[(0.0, 1.0)])
    # method=None picks L-BFGS-B when there are bounds, as SciPy does.
    result = minimize(_quadratic(v, -1.0), [v], method=None)
    assert isinstance(result.hess_inv, LbfgsInvHessProduct)
    np.testing.assert_allclose(v.numpy(), [0.0])
    result = minimize(_quadratic(v, -1.0), [v], method=None, use_constraints=False)
    assert isinstance(result.hess_inv, np.ndarray)  # BFGS's dense inverse Hessian
    np.testing.assert_allclose(v.numpy(), [-1.0], atol=1e-6)
    # Unbounded entries and no constraint: any method.
    minimize(_quadratic(w, -1.0), [w], method="CG", bounds=[(None, None)])
    np.testing.assert_allclose(w.numpy(), [-1.0], atol=1e-6)


# -- minimize: failures, stops and callbacks ------------------------------------------------------


def test_variables_are_restored_when_the_loss_raises_mid_optimisation():
    a = _var([[1.0, 2.0]], "a", dtype=np.float32)
    b = _var([3.0], "b")
    calls = []

    def loss_fn():
        calls.append(a.numpy())
        if len(calls) == 3:
            raise RuntimeError("data source failed")
        return ag.sum(ag.square(ag.square(a))) + ag.sum(ag.square(b - 1.0))

    with pytest.raises(RuntimeError, match="data source failed"):
        minimize(loss_fn, [a, b])
    assert len(calls) == 3 and not np.array_equal(calls[-1], [[1.0, 2.0]])  # it had moved
    np.testing.assert_array_equal(a.numpy(), [[1.0, 2.0]])
    np.testing.assert_array_equal(b.numpy(), [3.0])
    assert a.dtype == np.float32

    # A callback raising anything but StopIteration, and a non-scalar loss, restore too.
    def bad_callback(xk):
        raise KeyError("stop")

    with pytest.raises(KeyError):
        minimize(_quadratic(b, 0.0), [b], callback=bad_callback)
    with pytest.raises(ValueError, match="scalar"):
        minimize(lambda: a * 2.0, [a])
    np.testing.assert_array_equal(b.numpy(), [3.0])
    np.testing.assert_array_equal(a.numpy(), [[1.0, 2.0]])


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC", "Nelder-Mead"])
def test_stop_iteration_in_the_callback_ends_the_run_at_that_iterate(method):
    # Rosenbrock: no method gets there in two iterations.
    v = _var([-1.2, 1.0, -0.5], "v")

    def rosenbrock():
        return ag.sum(100.0 * ag.square(v[1:] - ag.square(v[:-1])) + ag.square(1.0 - v[:-1]))

    iterates = []

    def callback(xk):
        # The Variables hold the iterate while the callback runs.
        np.testing.assert_array_equal(v.numpy(), xk)
        iterates.append(np.array(xk))
        if len(iterates) == 2:
            raise StopIteration

    result = minimize(rosenbrock, v, method=method, callback=callback)
    assert len(iterates) == 2
    assert result.status == 99 and not result.success and "StopIteration" in result.message
    np.testing.assert_array_equal(result.x, iterates[-1])
    np.testing.assert_array_equal(v.numpy(), iterates[-1])
    assert result.fun == pytest.approx(float(rosenbrock()))


def test_callback_with_intermediate_result_and_an_early_stop_by_scipy():
    v = _var([-1.2, 1.0], "v")

    def rosenbrock():
        return 100.0 * ag.square(v[1] - ag.square(v[0])) + ag.square(1.0 - v[0])

    seen = []

    def callback(intermediate_result):
        seen.append((intermediate_result.fun, float(rosenbrock())))

    result = minimize(rosenbrock, [v], callback=callback, options={"maxiter": 3})
    assert not result.success and result.nit == 3 and len(seen) == 3
    for fun, recomputed in seen:
        assert fun == pytest.approx(recomputed)  # the Variables held that iterate
    # Stopped early, the Variables still hold SciPy's point.
    np.testing.assert_array_equal(v.numpy(), result.x)


def test_an_enclosing_tape_records_nothing_of_the_fit():
    v = _var([2.0], "v")
    outer = _var([1.0], "outer")
    with numba_gn.GradientTape() as tape:
        y = outer * 3.0
        minimize(lambda: ag.sum(ag.square(v - outer)), [v])
        z = ag.sum(y)
    # Recorded, `v - outer` would have made the tape watch `v` as well.
    assert tape.watched_variables() == (outer,)
    np.testing.assert_array_equal(tape.gradient(z, outer), [3.0])
    np.testing.assert_allclose(v.numpy(), [1.0], atol=1e-8)


def test_minimize_argument_errors_change_nothing():
    v = _var([1.0, 2.0], "v")
    loss = _quadratic(v, 0.0)
    cases = [
        (TypeError, "callable `loss_fn`", dict(loss_fn=3, variables=[v])),
        (TypeError, "Variable or a list/tuple", dict(variables={"v": v})),
        (ValueError, "empty `variables`", dict(variables=[])),
        (TypeError, r"variables\[1\] is a Tensor", dict(variables=[v, numba_gn.Tensor(1.0)])),
        (ValueError, "lists Variable 'v' twice", dict(variables=[v, v])),
        (ValueError, "non-trainable Variable 'f'",
         dict(variables=[v, _var(1.0, "f", trainable=False)])),
        (TypeError, "dtype int64", dict(variables=[numba_gn.Variable(np.arange(2), name="i")])),
        (ValueError, "hold no elements", dict(variables=[_var(np.zeros(0), "empty")])),
        (TypeError, "`method`", dict(method=3)),
        (ValueError, "needs the Hessian", dict(method="trust-ncg")),
        (ValueError, "needs the Hessian", dict(method="dogleg")),
        (TypeError, "use_constraints", dict(use_constraints=1)),
        (TypeError, "tol", dict(tol="small")),
        (ValueError, "tol", dict(tol=-1.0)),
        (TypeError, "`options`", dict(options=[("maxiter", 3)])),
        (TypeError, "`callback`", dict(callback=3)),
        (ValueError, "one entry per Variable", dict(bounds=[(0, 1), (0, 1)])),
        (TypeError, "`bounds` must be a list", dict(bounds=np.zeros((1, 2)))),
        (TypeError, r"bounds\[0\] must be None or a \(lo, hi\) pair", dict(bounds=[(0, 1, 2)])),
        (TypeError, "a bound must be None, a number", dict(bounds=[("low", 1.0)])),
        (ValueError, "NaN", dict(bounds=[(np.nan, 1.0)])),
        (ValueError, r"shape \(3,\) does not broadcast", dict(bounds=[(np.zeros(3), None)])),
        (ValueError, "lower bound exceeds the upper bound", dict(bounds=[(2.0, 1.0)])),
    ]
    for error, message, kwargs in cases:
        call = {"loss_fn": loss, "variables": [v], **kwargs}
        with pytest.raises(error, match=message):
            minimize(call.pop("loss_fn"), call.pop("variables"), **call)
        np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    # A single Variable takes its bounds entry alone.
    with pytest.raises(ValueError, match="lower bound exceeds"):
        minimize(loss, v, bounds=(1.0, 0.0))
    # An unknown SciPy method is SciPy's ValueError, and changes nothing either.
    with pytest.raises(ValueError, match="Unknown solver"):
        minimize(loss, v, method="no-such-method")
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


# -- import and docs ------------------------------------------------------------------------------


def test_import_numba_gn_does_not_import_scipy_optimize():
    res = check_python(
        """
        import json, sys
        import numba_gn
        before = "scipy.optimize" in sys.modules
        import numba_gn.optimize
        print(json.dumps({"before": before, "after": "scipy.optimize" in sys.modules,
                          "same": numba_gn.optimize.minimize.__module__}))
        """
    )
    assert last_json_line(res.stdout) == {
        "before": False, "after": True, "same": "numba_gn.optimize"
    }


def test_api_page_documents_the_new_names():
    entries = (ROOT / "docs" / "api.md").read_text("utf-8").splitlines()
    assert "::: numba_gn.optimize" in entries
    assert "::: numba_gn.autograd.value_and_grad.value_and_grad" in entries
    assert numba_gn.autograd.value_and_grad is value_and_grad
