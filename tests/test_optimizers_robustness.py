"""Optimizers under misuse: state keyed by Variable identity, atomic steps, argument checks."""

from __future__ import annotations

import copy
import gc
import math
import pickle
import sys
import threading
import weakref

import numpy as np
import pytest

from numba_gn import Variable
from numba_gn.params import constraints
from numba_gn.training import optimizers

F32 = np.float32


def _f32(*values):
    return np.array(values, F32)


# -- state keyed by the Variable, not its id ------------------------------------------------------


def _variable_reusing_a_dead_id(opt, make_new, attempts=200):
    """Step Variables with ``opt``, delete them, and make new ones until one gets a dead id.

    Returns that new Variable (never stepped), or None if CPython reused no id.
    """
    dead: set[int] = set()
    for _ in range(attempts):
        stepped = [Variable(_f32(0.0, 0.0, 0.0)) for _ in range(4)]
        for v in stepped:
            for _ in range(3):
                opt.apply([_f32(1.0, 1.0, 1.0)], [v])
        dead.update(id(v) for v in stepped)
        del stepped, v
        fresh = [make_new() for _ in range(8)]
        for w in fresh:
            if id(w) in dead:
                return w
        del fresh, w
    return None


@pytest.mark.parametrize("shape", [(3,), (2,)], ids=["same-shape", "other-shape"])
def test_new_variable_with_a_dead_ones_id_starts_fresh(shape):
    opt = optimizers.SGD(learning_rate=1.0, momentum=0.9)
    w = _variable_reusing_a_dead_id(opt, lambda: Variable(np.zeros(shape, F32)))
    if w is None:
        pytest.skip("CPython did not reuse an id within the attempts")
    opt.apply([np.zeros(shape, F32)], [w])  # zero gradient, no momentum yet: no move
    np.testing.assert_array_equal(w.numpy(), np.zeros(shape, F32))


def test_state_lookup_is_by_identity_not_value():
    a, b = Variable(_f32(1.0, 2.0)), Variable(_f32(1.0, 2.0))
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.9)
    opt.apply([_f32(1.0, 1.0)], [a])
    state = opt.variables_state()
    assert list(state) == [a] and b not in state
    (m,) = state[a]
    assert m.shape == a.shape
    opt.apply([_f32(0.0, 0.0)], [b])  # b has no momentum: a zero gradient leaves it
    np.testing.assert_array_equal(b.numpy(), [1.0, 2.0])


def test_variables_state_form():
    v = Variable(np.ones((2, 3), F32))
    g = [np.ones((2, 3), F32)]
    cases = [
        (optimizers.SGD(), 0),
        (optimizers.SGD(momentum=0.5), 1),
        (optimizers.Adam(), 2),
        (optimizers.Adam(amsgrad=True), 3),
        (optimizers.AdamW(), 2),
    ]
    for opt, n_slots in cases:
        assert opt.variables_state() == {}
        opt.apply(g, [v])
        state = opt.variables_state()
        assert list(state) == [v] and len(state[v]) == n_slots
        assert all(s.shape == (2, 3) and s.dtype == F32 for s in state[v])


