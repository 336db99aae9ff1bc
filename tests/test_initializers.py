"""Initializers: Keras's defaults, config keys, fan rules, and sample statistics."""

import math
import os

import numpy as np
import pytest

from numba_gn.params import initializers as inits

TRUNC = 0.87962566103423978  # stddev of a unit normal truncated to [-2, 2]


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    return pytest.importorskip("keras")


# -- defaults and configs ---------------------------------------------------------------------


DEFAULT_CONFIGS = {
    "Zeros": {},
    "Ones": {},
    "Constant": {"value": 0.0},
    "Identity": {"gain": 1.0},
    "RandomNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
    "RandomUniform": {"seed": None, "minval": -0.05, "maxval": 0.05},
    "TruncatedNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
    "VarianceScaling": {
        "seed": None,
        "scale": 1.0,
        "mode": "fan_in",
        "distribution": "truncated_normal",
        "input_axes": None,
        "output_axes": None,
    },
    "Orthogonal": {"seed": None, "gain": 1.0},
    **{
        name: {"seed": None, "input_axes": None, "output_axes": None}
        for name in [
            "GlorotNormal",
            "GlorotUniform",
            "HeNormal",
            "HeUniform",
            "LecunNormal",
            "LecunUniform",
        ]
    },
}


@pytest.mark.parametrize(("name", "config"), DEFAULT_CONFIGS.items())
def test_default_configs(name, config):
    assert getattr(inits, name)().get_config() == config


CONFIG_CASES = [
    ("Constant", {"value": 3.5}),
    ("RandomNormal", {"mean": 1.0, "stddev": 2.0, "seed": 7}),
    ("RandomUniform", {"minval": -2.0, "maxval": 3.0, "seed": 7}),
    ("TruncatedNormal", {"mean": -1.0, "stddev": 0.5, "seed": 7}),
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform", "seed": 1}),
    ("VarianceScaling", {"distribution": "normal"}),
    ("VarianceScaling", {"mode": "fan_out", "distribution": "untruncated_normal"}),
    ("VarianceScaling", {"input_axes": [0, 1], "output_axes": [2]}),
    ("GlorotUniform", {"seed": 1}),
    ("GlorotNormal", {"seed": 2}),
    ("HeNormal", {}),
    ("HeUniform", {"seed": 3}),
    ("LecunNormal", {"seed": 4}),
    ("LecunUniform", {}),
    ("Orthogonal", {"gain": 2.0, "seed": 5}),
    ("Zeros", {}),
    ("Ones", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), CONFIG_CASES)
def test_config_matches_keras(keras, name, kwargs):
    ours = getattr(inits, name)(**kwargs)
    theirs = getattr(keras.initializers, name)(**kwargs)
    assert ours.get_config() == theirs.get_config()


def test_identity_config_keeps_gain():
    # Keras's Identity forgets its gain when serialized; ours keeps it.
    assert inits.Identity(gain=2.5).get_config() == {"gain": 2.5}
    assert inits.Identity.from_config({"gain": 2.5}).gain == 2.5


@pytest.mark.parametrize(("name", "kwargs"), CONFIG_CASES)
def test_from_config_and_clone(name, kwargs):
    obj = getattr(inits, name)(**kwargs)
    again = type(obj).from_config(obj.get_config())
    assert again.get_config() == obj.get_config()
    clone = obj.clone()
    assert clone is not obj and clone.get_config() == obj.get_config()


def test_normal_is_an_alias_for_truncated_normal():
    assert inits.VarianceScaling(distribution="Normal").distribution == "truncated_normal"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"mode": "fan_sum"}, "mode"),
        ({"distribution": "cauchy"}, "distribution"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_variance_scaling_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        inits.VarianceScaling(**kwargs)


# -- fans -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "fans"),
    [
        ((), (1, 1)),
        ((7,), (7, 7)),
        ((3, 5), (3, 5)),
        ((3, 4, 8), (12, 24)),  # conv1d kernel: receptive field 3
        ((3, 3, 16, 32), (144, 288)),  # conv2d kernel: receptive field 9
        ((2, 2, 2, 4, 6), (32, 48)),
    ],
)
def test_compute_fans(shape, fans):
    assert inits.compute_fans(shape) == fans


def test_compute_fans_with_axes():
    assert inits.compute_fans((2, 3, 4), input_axes=[0, 1], output_axes=[2]) == (6, 4)


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (3, 4, 8), (3, 3, 16, 32), (2, 2, 2, 4, 6)])
def test_compute_fans_matches_keras(keras, shape):
    from keras.src.initializers.random_initializers import compute_fans

    assert inits.compute_fans(shape) == compute_fans(shape)


