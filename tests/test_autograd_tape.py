"""GradientTape: accumulation, deep chains, persistence, nesting, threads, structures, dtypes."""

import gc
import threading
import weakref
from collections import namedtuple

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn.autograd import Context, Function, GradientTape, Tensor
from numba_gn.params import Variable


def _watched(*arrays):
    return [Tensor(np.asarray(a, dtype=np.float64)) for a in arrays]


def test_simple_gradient():
    (x,) = _watched([1.0, 2.0, 3.0])
    with GradientTape() as tape:
        tape.watch(x)
        y = ag.sum(x * x)
    np.testing.assert_array_equal(tape.gradient(y, x), [2.0, 4.0, 6.0])


@pytest.mark.parametrize(
    "f, df",
    [
        (lambda x: x * x, lambda x: 2 * x),
        (lambda x: x + x, lambda x: 2 + 0 * x),
        (lambda x: x * x * x, lambda x: 3 * x**2),
        (lambda x: (x + 1) * (x - 1) + x / x, lambda x: 2 * x),
        # one intermediate used by three consumers
        (
            lambda x: (lambda a: a * a + a * 3 + ag.exp(a))(x * 2),
            lambda x: 8 * x + 6 + 2 * np.exp(2 * x),
        ),
    ],
    ids=["x*x", "a+a", "x*x*x", "mixed", "fan_out_3"],
)
def test_fan_out_accumulates(f, df, rng):
    a = rng.standard_normal(4)
    (x,) = _watched(a)
    with GradientTape() as tape:
        tape.watch(x)
        y = ag.sum(f(x))
    np.testing.assert_allclose(tape.gradient(y, x), df(a), rtol=1e-12)


def test_chain_of_ten_thousand_ops_needs_no_recursion():
    x = Tensor(np.array(1.0))
    with GradientTape() as tape:
        tape.watch(x)
        y = x
        for _ in range(5_000):
            y = y * 1.0001
            y = y + x  # fan-in from the source at every step
    g = tape.gradient(y, x)
    # d/dx of y_{k+1} = 1.0001 * y_k + x:  g_{k+1} = 1.0001 * g_k + 1, g_0 = 1
    expected = 1.0
    for _ in range(5_000):
        expected = 1.0001 * expected + 1.0
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_non_persistent_tape_gives_one_gradient_only():
    (x,) = _watched(2.0)
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
    assert tape.gradient(y, x) == 4.0
    with pytest.raises(RuntimeError, match="non-persistent GradientTape"):
        tape.gradient(y, x)


def test_persistent_tape_gives_several_gradients():
    x, w = _watched(2.0, 3.0)
    with GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        y = x * x
        z = y * w
    assert tape.gradient(y, x) == 4.0
    assert tape.gradient(z, x) == 12.0
    assert tape.gradient(z, w) == 4.0
    gx, gw = tape.gradient(z, [x, w])
    assert (gx, gw) == (12.0, 4.0)


def test_gradient_inside_the_with_block():
    (x,) = _watched(3.0)
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
        g = tape.gradient(y, x)
    assert g == 6.0


def test_nested_tapes_record_what_each_watches():
    x, y = _watched(2.0, 5.0)
    with GradientTape() as outer:
        outer.watch(x)
        with GradientTape() as inner:
            inner.watch(y)
            z = x * y
            only_y = y * y
        q = x * 3.0  # recorded on the outer tape only: inner is closed
    assert inner.gradient([z, only_y, q], [x, y]) == [None, 2.0 + 10.0]
    assert outer.gradient([z, only_y, q], [x, y]) == [5.0 + 3.0, None]


def test_nested_tapes_both_watching():
    (x,) = _watched(3.0)
    with GradientTape() as outer:
        outer.watch(x)
        with GradientTape() as inner:
            inner.watch(x)
            y = x * x * x
    assert inner.gradient(y, x) == 27.0
    assert outer.gradient(y, x) == 27.0