def test_slots_are_freed_with_their_variable():
    opt = optimizers.Adam(amsgrad=True)
    keep = Variable(_f32(1.0))
    opt.exclude_from_weight_decay(var_list=[keep])
    v = Variable(np.ones(1000, F32))
    opt.apply([np.ones(1000, F32)], [v])
    slot_refs = [weakref.ref(s) for s in opt.variables_state()[v]]
    v_ref = weakref.ref(v)
    del v
    gc.collect()
    assert v_ref() is None  # the optimizer does not keep its variables alive
    assert all(r() is None for r in slot_refs)
    assert opt.variables_state() == {}
    assert len(opt._slots._data) == 0
    del keep
    gc.collect()
    assert len(opt._exclude._data) == 0


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_state_follows_copied_variables(how):
    v = Variable(_f32(0.0, 0.0), name="v")
    opt = optimizers.SGD(learning_rate=1.0, momentum=0.5, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[v])
    opt.apply([_f32(1.0, 1.0)], [v])
    if how == "deepcopy":
        opt2, v2 = copy.deepcopy((opt, v))
    else:
        opt2, v2 = pickle.loads(pickle.dumps((opt, v)))
    (key,) = opt2.variables_state()
    assert key is v2
    for o, var in ((opt, v), (opt2, v2)):  # same step on both: same result, no weight decay
        o.apply([_f32(0.0, 0.0)], [var])
    np.testing.assert_array_equal(v2.numpy(), v.numpy())
    np.testing.assert_array_equal(v.numpy(), [-1.5, -1.5])
    v3, opt3 = copy.deepcopy((v, opt))  # the other order: the same pairing
    (key,) = opt3.variables_state()
    assert key is v3
    alone = copy.deepcopy(opt)  # copied on its own: its Variables' copies are gone, and the state
    gc.collect()
    assert alone.variables_state() == {} and alone.iterations == opt.iterations


def test_weight_decay_exclusion_is_by_identity():
    opt = optimizers.SGD(learning_rate=0.5, weight_decay=0.5)
    a, b = Variable(_f32(1.0)), Variable(_f32(1.0))
    opt.exclude_from_weight_decay(var_list=[a])
    opt.apply([_f32(0.0), _f32(0.0)], [a, b])
    np.testing.assert_array_equal(a.numpy(), [1.0])
    np.testing.assert_array_equal(b.numpy(), [0.75])

    # A new Variable that gets an excluded (dead) Variable's id is not excluded.
    opt = optimizers.SGD(learning_rate=0.5, weight_decay=0.5)
    for _ in range(200):
        excluded = [Variable(_f32(1.0)) for _ in range(4)]
        opt.exclude_from_weight_decay(var_list=excluded)
        dead = {id(v) for v in excluded}
        del excluded
        fresh = [Variable(_f32(1.0)) for _ in range(8)]
        reused = [w for w in fresh if id(w) in dead]
        if reused:
            opt.apply([_f32(0.0)], reused[:1])
            np.testing.assert_array_equal(reused[0].numpy(), [0.75])
            return
    pytest.skip("CPython did not reuse an id within the attempts")


def test_exclusion_by_name_and_argument_types():
    opt = optimizers.SGD(learning_rate=0.5, weight_decay=0.5)
    kernel, bias = Variable(_f32(1.0), name="kernel"), Variable(_f32(1.0), name="bias")
    opt.exclude_from_weight_decay(var_names="bias")  # one pattern, not the letters b, i, a, s
    opt.apply([_f32(0.0), _f32(0.0)], [kernel, bias])
    np.testing.assert_array_equal(kernel.numpy(), [0.75])
    np.testing.assert_array_equal(bias.numpy(), [1.0])
    with pytest.raises(TypeError, match="var_list"):
        opt.exclude_from_weight_decay(var_list=[np.ones(1)])
    with pytest.raises(TypeError, match="var_names"):
        opt.exclude_from_weight_decay(var_names=[1])


# -- all-or-nothing steps -------------------------------------------------------------------------


class Boom:
    """A constraint that always fails."""

    def __call__(self, w):
        raise RuntimeError("constraint failed")


def _snapshot(opt, variables):
    state = opt.variables_state()
    return (
        [v.numpy().tobytes() for v in variables],
        [[s.tobytes() for s in state[v]] if v in state else None for v in variables],
        opt.iterations,
    )


OPTIMIZERS = [
    lambda: optimizers.SGD(learning_rate=0.1, momentum=0.9, weight_decay=0.01),
    lambda: optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, clipnorm=0.5),
    lambda: optimizers.Adam(learning_rate=0.01, amsgrad=True, global_clipnorm=1.0),
    lambda: optimizers.AdamW(learning_rate=0.01, weight_decay=0.1),
]


