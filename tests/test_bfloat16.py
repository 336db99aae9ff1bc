"""bfloat16 (ml_dtypes') as an input dtype: conversions, group norm paths, layers, policies.

* The kernels' conversions are exact against `ml_dtypes`: all 65,536 codes widened, and the
  narrowing of every bfloat16 value, every midpoint between neighbours (ties to even) and one
  float32 ulp either side, subnormals, signed zeros, infinities, NaNs with payloads, overflow
  and random bit patterns.
* `group_norm`/`group_norm_backward` on bfloat16 give exactly the float32 computation on the
  same values, rounded to bfloat16 (so the error is bfloat16's rounding of the output), on both
  kernel families and every strategy.
* Layers under `"mixed_bfloat16"`/`"bfloat16"` run forward and backward, and Keras configs with
  these policies load and predict as Keras does, to bfloat16 rounding.

One shape per kernel path keeps the compilations (one per kernel touched) few.
"""

from __future__ import annotations

import json
import sys

import numba
import numpy as np
import pytest
from reference import group_norm_backward_ref, group_norm_ref

import numba_gn
import numba_gn.autograd as ag
from numba_gn import _dtypes, _engine, layers
from numba_gn.autograd import GradientTape
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.kernels import _bfloat, _common
from numba_gn.layers import DTypePolicy, GroupNormalization
from numba_gn.layers import dtype_policy as policies

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _bits(a: np.ndarray) -> np.ndarray:
    """The 16-bit patterns of a bfloat16 array (to compare NaNs and signed zeros too)."""
    return np.asarray(a).view(np.uint16)


# -- recognising the dtype ------------------------------------------------------------------------


def test_bfloat16_is_recognised_by_its_dtype_alone():
    assert (BF16.kind, BF16.itemsize, BF16.name) == ("V", 2, "bfloat16")
    assert _dtypes.is_bfloat16(BF16) and _dtypes.is_float(BF16)
    assert _dtypes.is_bfloat16(BF16.newbyteorder(">"))
    for other in (np.float16, np.float32, np.int16, np.uint16, "V2", ml_dtypes.float8_e4m3fn):
        assert not _dtypes.is_bfloat16(np.dtype(other))
    assert not _dtypes.is_float(np.dtype(np.int16)) and _dtypes.is_float(np.dtype(np.float16))
    assert _dtypes.bfloat16() == BF16


# -- conversions ----------------------------------------------------------------------------------


@numba.njit(cache=False)
def _widen(codes):
    out = np.empty(codes.size, dtype=np.float32)
    for i in range(codes.size):
        out[i] = _bfloat.bfloat_to_float(codes[i])
    return out


@numba.njit(cache=False)
def _narrow(values):
    out = np.empty(values.size, dtype=np.int16)
    for i in range(values.size):
        out[i] = _bfloat.float_to_bfloat(values[i])
    return out


ALL_CODES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def test_widening_is_exact_for_every_code():
    got = _widen(ALL_CODES.view(np.int16)).view(np.uint32)
    assert np.array_equal(got, ALL_CODES.astype(np.uint32) << 16)
    assert np.array_equal(got, ALL_CODES.view(BF16).astype(np.float32).view(np.uint32))
    assert np.array_equal(_bfloat.py_bfloat_to_float(ALL_CODES).view(np.uint32), got)


def _narrowing_inputs(rng: np.random.Generator) -> np.ndarray:
    every = ALL_CODES.view(BF16).astype(np.float32)  # every value, NaNs and infinities too
    finite = np.unique(every[np.isfinite(every)])
    mid = (finite[:-1].astype(np.float64) + finite[1:].astype(np.float64)) / 2
    mid32 = mid.astype(np.float32)  # exact: a bfloat16 midpoint has 9 significant bits
    assert np.array_equal(mid32.astype(np.float64), mid)
    up = np.nextafter(mid32, np.float32(np.inf))
    down = np.nextafter(mid32, np.float32(-np.inf))
    special = np.array(
        [
            0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # +-0, +-Inf
            0x00000001, 0x80000001, 0x00008000, 0x00018000, 0x00007FFF, 0x007FFFFF,  # subnormals
            0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7F8000, 0xFF7FFFFF,  # overflow to Inf
            0x7F800001, 0x7F808000, 0x7F80FFFF, 0x7FBFFFFF, 0x7FC00000, 0x7FC00001,  # NaNs
            0x7FFF8000, 0x7FFFFFFF, 0xFF800001, 0xFFC00000, 0xFFFFFFFF, 0x7F817FFF,
        ],
        dtype=np.uint32,
    ).view(np.float32)
    subnormals = rng.integers(0, 1 << 23, 4096, dtype=np.uint32)
    subnormals |= rng.integers(0, 2, 4096, dtype=np.uint32) << 31
    random = rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64).astype(np.uint32)
    parts = [every, mid32, -mid32, up, down, -up, -down, special, subnormals.view(np.float32),
             random.view(np.float32)]
    return np.concatenate(parts)