def test_tape_cannot_be_entered_twice_at_once():
    tape = GradientTape()
    with tape:
        with pytest.raises(RuntimeError, match="already recording"):
            tape.__enter__()


def test_thread_local_tapes_run_concurrently():
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def work(k):
        try:
            x = Tensor(np.full(3, float(k + 1)))
            for _ in range(50):
                with GradientTape() as tape:
                    tape.watch(x)
                    barrier.wait(timeout=10)  # both threads are inside a tape here
                    y = ag.sum(x ** (k + 2))
                    barrier.wait(timeout=10)
                results[k] = tape.gradient(y, x)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_allclose(results[0], 2 * np.full(3, 1.0))  # d/dx x**2 at 1
    np.testing.assert_allclose(results[1], 3 * np.full(3, 2.0) ** 2)  # d/dx x**3 at 2


def test_a_tape_ignores_ops_of_other_threads():
    (x,) = _watched(2.0)
    out = {}
    with GradientTape() as tape:
        tape.watch(x)
        t = threading.Thread(target=lambda: out.setdefault("y", x * x))
        t.start()
        t.join()
        z = x * 3.0
    assert tape.gradient([out["y"], z], x) == 3.0


def test_nothing_is_recorded_outside_a_tape():
    (x,) = _watched(2.0)
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        inside = x * x
    after = x * x  # the tape is closed
    assert tape.gradient(inside, x) == 4.0
    assert tape.gradient(after, x) is None


class _KeepsResidual(Function):
    @staticmethod
    def forward(ctx, x, *, probe):
        ctx.save_for_backward(probe)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_no_graph_memory_is_kept_without_a_tape():
    probe = Tensor(np.zeros(1))  # stands for a residual saved by an op
    ref = weakref.ref(probe)
    y = _KeepsResidual.apply(Tensor(np.ones(2)), probe=probe)
    del probe
    gc.collect()
    assert ref() is None
    assert isinstance(y, Tensor)


def test_unwatched_inputs_are_not_recorded():
    (x,) = _watched(2.0)
    with GradientTape() as tape:
        y = x * x  # x never watched
    assert tape.gradient(y, x) is None


def test_trainable_variables_are_watched_automatically():
    w = Variable(np.array([1.0, 2.0]))
    frozen = Variable(np.array([3.0, 4.0]), trainable=False)
    with GradientTape() as tape:
        y = ag.sum(w * frozen)
    gw, gf = tape.gradient(y, [w, frozen])
    np.testing.assert_array_equal(gw, [3.0, 4.0])
    assert gf is None
    assert tape.watched_variables() == (w,)


def test_non_trainable_variable_can_be_watched_explicitly():
    frozen = Variable(np.array([3.0]), trainable=False)
    with GradientTape() as tape:
        tape.watch(frozen)
        y = frozen * frozen
    np.testing.assert_array_equal(tape.gradient(y, frozen), [6.0])


def test_watch_accessed_variables_false():
    w = Variable(np.array([1.0]))
    v = Variable(np.array([2.0]))
    with GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(v)
        y = w * v
    gw, gv = tape.gradient(y, [w, v])
    assert gw is None
    np.testing.assert_array_equal(gv, [1.0])
    assert tape.watched_variables() == (v,)


def test_watch_rejects_arrays():
    with GradientTape() as tape, pytest.raises(TypeError, match="wrap arrays with Tensor"):
        tape.watch(np.ones(2))


def test_sources_structure_is_preserved():
    Pair = namedtuple("Pair", "a b")
    x, y, z = _watched(1.0, 2.0, 3.0)
    with GradientTape() as tape:
        tape.watch([x, y, z])
        out = x * y * z
    g = tape.gradient(out, {"x": x, "rest": [y, (z, Pair(x, y))]})
    assert set(g) == {"x", "rest"}
    assert g["x"] == 6.0
    assert isinstance(g["rest"], list) and isinstance(g["rest"][1], tuple)
    assert isinstance(g["rest"][1][1], Pair)
    assert g["rest"][0] == 3.0 and g["rest"][1][0] == 2.0
    assert g["rest"][1][1] == Pair(6.0, 3.0)