def _max_norm_bad_axis():
    try:
        c = constraints.MaxNorm(axis=5)
    except (TypeError, ValueError):  # refused at construction: nothing to test at step time
        return None
    return c


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["sgd", "nesterov", "amsgrad", "adamw"])
@pytest.mark.parametrize(
    "make_constraint",
    [Boom, lambda: (lambda w: w[:1]), lambda: (lambda w: np.full(w.shape, "x")),
     _max_norm_bad_axis],
    ids=["raises", "wrong-shape", "not-numbers", "maxnorm-axis-5"],
)
def test_failing_constraint_changes_nothing(make_opt, make_constraint, rng):
    constraint = make_constraint()
    if constraint is None:
        pytest.skip("MaxNorm(axis=5) is refused at construction")
    w0 = [rng.standard_normal((3, 4)).astype(F32), rng.standard_normal(4).astype(F32)]
    grads = [[rng.standard_normal(w.shape).astype(F32) for w in w0] for _ in range(3)]

    # The same run twice: once with a failing step in the middle, once without.
    kernel = Variable(w0[0], name="kernel")
    gamma = Variable(w0[1], name="gamma")
    ref_vars = [Variable(w) for w in w0]
    opt, ref = make_opt(), make_opt()
    for g in grads[:2]:
        opt.apply(g, [kernel, gamma])
        ref.apply(g, ref_vars)
    before = _snapshot(opt, [kernel, gamma])
    gamma.constraint = constraint
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        opt.apply(grads[2], [kernel, gamma])
    assert _snapshot(opt, [kernel, gamma]) == before  # weights, slots, iterations: bitwise
    gamma.constraint = None
    opt.apply(grads[2], [kernel, gamma])
    ref.apply(grads[2], ref_vars)
    assert _snapshot(opt, [kernel, gamma]) == _snapshot(ref, ref_vars)


def test_constraint_result_is_cast_like_assign():
    v = Variable(_f32(0.5, -0.5), constraint=lambda w: np.round(w).astype(np.float64))
    optimizers.SGD(learning_rate=1.0).apply([_f32(-1.0, 0.0)], [v])
    assert v.data.dtype == F32
    np.testing.assert_array_equal(v.numpy(), [2.0, -0.0])


def _bad_step_cases():
    ok = _f32(1.0, 1.0)
    return {
        "wrong-shape": ([ok, np.ones(3, F32)], ValueError, "'b'.*shape"),
        "broadcastable-shape": ([ok, np.ones(1, F32)], ValueError, "'b'.*shape"),
        "strings": ([ok, np.array(["1", "2"])], TypeError, "'b'"),
        "objects": ([ok, np.array([1.0, None])], TypeError, "'b'"),
        "complex": ([ok, np.ones(2, complex)], TypeError, "'b'"),
        "bools": ([ok, np.ones(2, bool)], TypeError, "'b'"),
        "ragged": ([ok, [[1.0], [1.0, 2.0]]], TypeError, "'b'"),
        "count": ([ok], ValueError, "pair up"),
    }


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["sgd", "nesterov", "amsgrad", "adamw"])
@pytest.mark.parametrize("case", list(_bad_step_cases()))
def test_bad_gradient_changes_nothing(make_opt, case):
    grads, exc, pattern = _bad_step_cases()[case]
    a, b = Variable(_f32(1.0, 2.0), name="a"), Variable(_f32(3.0, 4.0), name="b")
    opt = make_opt()
    opt.apply([_f32(0.5, 0.5), _f32(0.5, 0.5)], [a, b])
    before = _snapshot(opt, [a, b])
    with pytest.raises(exc, match=pattern):
        opt.apply(grads, [a, b])
    assert _snapshot(opt, [a, b]) == before