# -- statistics -------------------------------------------------------------------------------

SHAPE = (400, 500)  # 200k samples: sample std within ~0.5% of the truth


def _check_uniform(x, limit):
    assert x.min() >= -limit and x.max() <= limit
    assert x.max() > 0.999 * limit and x.min() < -0.999 * limit
    assert np.std(x) == pytest.approx(limit / math.sqrt(3), rel=0.01)
    assert abs(np.mean(x)) < 0.01 * limit


def _check_truncated(x, stddev_after):
    raw = stddev_after / TRUNC  # stddev before truncation
    assert np.abs(x).max() <= 2 * raw * (1 + 1e-6)
    assert np.abs(x).max() > 1.99 * raw
    assert np.std(x) == pytest.approx(stddev_after, rel=0.01)
    assert abs(np.mean(x)) < 0.01 * stddev_after


@pytest.mark.parametrize(
    ("cls", "limit"),
    [
        (inits.GlorotUniform, math.sqrt(6 / (400 + 500))),
        (inits.HeUniform, math.sqrt(6 / 400)),
        (inits.LecunUniform, math.sqrt(3 / 400)),
    ],
)
def test_uniform_presets(cls, limit):
    _check_uniform(cls(seed=0)(SHAPE), limit)


@pytest.mark.parametrize(
    ("cls", "stddev"),
    [
        (inits.GlorotNormal, math.sqrt(2 / (400 + 500))),
        (inits.HeNormal, math.sqrt(2 / 400)),
        (inits.LecunNormal, math.sqrt(1 / 400)),
    ],
)
def test_truncated_normal_presets(cls, stddev):
    _check_truncated(cls(seed=0)(SHAPE), stddev)


def test_glorot_uniform_conv_kernel_uses_receptive_field():
    x = inits.GlorotUniform(seed=1)((3, 3, 64, 128))
    _check_uniform(x, math.sqrt(6 / (9 * 64 + 9 * 128)))


@pytest.mark.parametrize(("mode", "n"), [("fan_in", 400), ("fan_out", 500), ("fan_avg", 450)])
def test_variance_scaling_modes(mode, n):
    x = inits.VarianceScaling(scale=3.0, mode=mode, distribution="untruncated_normal", seed=2)(
        SHAPE
    )
    assert np.std(x) == pytest.approx(math.sqrt(3.0 / n), rel=0.01)
    # Untruncated: some samples lie beyond 2 stddev (about 4.6% of them).
    assert np.mean(np.abs(x) > 2 * math.sqrt(3.0 / n)) == pytest.approx(0.0455, abs=0.003)


def test_variance_scaling_uniform_and_small_fans():
    _check_uniform(
        inits.VarianceScaling(2.0, "fan_in", "uniform", seed=3)(SHAPE), math.sqrt(6 / 400)
    )
    # Fans below 1 are clamped to 1 (Keras's max(1, n)).
    x = inits.VarianceScaling(scale=0.25, distribution="uniform", seed=3)((0, 1000))
    assert x.shape == (0, 1000)


def test_random_normal_and_uniform():
    x = inits.RandomNormal(mean=1.5, stddev=0.5, seed=4)(SHAPE)
    assert np.mean(x) == pytest.approx(1.5, abs=0.005)
    assert np.std(x) == pytest.approx(0.5, rel=0.01)
    u = inits.RandomUniform(minval=-1.0, maxval=3.0, seed=4)(SHAPE)
    assert u.min() >= -1.0 and u.max() <= 3.0
    assert np.mean(u) == pytest.approx(1.0, abs=0.01)
    assert np.std(u) == pytest.approx(4 / math.sqrt(12), rel=0.01)


def test_truncated_normal_redraws_beyond_two_stddev():
    x = inits.TruncatedNormal(mean=1.0, stddev=2.0, seed=5)(SHAPE)
    assert x.min() >= 1.0 - 4.0 and x.max() <= 1.0 + 4.0
    assert np.mean(x) == pytest.approx(1.0, abs=0.01)
    assert np.std(x) == pytest.approx(2.0 * TRUNC, rel=0.01)


# -- deterministic initializers ---------------------------------------------------------------