def test_unconnected_gradients():
    x, y = _watched([1.0, 2.0], [3.0])
    with GradientTape(persistent=True) as tape:
        tape.watch([x, y])
        out = ag.sum(x * 2.0)
    assert tape.gradient(out, y) is None
    z = tape.gradient(out, y, unconnected_gradients="zero")
    np.testing.assert_array_equal(z, [0.0])
    with pytest.raises(ValueError, match="unconnected_gradients"):
        tape.gradient(out, y, unconnected_gradients="ones")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_has_the_source_dtype(dtype):
    w = Variable(np.ones(3, dtype=dtype))
    x = np.arange(3.0)  # float64 data promotes the forward
    with GradientTape() as tape:
        y = ag.sum(w * x)
    assert y.dtype == np.float64
    g = tape.gradient(y, w)
    assert g.dtype == dtype
    np.testing.assert_array_equal(g, x)


def test_integer_sources_get_no_gradient():
    i = Tensor(np.array([1, 2]))
    with GradientTape() as tape:
        tape.watch(i)
        y = ag.sum(i * 2.0)
    assert tape.gradient(y, i) is None


def test_stop_gradient():
    (x,) = _watched(3.0)
    with GradientTape() as tape:
        tape.watch(x)
        y = x * ag.stop_gradient(x)
    assert tape.gradient(y, x) == 3.0  # not 2x


@pytest.mark.parametrize("pause", [ag.no_record, ag.stop_recording])
def test_no_record_pauses_every_tape(pause):
    (x,) = _watched(3.0)
    with GradientTape() as outer, GradientTape() as inner:
        outer.watch(x)
        inner.watch(x)
        with pause():
            hidden = x * x
        shown = x * 2.0
    assert inner.gradient([hidden, shown], x) == 2.0
    assert outer.gradient([hidden, shown], x) == 2.0


def test_tape_stop_recording_pauses_only_that_tape():
    (x,) = _watched(3.0)
    with GradientTape() as outer, GradientTape() as inner:
        outer.watch(x)
        inner.watch(x)
        with inner.stop_recording():
            y = x * x
    assert inner.gradient(y, x) is None
    assert outer.gradient(y, x) == 6.0
    with pytest.raises(RuntimeError, match="not recording"):
        with inner.stop_recording():
            pass


def test_output_gradients_and_multiple_targets():
    (x,) = _watched([1.0, 2.0])
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * 3.0
        z = ag.sum(x * x)
    np.testing.assert_array_equal(tape.gradient(y, x, output_gradients=[1.0, 10.0]), [3.0, 30.0])
    np.testing.assert_array_equal(tape.gradient([y, z], x), [3.0 + 2.0, 3.0 + 4.0])
    g = tape.gradient([y, z], x, output_gradients=[np.array([0.0, 1.0]), 2.0])
    np.testing.assert_array_equal(g, [4.0, 3.0 + 8.0])
    with pytest.raises(ValueError, match="shape"):
        tape.gradient(y, x, output_gradients=np.ones(3))


def test_gradient_with_respect_to_intermediates_and_the_target():
    (x,) = _watched(2.0)
    with GradientTape() as tape:
        tape.watch(x)
        h = x * x
        y = h * 3.0
    gy, gh, gx = tape.gradient(y, [y, h, x])
    assert (gy, gh, gx) == (1.0, 3.0, 12.0)


def test_returned_gradients_are_writeable_and_never_aliased():
    x, y = _watched(np.ones(3), np.ones(3))
    og = np.ones(3)
    with GradientTape() as tape:
        tape.watch([x, y])
        out = x + y  # Add.backward hands the same array to both inputs
    gx, gy, gx2, gout = tape.gradient(out, [x, y, x, out], output_gradients=og)
    arrays = [gx, gy, gx2, gout]
    for i, a in enumerate(arrays):
        assert a.flags.writeable
        assert not np.shares_memory(a, og)
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)