def test_bad_variables_change_nothing():
    a = Variable(_f32(1.0, 2.0), name="a")
    opt = optimizers.SGD(momentum=0.9)
    opt.apply([_f32(1.0, 1.0)], [a])
    before = _snapshot(opt, [a])
    g = _f32(1.0, 1.0)
    with pytest.raises(TypeError, match=r"variables\[1\]"):
        opt.apply([g, g], [a, np.zeros(2, F32)])
    with pytest.raises(TypeError, match="'counts'.*floating"):
        opt.apply([g, g], [a, Variable(np.zeros(2, np.int32), name="counts")])
    with pytest.raises(ValueError, match="'a'.*more than once"):
        opt.apply([g, g], [a, a])
    assert _snapshot(opt, [a]) == before


def test_floating_point_error_midway_changes_nothing():
    a, b = Variable(_f32(1.0)), Variable(_f32(1.0))
    opt = optimizers.SGD(learning_rate=1e30, momentum=0.5)
    opt.apply([_f32(1.0), _f32(1.0)], [a, b])
    before = _snapshot(opt, [a, b])
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        opt.apply([_f32(1.0), _f32(1e30)], [a, b])  # b's lr * g overflows float32
    assert _snapshot(opt, [a, b]) == before


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, "0.1", None])
def test_schedule_returning_a_bad_rate_changes_nothing(value):
    v = Variable(_f32(1.0))
    opt = optimizers.SGD(learning_rate=lambda step: 0.1 if step == 0 else value, momentum=0.9)
    opt.apply([_f32(1.0)], [v])
    before = _snapshot(opt, [v])
    with pytest.raises((ValueError, TypeError), match="learning_rate"):
        opt.apply([_f32(1.0)], [v])
    assert _snapshot(opt, [v]) == before


def test_schedule_may_return_numpy_scalars():
    v = Variable(_f32(1.0))
    opt = optimizers.SGD(learning_rate=lambda step: np.array(0.5))
    opt.apply([_f32(1.0)], [v])
    opt.learning_rate = lambda step: F32(0.25)
    opt.apply([_f32(1.0)], [v])
    np.testing.assert_array_equal(v.numpy(), [0.25])


# -- argument checks ------------------------------------------------------------------------------

OPTIMIZER_ARGS = {
    optimizers.SGD: ["learning_rate", "momentum", "weight_decay", "clipnorm", "clipvalue",
                     "global_clipnorm"],
    optimizers.Adam: ["learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm",
                      "clipvalue", "global_clipnorm"],
    optimizers.AdamW: ["learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay",
                       "clipnorm", "clipvalue", "global_clipnorm"],
}
BAD_NUMBERS = [0, -1, math.nan, math.inf, -math.inf, 10**400, 1.5]
WRONG_TYPES = ["0.1", [0.1], True, np.ones(1), 1j]
# Documented accepted values among BAD_NUMBERS: a zero rate, momentum, decay, beta or alpha
# means "none of it"; momentum may be 1 and alpha 1 (Keras's closed ranges); clip thresholds,
# rates and weight decay have no upper bound.
ACCEPTED = {
    "learning_rate": {0, 1.5},
    "momentum": {0},
    "weight_decay": {0, 1.5},
    "beta_1": {0},
    "beta_2": {0},
    "epsilon": {1.5},
    "clipnorm": {1.5},
    "clipvalue": {1.5},
    "global_clipnorm": {1.5},
    "initial_learning_rate": {0, 1.5},
    "decay_steps": {1.5},
    "alpha": {0},
}


def _sweep_cases():
    for cls, names in OPTIMIZER_ARGS.items():
        for name in names:
            for value in BAD_NUMBERS + WRONG_TYPES:
                yield cls, name, value
    for name in ["initial_learning_rate", "decay_steps", "alpha"]:
        for value in BAD_NUMBERS + WRONG_TYPES:
            yield optimizers.CosineDecay, name, value


def _make(cls, name, value):
    if cls is optimizers.CosineDecay:
        kwargs = {"initial_learning_rate": 0.1, "decay_steps": 10, name: value}
        return cls(**kwargs)
    return cls(**{name: value})