def test_zeros_ones_constant():
    np.testing.assert_array_equal(inits.Zeros()((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(inits.Ones()(4), np.ones(4, np.float32))
    c = inits.Constant(2.5)((3, 2), dtype="float64")
    assert c.dtype == np.float64
    np.testing.assert_array_equal(c, np.full((3, 2), 2.5))
    assert inits.Zeros()((2,), dtype="int32").dtype == np.int32
    assert inits.Constant(np.float32(1.25)).get_config() == {"value": 1.25}


def test_constant_rejects_non_scalars():
    with pytest.raises(ValueError, match="scalar"):
        inits.Constant([1.0, 2.0])
    with pytest.raises(TypeError, match="number"):
        inits.Constant("1.0")


def test_identity():
    np.testing.assert_array_equal(inits.Identity()((3, 3)), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(inits.Identity(gain=2.0)((2, 4)), 2.0 * np.eye(2, 4))
    with pytest.raises(ValueError, match="2D"):
        inits.Identity()((2, 2, 2))
    with pytest.raises(ValueError, match="2D"):
        inits.Identity()((3,))


@pytest.mark.parametrize(
    ("shape", "check"),
    [
        ((5, 8), "rows"),
        ((8, 5), "cols"),
        ((6, 6), "both"),
        ((3, 3, 4, 6), "cols"),  # flattened to (36, 6)
        ((2, 3, 10), "rows"),  # flattened to (6, 10)
    ],
)
def test_orthogonal(shape, check):
    gain = 1.5
    w = inits.Orthogonal(gain=gain, seed=6)(shape, dtype="float64")
    assert w.shape == shape
    m = w.reshape(-1, shape[-1]) / gain
    if check in ("rows", "both"):
        np.testing.assert_allclose(m @ m.T, np.eye(m.shape[0]), atol=1e-12)
    if check in ("cols", "both"):
        np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-12)


def test_orthogonal_float32_and_rank_check():
    w = inits.Orthogonal(seed=1)((16, 16))
    assert w.dtype == np.float32
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-6)
    with pytest.raises(ValueError, match="two-dimensional"):
        inits.Orthogonal()((4,))


def test_orthogonal_entries_have_haar_variance():
    # Uniform (Haar) orthogonal matrices: each entry has mean 0 and variance 1/n.
    samples = np.array([inits.Orthogonal(seed=s)((8, 8))[0, 0] for s in range(2000)])
    assert np.var(samples) == pytest.approx(1 / 8, rel=0.1)
    assert abs(np.mean(samples)) < 0.03


# -- seeds, shapes, dtypes --------------------------------------------------------------------

RANDOM_CLASSES = [
    inits.RandomNormal,
    inits.RandomUniform,
    inits.TruncatedNormal,
    inits.VarianceScaling,
    inits.GlorotNormal,
    inits.GlorotUniform,
    inits.HeNormal,
    inits.HeUniform,
    inits.LecunNormal,
    inits.LecunUniform,
    inits.Orthogonal,
]


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_int_seed_is_reproducible(cls):
    a = cls(seed=42)((6, 5))
    np.testing.assert_array_equal(a, cls(seed=42)((6, 5)))
    init = cls(seed=42)
    np.testing.assert_array_equal(init((6, 5)), init((6, 5)))  # Keras: same values every call
    assert not np.array_equal(a, cls(seed=43)((6, 5)))
    np.testing.assert_array_equal(cls(seed=np.int64(42))((6, 5)), a)


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_no_seed_gives_fresh_values(cls):
    init = cls()
    assert not np.array_equal(init((6, 5)), init((6, 5)))


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_dtypes_and_shapes(cls):
    assert cls(seed=0)((4, 3)).dtype == np.float32
    out = cls(seed=0)([4, 3], dtype=np.float64)
    assert out.dtype == np.float64 and out.shape == (4, 3)
    assert cls(seed=0)((4, 3), dtype="float16").dtype == np.float16
    with pytest.raises(ValueError, match="floating"):
        cls(seed=0)((4, 3), dtype="int32")


def test_negative_seed_is_accepted_and_reproducible():
    a = inits.RandomNormal(seed=-3)((3,))
    np.testing.assert_array_equal(a, inits.RandomNormal(seed=-3)((3,)))


@pytest.mark.parametrize("bad", [True, 1.0, "3", [1]])
def test_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        inits.RandomNormal(seed=bad)


@pytest.mark.parametrize("bad", [(2, -1), (2.0, 3), "ab", None])
def test_bad_shapes(bad):
    with pytest.raises((TypeError, ValueError), match="shape"):
        inits.Zeros()(bad)


def test_base_initializer_is_abstract():
    with pytest.raises(NotImplementedError):
        inits.Initializer()((2,))