def test_narrowing_matches_ml_dtypes_bit_for_bit(rng):
    values = _narrowing_inputs(rng)
    with np.errstate(invalid="ignore"):
        want = values.astype(BF16).view(np.uint16)
    got = _narrow(values).view(np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(values.view(np.uint32)[i]), hex(got[i]), hex(want[i]))
                           for i in bad[:5]]
    assert np.array_equal(_bfloat.py_float_to_bfloat(values).view(np.uint16), want)


def test_narrowing_keeps_nan_nan_and_rounds_ties_to_even():
    nans = np.array([0x7F800001, 0x7F80FFFF, 0x7FFFFFFF, 0xFF800001, 0xFFFF8000],
                    dtype=np.uint32).view(np.float32)
    got = _narrow(nans).view(np.uint16)
    # Quiet NaN with the input's sign: rounding the payload up never reaches Inf.
    assert [hex(g) for g in got] == ["0x7fc0", "0x7fc0", "0x7fc0", "0xffc0", "0xffc0"]
    one, after = 1.0, 1.0 + 2.0**-7  # neighbours in bfloat16; 1.0 is even, `after` odd
    # Subnormal ties too: 2^-133 is the smallest bfloat16 subnormal (code 1, odd).
    ties = np.array([one + 2.0**-8, after + 2.0**-8, 1.5 * 2.0**-133, 2.5 * 2.0**-133],
                    dtype=np.float32)
    assert _narrow(ties).view(BF16).astype(np.float64).tolist() == [
        1.0, 1.0 + 2.0**-6, 2.0**-132, 2.0**-132
    ]
    # Largest finite bfloat16 0x7F7F: below its upper midpoint it stays, from there on it is Inf.
    big = np.array([0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7F8000], np.uint32).view(np.float32)
    assert [hex(g) for g in _narrow(big).view(np.uint16)] == ["0x7f7f", "0x7f80", "0x7f80",
                                                               "0xff80"]


def test_python_bodies_of_load_and_store_agree_with_the_kernels(rng):
    # What runs under NUMBA_DISABLE_JIT.
    codes = rng.integers(-(1 << 15), 1 << 15, 64, dtype=np.int64).astype(np.int16)
    like = np.empty(1, np.int16)
    for c in codes:
        v = _common.load(c)
        assert isinstance(v, np.float32)
        assert v.view(np.uint32) == np.uint32(np.uint16(c.view(np.uint16))) << 16
        assert _common.store(v, like) == c or np.isnan(v)
    assert _common.compute_zeros(like, 3).dtype == np.float32
    assert _common.rounded(0.1, like) == np.float32(0.1)
    assert _common.LANES[np.dtype(np.int16)] == _common.LANES[np.dtype(np.float32)]


# -- group_norm / group_norm_backward -------------------------------------------------------------

# (shape, axis, groups, family): channels-last -> rows; channels-first and a middle axis with
# long runs -> slab; a middle axis with short runs -> rows.
LAYOUTS = [
    ((2, 4, 4, 16), -1, 4, "rows"),
    ((2, 16, 4, 4), 1, 4, "slab"),
    ((2, 3, 8, 64), 2, 2, "slab"),
    ((2, 3, 8, 5), 2, 2, "rows"),
]
STRATEGIES = ["serial", "fused", "chunked"]


def _data(rng, shape, axis):
    c = shape[axis]
    x = (5.0 + 3.0 * rng.standard_normal(shape)).astype(BF16)
    dy = rng.standard_normal(shape).astype(BF16)
    gamma = (1.0 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    return x, dy, gamma, beta


def _close_to(got: np.ndarray, ref: np.ndarray) -> None:
    """Within bfloat16's rounding of the output (2^-8 relative) plus float32 compute error."""
    err = np.abs(got.astype(np.float64) - ref)
    bound = 2.0**-8 * np.abs(ref) + 1e-4 * np.abs(ref).max()
    assert np.all(err <= bound), float((err - bound).max())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("shape", "axis", "groups", "family"), LAYOUTS)