def test_broadcast_gradients_are_writeable():
    (x,) = _watched(np.ones((2, 3)))
    with GradientTape() as tape:
        tape.watch(x)
        y = ag.sum(x)  # backward is a read-only broadcast view
    g = tape.gradient(y, x)
    g *= 2.0
    np.testing.assert_array_equal(g, np.full((2, 3), 2.0))


def test_target_must_be_a_tensor():
    (x,) = _watched(1.0)
    with GradientTape() as tape:
        tape.watch(x)
    with pytest.raises(TypeError, match="target must be a Tensor"):
        tape.gradient(np.ones(1), x)


def test_reset_forgets_the_recording():
    (x,) = _watched(2.0)
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        tape.reset()
        z = x * x  # x is no longer watched
    assert tape.gradient(y, x) is None
    assert tape.gradient(z, x) is None


# -- custom Functions ---------------------------------------------------------------------------


class _Scale(Function):
    """``x * factor`` with a static keyword argument and a record of needs_input_grad."""

    seen: list = []

    @staticmethod
    def forward(ctx: Context, x, y, *, factor):
        _Scale.seen.append(ctx.needs_input_grad)
        ctx.factor = factor
        return x * y * factor

    @staticmethod
    def backward(ctx: Context, grad):
        return grad * ctx.factor, None  # no gradient for y, deliberately


def test_custom_function_with_needs_input_grad_and_none_gradient():
    _Scale.seen.clear()
    x, y = _watched(2.0, 5.0)
    _Scale.apply(x, y, factor=3.0)  # no tape: nothing needs a gradient
    with GradientTape() as tape:
        tape.watch(x)
        out = _Scale.apply(x, y, factor=3.0)
    assert out.item() == 30.0
    assert _Scale.seen == [(False, False), (True, False)]
    assert tape.gradient(out, x) == 3.0


class _BadShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum()

    @staticmethod
    def backward(ctx, grad):
        return np.ones(7)


class _BadCount(Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


@pytest.mark.parametrize(
    "fn, match",
    [(_BadShape, "_BadShape.backward returned a gradient of shape"), (_BadCount, "2 gradients")],
)
def test_custom_function_mistakes_are_reported(fn, match):
    (x,) = _watched(np.ones(3))
    with GradientTape() as tape:
        tape.watch(x)
        y = fn.apply(x)
    with pytest.raises(ValueError, match=match):
        tape.gradient(y, x)


def test_function_without_backward():
    class NoBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x

    (x,) = _watched(1.0)
    with GradientTape() as tape:
        tape.watch(x)
        y = NoBackward.apply(x)
    with pytest.raises(NotImplementedError):
        tape.gradient(y, x)


# -- end to end ---------------------------------------------------------------------------------


def test_sgd_on_a_linear_model_reduces_the_loss(rng):
    x = rng.standard_normal((64, 3)).astype(np.float32)
    true_w = np.array([[1.5], [-2.0], [0.5]], dtype=np.float32)
    y = x @ true_w + 0.3
    w = Variable("zeros", shape=(3, 1), name="kernel")
    b = Variable(np.zeros(1, dtype=np.float32), name="bias")
    losses = []
    for _ in range(100):
        with GradientTape() as tape:
            loss = ag.mean(ag.square(x @ w + b - y))
        gw, gb = tape.gradient(loss, [w, b])
        assert gw.dtype == np.float32 and gb.dtype == np.float32
        w.assign_sub(0.1 * gw)
        b.assign_sub(0.1 * gb)
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(w.numpy(), true_w, atol=1e-2)
    np.testing.assert_allclose(b.numpy(), [0.3], atol=1e-2)