def _id(x):
    return getattr(x, "__name__", None) or repr(x)[:12]


@pytest.mark.parametrize("cls, name, value", list(_sweep_cases()), ids=_id)
def test_numeric_arguments_are_checked_at_construction(cls, name, value):
    accepted = not isinstance(value, (str, list, bool, np.ndarray, complex)) and any(
        value == a for a in ACCEPTED[name]
    )
    if accepted:
        obj = _make(cls, name, value)
        assert getattr(obj, name) == value and isinstance(getattr(obj, name), float | int)
        return
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        _make(cls, name, value)


@pytest.mark.parametrize("cls, name", [(optimizers.SGD, "nesterov"),
                                       (optimizers.Adam, "amsgrad"),
                                       (optimizers.AdamW, "amsgrad")])
@pytest.mark.parametrize("value", [0, 1, "False", None, 0.5])
def test_flags_must_be_bools(cls, name, value):
    with pytest.raises(TypeError, match=f"`{name}`"):
        cls(**{name: value})
    assert getattr(cls(**{name: np.bool_(True)}), name) is True


@pytest.mark.parametrize("value", [1.0001, -1e-9, -0.5, math.nan])
def test_momentum_range_is_kerass(value):
    with pytest.raises(ValueError, match="`momentum`"):
        optimizers.SGD(momentum=value)


def test_documented_accepted_values():
    assert optimizers.SGD(learning_rate=1).learning_rate == 1.0  # ints, unlike Keras
    assert optimizers.SGD(momentum=1.0).momentum == 1.0
    assert optimizers.AdamW(weight_decay=0).weight_decay == 0.0
    assert optimizers.CosineDecay(0.1, 1e4).decay_steps == 10_000  # a whole float: an int
    assert isinstance(optimizers.CosineDecay(0.1, 1e4).decay_steps, int)
    half = optimizers.CosineDecay(1.0, 2.5)  # Keras divides by decay_steps as given
    assert half(1) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2.5)))
    for name in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
        assert getattr(optimizers.SGD(**{name: None}), name) is None
    with pytest.raises(ValueError, match="`weight_decay`"):
        optimizers.AdamW(weight_decay=None)


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, 10**400, "0.1", None, True])
def test_learning_rate_assignment_is_checked(value):
    opt = optimizers.Adam(learning_rate=0.01)
    with pytest.raises((TypeError, ValueError), match="`learning_rate`"):
        opt.learning_rate = value
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    opt.learning_rate = optimizers.CosineDecay(0.2, 10)
    assert opt.learning_rate == pytest.approx(0.2)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="`name`"):
        optimizers.SGD(name=3)
    with pytest.raises(TypeError, match="`name`"):
        optimizers.CosineDecay(0.1, 10, name=3)
    assert optimizers.Adam(name=None).name == "adam"


def test_configs_are_checked_too():
    config = optimizers.serialize(optimizers.Adam())
    config["config"]["beta_1"] = math.nan
    with pytest.raises(ValueError, match="`beta_1`"):
        optimizers.deserialize(config)
    config = optimizers.serialize(optimizers.SGD(learning_rate=optimizers.CosineDecay(0.1, 5)))
    config["config"]["learning_rate"]["config"]["decay_steps"] = 0
    with pytest.raises(ValueError, match="`decay_steps`"):
        optimizers.deserialize(config)


# -- one optimizer shared by threads --------------------------------------------------------------

_STEPS = 2000