def test_bfloat16_is_the_float32_computation_rounded(rng, shape, axis, groups, family, strategy):
    x, dy, gamma, beta = _data(rng, shape, axis)
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    with _engine.forced(strategy=strategy):
        y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
        assert _engine.last_path()[:2] == (family, strategy)
        dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
        y32, mean32, rstd32 = group_norm(x32, groups, gamma, beta, axis=axis, return_stats=True)
        dx32, dgamma32, dbeta32 = group_norm_backward(dy32, x32, mean32, rstd32, groups, gamma,
                                                      axis=axis)
    assert y.dtype == dx.dtype == BF16 and y.shape == dx.shape == shape
    assert mean.dtype == rstd.dtype == np.float64 and dgamma.dtype == dbeta.dtype == np.float32
    # Same statistics and sums as float32 (the values are the same); outputs rounded once.
    assert np.array_equal(mean, mean32) and np.array_equal(rstd, rstd32)
    assert np.array_equal(dgamma, dgamma32) and np.array_equal(dbeta, dbeta32)
    assert np.array_equal(_bits(y), _bits(y32.astype(BF16)))
    assert np.array_equal(_bits(dx), _bits(dx32.astype(BF16)))
    # And against float64 on the bfloat16 values.
    y_ref, mean_ref, _ = group_norm_ref(x, groups, gamma, beta, axis=axis)
    dx_ref, dgamma_ref, dbeta_ref = group_norm_backward_ref(dy, x, groups, gamma, axis=axis)
    _close_to(y, y_ref)
    _close_to(dx, dx_ref)
    np.testing.assert_allclose(mean.reshape(mean_ref.shape), mean_ref, rtol=1e-6)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=1e-5, atol=1e-5)


def test_transposed_and_strided_inputs(rng):
    x, _, gamma, beta = _data(rng, (2, 4, 4, 16), -1)
    # NCHW memory seen as NHWC (a free canonical view), and a strided view (copied first).
    transposed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    strided = np.concatenate([x, x], axis=2)[:, :, ::2]
    for v in (transposed, strided):
        want = group_norm(v.astype(np.float32), 4, gamma, beta).astype(BF16)
        assert np.array_equal(_bits(group_norm(v, 4, gamma, beta)), _bits(want))


def test_nan_and_inf_stay_in_their_sample_and_group(rng):
    x, dy, gamma, beta = _data(rng, (3, 4, 4, 16), -1)
    bad = x.copy()
    bad[0, 1, 2, 5] = np.nan  # sample 0, group 1 (channels 4..7)
    bad[2, 0, 0, 12] = np.inf  # sample 2, group 3
    y, mean, rstd = group_norm(bad, 4, gamma, beta, return_stats=True)
    clean = group_norm(x, 4, gamma, beta)
    poisoned = np.zeros((3, 4), bool)
    poisoned[0, 1] = poisoned[2, 3] = True
    yg = y.astype(np.float32).reshape(3, 16, 4, 4)
    assert np.isnan(yg[poisoned.nonzero()[0], :, poisoned.nonzero()[1]]).all()
    keep = ~poisoned
    assert np.array_equal(_bits(y.reshape(3, 16, 4, 4)[keep.nonzero()[0], :, keep.nonzero()[1]]),
                          _bits(clean.reshape(3, 16, 4, 4)[keep.nonzero()[0], :,
                                                           keep.nonzero()[1]]))
    # A NaN makes the group's statistics NaN, an Inf its mean Inf and its rstd NaN.
    assert not np.isfinite(mean[poisoned]).any() and np.isnan(rstd[poisoned]).all()
    assert np.isfinite(mean[keep]).all() and np.isfinite(rstd[keep]).all()
    dx, _, _ = group_norm_backward(dy, bad, mean, rstd, 4, gamma)
    dxg = dx.astype(np.float32).reshape(3, 16, 4, 4)
    assert np.isnan(dxg[poisoned.nonzero()[0], :, poisoned.nonzero()[1]]).all()
    assert np.isfinite(dxg[keep.nonzero()[0], :, keep.nonzero()[1]]).all()


def test_empty_batch():
    x = np.zeros((0, 4, 8), BF16)
    y, mean, rstd = group_norm(x, 2, return_stats=True)
    assert y.dtype == BF16 and y.shape == x.shape and mean.shape == rstd.shape == (0, 2)
    dx, dgamma, dbeta = group_norm_backward(x, x, mean, rstd, 2)
    assert dx.dtype == BF16 and dx.shape == x.shape
    assert dgamma.dtype == dbeta.dtype == np.float32 and dgamma.shape == (8,)


def test_out_dtype_rules_are_float16s(rng):
    x, dy, gamma, beta = _data(rng, (2, 4, 4, 16), -1)
    y = group_norm(x, 4, gamma, beta)
    out = np.empty_like(x)
    assert group_norm(x, 4, gamma, beta, out=out) is out
    assert np.array_equal(_bits(out), _bits(y))
    inplace = x.copy()
    group_norm(inplace, 4, gamma, beta, out=inplace)
    assert np.array_equal(_bits(inplace), _bits(y))
    with pytest.raises(TypeError, match="`out` must have dtype bfloat16, got float16"):
        group_norm(x, 4, out=np.empty(x.shape, np.float16))
    with pytest.raises(TypeError, match="`out` must have dtype float32, got bfloat16"):
        group_norm(x.astype(np.float32), 4, out=np.empty_like(x))
    # dy of another float dtype is cast to x's (as for float16), out= of x's dtype is written.
    _, mean, rstd = group_norm(x, 4, gamma, beta, return_stats=True)
    dx = group_norm_backward(dy, x, mean, rstd, 4, gamma)[0]
    dx_out = np.empty_like(x)
    got = group_norm_backward(dy.astype(np.float32), x, mean, rstd, 4, gamma, out=dx_out)
    assert got[0] is dx_out and np.array_equal(_bits(dx_out), _bits(dx))


def test_bfloat16_gamma_gives_bfloat16_parameter_gradients_and_byte_order(rng):
    x, dy, gamma, beta = _data(rng, (2, 3, 8, 5), 2)
    g16 = gamma.astype(BF16)
    y, mean, rstd = group_norm(x, 2, g16, beta.astype(BF16), axis=2, return_stats=True)
    ref = group_norm(x, 2, g16.astype(np.float32), beta.astype(BF16).astype(np.float32), axis=2)
    assert np.array_equal(_bits(y), _bits(ref))
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, 2, g16, axis=2)
    assert dgamma.dtype == dbeta.dtype == BF16
    swapped = x.astype(BF16.newbyteorder(">"))
    assert np.array_equal(_bits(group_norm(swapped, 2, axis=2)), _bits(group_norm(x, 2, axis=2)))


def test_other_void_dtypes_are_still_refused():
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        group_norm(np.zeros((2, 4), "V2"), 2)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        group_norm(np.zeros((2, 4), ml_dtypes.float8_e4m3fn), 2)


# -- policies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "variable", "compute"),
    [("bfloat16", "bfloat16", "bfloat16"), ("mixed_bfloat16", "float32", "bfloat16")],
)
def test_bfloat16_policies_as_keras_defines_them(keras, name, variable, compute):
    ours = DTypePolicy(name)
    theirs = keras.DTypePolicy(name)
    assert (ours.variable_dtype, ours.compute_dtype) == (variable, compute)
    assert (theirs.variable_dtype, theirs.compute_dtype) == (variable, compute)
    assert ours.is_mixed == (variable != compute) and repr(ours) == repr(theirs)
    assert ours.serialize() == keras.saving.serialize_keras_object(theirs)
    assert policies.get(keras.saving.serialize_keras_object(theirs)) == ours
    if name == "bfloat16":  # a dtype names its policy, as "float16" does
        assert policies.get(BF16) == ours and policies.get(ml_dtypes.bfloat16) == ours