def _gradients(seed):
    """A thread's gradients: different for each step and thread, reproducible."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 3)).astype(F32) for _ in range(_STEPS)]


def _initial(seed):
    return np.random.default_rng(100 + seed).standard_normal((2, 3)).astype(F32)


@pytest.fixture
def frequent_thread_switches():
    """Switch threads as often as the interpreter allows, so unguarded steps would interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_shared_optimizer_steps_from_two_threads(frequent_thread_switches):
    """Each thread's variables end exactly as if stepped alone; no step is lost or mixed."""
    seeds = (1, 2)
    grads = {s: _gradients(s) for s in seeds}
    shared = optimizers.SGD(learning_rate=0.01, momentum=0.9)
    variables = {s: (Variable(_initial(s), name=f"w{s}"), Variable(_initial(s) * 2, name=f"b{s}"))
                 for s in seeds}
    barrier = threading.Barrier(len(seeds))
    errors = []

    def train(seed):
        try:
            barrier.wait(timeout=30)  # both threads start stepping together
            w, b = variables[seed]
            for g in grads[seed]:
                shared.apply([g, -g], [w, b])
        except BaseException as exc:  # reported by the main thread: a thread's own is lost
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert errors == []
    assert shared.iterations == len(seeds) * _STEPS
    assert len(shared.variables_state()) == 2 * len(seeds)

    for s in seeds:  # the reference: the same steps, one thread, an optimizer of its own
        alone = optimizers.SGD(learning_rate=0.01, momentum=0.9)
        w, b = Variable(_initial(s)), Variable(_initial(s) * 2)
        for g in grads[s]:
            alone.apply([g, -g], [w, b])
        for got, want in zip(variables[s], (w, b), strict=True):
            np.testing.assert_array_equal(got.numpy(), want.numpy())  # bitwise, no tolerance
            (slot,) = shared.variables_state()[got]
            (ref,) = alone.variables_state()[want]
            np.testing.assert_array_equal(slot, ref)


def test_a_step_waits_for_the_one_in_progress():
    """A second thread's step starts only once the first is committed.

    The first step is held between its compute and its commit (by its variable's constraint)
    while another thread steps the same optimizer. Adam's step number comes from
    ``iterations``: a step let through early would also be step 1, not step 2.
    """
    opt = optimizers.Adam(learning_rate=0.1)
    second_done = threading.Event()
    finished_early = []
    b = Variable(_f32(1.0, -1.0), name="b")

    def second_step():
        opt.apply([_f32(0.5, 0.5)], [b])
        second_done.set()

    other = threading.Thread(target=second_step)

    def hold(value):
        if not finished_early:  # the first step only
            other.start()
            # Long enough for an unguarded step to finish; a guarded one cannot start.
            finished_early.append(second_done.wait(timeout=0.5))
        return value

    a = Variable(_f32(1.0, 1.0), name="a", constraint=hold)
    opt.apply([_f32(1.0, 1.0)], [a])
    other.join(timeout=30)
    assert finished_early == [False]
    assert second_done.is_set() and opt.iterations == 2

    ref = optimizers.Adam(learning_rate=0.1)  # b's step as step 2
    ref.apply([_f32(1.0, 1.0)], [Variable(_f32(1.0, 1.0))])
    b_ref = Variable(_f32(1.0, -1.0))
    ref.apply([_f32(0.5, 0.5)], [b_ref])
    np.testing.assert_array_equal(b.numpy(), b_ref.numpy())


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_copies_get_a_lock_of_their_own(how):
    opt = optimizers.SGD(learning_rate=0.5, momentum=0.9)
    v = Variable(_f32(1.0, 2.0))
    opt.apply([_f32(1.0, 1.0)], [v])
    copies = {
        "copy": lambda: copy.copy(opt),
        "deepcopy": lambda: copy.deepcopy(opt),
        "pickle": lambda: pickle.loads(pickle.dumps(opt)),
    }
    other = copies[how]()
    assert other._apply_lock is not opt._apply_lock
    assert "_apply_lock" not in opt.__getstate__()
    with opt._apply_lock:  # the original busy in another step: the copy is not blocked
        done = []
        t = threading.Thread(target=lambda: done.append(other.apply([_f32(1.0, 1.0)], [v])))
        t.start()
        t.join(timeout=30)
    assert done == [opt.iterations + 1]