def test_bfloat16_policy_parses_without_ml_dtypes_and_fails_clearly_on_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` now fails
    policy = policies.get({"module": "keras", "class_name": "DTypePolicy",
                           "config": {"name": "mixed_bfloat16"}, "registered_name": None})
    layer = GroupNormalization(groups=2, dtype=policy)
    assert layer.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"
    assert policy.is_mixed and policy.variable_dtype == "float32"
    with pytest.raises(ImportError, match="ml_dtypes"):
        policy.compute_dtype  # noqa: B018
    with pytest.raises(ImportError, match="pip install ml_dtypes"):
        layer(np.ones((2, 4), np.float32))
    with pytest.raises(ImportError, match="ml_dtypes"):
        layers.Dense(2, dtype="bfloat16")(np.ones((2, 4), np.float32))


# -- layers ---------------------------------------------------------------------------------------


def test_group_normalization_layer_mixed_bfloat16_forward_and_backward(rng):
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    layer = GroupNormalization(groups=4, dtype="mixed_bfloat16")
    layer.build(x.shape)
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    layer.set_weights([gamma, beta])
    with GradientTape() as tape:
        y = layer(x)
        loss = ag.sum(ag.cast(y, np.float32) ** 2)
    assert y.dtype == BF16 and all(w.dtype == np.float32 for w in layer.weights)
    # The layer normalises its float32 input and rounds the output to bfloat16.
    want = group_norm(x, 4, gamma.astype(np.float32), beta.astype(np.float32)).astype(BF16)
    assert np.array_equal(_bits(y.numpy()), _bits(want))
    dgamma, dbeta = tape.gradient(loss, layer.weights)
    assert dgamma.dtype == dbeta.dtype == np.float32
    y32 = want.astype(np.float64)
    _, dgamma_ref, dbeta_ref = group_norm_backward_ref(2 * y32, x, 4, gamma)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=1e-5, atol=1e-5)
    # bfloat16 input to a float32 layer: computed in float32, returned as bfloat16 (as float16).
    plain = GroupNormalization(groups=4)
    assert plain(x.astype(BF16)).dtype == BF16


def _small_model(policy: str) -> numba_gn.Sequential:
    return numba_gn.Sequential([
        layers.Input((6, 6, 2)),
        layers.Conv2D(8, 3, padding="same", dtype=policy),
        layers.GroupNormalization(4, dtype=policy),
        layers.Activation("silu", dtype=policy),
        layers.GlobalAveragePooling2D(dtype=policy),
        layers.Dense(3, activation="softmax", dtype=policy),
    ])


def test_sequential_mixed_bfloat16_forward_backward_and_fit(rng):
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    target = rng.standard_normal((4, 3)).astype(np.float32)
    model = _small_model("mixed_bfloat16")
    reference = _small_model("float32")
    reference.set_weights(model.get_weights())
    with GradientTape() as tape:
        y = model(x)
        loss = ag.sum(ag.cast(y, np.float32) ** 2)
    assert y.dtype == BF16
    assert all(w.dtype == np.float32 for w in model.weights)
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == 6
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in grads)
    assert np.abs(grads[0]).max() > 0 and np.abs(grads[-2]).max() > 0  # conv and dense kernels
    y32 = reference.predict(x, verbose=0)
    np.testing.assert_allclose(y.numpy().astype(np.float32), y32, atol=2e-2)
    model.compile(optimizer="adam", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, target, epochs=1, batch_size=4, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() and w.dtype == np.float32 for w in after)
    assert not np.array_equal(before[0], after[0]) and not np.array_equal(before[-2], after[-2])
    assert model.predict(x, verbose=0).dtype == BF16


def _keras_model(keras, policy):
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c", dtype=policy)(inp)
    h = keras.layers.GroupNormalization(4, name="gn", dtype=policy)(h)
    h = keras.layers.Activation("silu", name="act", dtype=policy)(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap", dtype=policy)(h)
    return keras.Model(inp, keras.layers.Dense(3, name="head", dtype=policy)(h))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_keras_model_with_bfloat16_policy_loads_and_predicts_the_same(keras, rng, policy):
    theirs = _keras_model(keras, policy)
    ours = numba_gn.models.model_from_json(theirs.to_json())
    assert [la.dtype_policy.name for la in ours.layers[1:]] == [policy] * 5
    weights = [(0.3 * rng.standard_normal(w.shape)).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    assert [w.dtype for w in ours.get_weights()] == [w.dtype for w in theirs.get_weights()]
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    expected = theirs.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert got.dtype == expected.dtype == BF16
    # Both round the weights and the input to bfloat16 (the policy's casts), then every layer's
    # output, Keras after more of the steps inside a layer: they agree to a few bfloat16 ulps
    # of the output scale, and ours is the closer to float64 on the same rounded values.
    truth = _keras_model(keras, "float64")
    truth.set_weights([w.astype(BF16).astype(np.float64) for w in weights])
    exact = truth.predict(x.astype(BF16).astype(np.float64), verbose=0)
    ulp = 2.0**-8 * np.abs(exact).max()
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=6 * ulp)
    np.testing.assert_allclose(got, exact, rtol=0, atol=2 * ulp)
    # Layer configs go both ways unchanged.
    config = theirs.get_layer("gn").get_config()
    mine = GroupNormalization.from_config(config)
    assert json.dumps(mine.get_config()) == json.dumps(config)
    back = keras.layers.GroupNormalization.from_config(mine.get_config())
    assert json.dumps(back.get_config()) == json.dumps(config)
