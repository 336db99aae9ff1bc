"""``numba_gn.layers.GroupNormalization`` and the ``Layer`` base it stands on (no Keras needed).

Keras parity and Keras's own test cases are in test_layer_keras_parity.py; a training loop is
in test_layer_training.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, functional, gradcheck
from numba_gn import autograd as ag
from numba_gn.autograd.ops_masked import masked_group_norm
from numba_gn.functional_masked import group_norm_masked, group_norm_masked_backward
from numba_gn.layers import DTypePolicy, GroupNormalization, InputSpec, Layer
from numba_gn.params import Variable, constraints, initializers, regularizers


def _built(shape=(2, 3, 8), **kwargs) -> GroupNormalization:
    layer = GroupNormalization(**kwargs)
    layer.build(shape)
    return layer


# -- construction ---------------------------------------------------------------------------------


def test_defaults_are_keras_defaults():
    layer = GroupNormalization()
    assert (layer.groups, layer.axis, layer.epsilon, layer.center, layer.scale) == (
        32,
        -1,
        1e-3,
        True,
        True,
    )
    assert isinstance(layer.beta_initializer, initializers.Zeros)
    assert isinstance(layer.gamma_initializer, initializers.Ones)
    assert layer.beta_regularizer is None and layer.gamma_regularizer is None
    assert layer.beta_constraint is None and layer.gamma_constraint is None
    assert layer.group_size is None
    assert layer.dtype == layer.compute_dtype == "float32"
    assert layer.trainable and not layer.built and layer.supports_masking
    assert layer.gamma is None and layer.beta is None and layer.weights == []


def test_auto_names_are_unique_like_keras():
    class GroupNormalizationNamingProbe(GroupNormalization):
        pass

    names = [GroupNormalizationNamingProbe().name for _ in range(3)]
    assert names == [
        "group_normalization_naming_probe",
        "group_normalization_naming_probe_1",
        "group_normalization_naming_probe_2",
    ]
    assert re.fullmatch(r"group_normalization(_\d+)?", GroupNormalization().name)
    assert GroupNormalization(name="gn").name == "gn"


@pytest.mark.parametrize("groups", [0, -2, 1.5, "32", True, None])
def test_invalid_groups_rejected_at_construction(groups):
    with pytest.raises(ValueError, match="argument `groups`"):
        GroupNormalization(groups=groups)


def test_groups_minus_one_constructs():
    assert GroupNormalization(groups=-1).groups == -1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_shape": (3,)}, TypeError, "input_shape"),
        ({"activity_regularizer": "l2", "foo": 1}, TypeError, r"\['activity_regularizer', 'foo'\]"),
        ({"name": "a/b"}, ValueError, "cannot contain character `/`"),
        ({"trainable": 1}, ValueError, "`trainable` to be a boolean"),
        ({"axis": 1.0}, TypeError, "`axis`"),
        ({"axis": ()}, TypeError, "`axis`"),
        ({"axis": (1, True)}, TypeError, "`axis`"),
        ({"epsilon": -1.0}, ValueError, "`epsilon`"),
        ({"group_size": 0}, ValueError, "`group_size`"),
        ({"dtype": "float8_e4m3fn"}, ValueError, "float8_e4m3fn"),
        ({"gamma_initializer": "no_such_init"}, ValueError, "no_such_init"),
        ({"beta_regularizer": 3}, TypeError, "regularizer"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        GroupNormalization(**kwargs)


# -- build ----------------------------------------------------------------------------------------


def test_undefined_channel_dim_uses_keras_message():
    layer = GroupNormalization()
    with pytest.raises(
        ValueError,
        match="input tensor should have a defined dimension but the layer received an input "
        "with shape",
    ):
        layer.build((None, 2, 2, 2, None))
    assert not layer.built


def test_groups_bigger_than_channels():
    with pytest.raises(ValueError, match="cannot be more than the number of channels"):
        GroupNormalization(groups=5)(np.ones((2, 2, 2, 4)))


def test_channels_not_a_multiple_of_groups_says_so_correctly():
    layer = GroupNormalization(groups=3)
    with pytest.raises(ValueError) as info:
        layer(np.ones((2, 2, 2, 4)))
    message = str(info.value)
    assert "number of channels (4) must be a multiple of the number of groups" in message
    # Keras's wording ("groups must be a multiple of the number of channels") is backwards.
    assert "must be a multiple of the number of channels" not in message
    assert not layer.built and layer.weights == []


@pytest.mark.parametrize("axis", [0, 3, -4, (1, 1), (1, -2)])
def test_bad_axis_for_the_rank(axis):
    with pytest.raises(ValueError, match="`axis`"):
        GroupNormalization(groups=1, axis=axis).build((2, 3, 4))


def test_failed_build_leaves_layer_reusable():
    layer = GroupNormalization(groups=4)
    with pytest.raises(ValueError):
        layer(np.ones((2, 3, 6)))
    y = layer(np.ones((2, 3, 8)))
    assert layer.built and y.shape == (2, 3, 8) and len(layer.weights) == 2


def test_build_is_once_and_sets_built():
    layer = _built((2, 3, 8), groups=4)
    assert layer.built and layer.input_spec.ndim == 3
    with pytest.raises(ValueError, match="already built"):
        layer.build((2, 3, 8))
    with pytest.raises(ValueError, match="already built"):
        layer.add_weight(name="extra", shape=(1,))
    assert len(layer.weights) == 2


def test_later_calls_are_checked_against_the_built_spec():
    layer = GroupNormalization(groups=4)
    layer(np.zeros((2, 3, 8), np.float32))
    assert layer(np.zeros((5, 7, 8), np.float32)).shape == (5, 7, 8)  # other dims are free
    with pytest.raises(ValueError, match=re.escape("(None, None, 8)")):
        layer(np.zeros((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="expected rank 3, got rank 2"):
        layer(np.zeros((2, 8), np.float32))


def test_input_spec_messages():
    spec = InputSpec(min_ndim=2, axes={-1: 4})
    spec.check((3, 4), "dense")
    spec.check((2, 3, 4), "dense")
    with pytest.raises(ValueError, match="rank >= 2"):
        spec.check((4,), "dense")
    with pytest.raises(ValueError, match="axis -1 must have size 4, got 5"):
        spec.check((2, 5), "dense")


def test_compute_output_shape():
    layer = GroupNormalization(groups=2, axis=(1, 2))
    assert layer.compute_output_shape((None, 4, 2, 5)) == (None, 4, 2, 5)
    with pytest.raises(ValueError):
        GroupNormalization(axis=3).compute_output_shape((2, 3, 4))


# -- weights --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("center", "scale", "names"),
    [
        (True, True, ["gamma", "beta"]),
        (False, True, ["gamma"]),
        (True, False, ["beta"]),
        (False, False, []),
    ],
)
def test_weights_order_shapes_dtypes(center, scale, names):
    layer = _built((2, 5, 6), groups=3, center=center, scale=scale)
    assert [w.name for w in layer.weights] == names
    assert all(isinstance(w, Variable) for w in layer.weights)
    assert all(w.shape == (6,) and w.dtype == np.float32 for w in layer.weights)
    assert (layer.gamma is not None) == scale and (layer.beta is not None) == center
    assert layer.trainable_weights == layer.weights and layer.non_trainable_weights == []
    assert layer.count_params() == 6 * len(names)


def test_initial_values_come_from_the_initializers():
    layer = _built(
        (2, 4), groups=2, gamma_initializer="zeros", beta_initializer=initializers.Constant(0.5)
    )
    gamma, beta = layer.get_weights()
    np.testing.assert_array_equal(gamma, np.zeros(4, np.float32))
    np.testing.assert_array_equal(beta, np.full(4, 0.5, np.float32))


def test_tuple_axis_weights_have_the_channel_shape_and_match_a_reshape(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    layer = _built(x.shape, groups=6, axis=(1, 2))
    assert [w.shape for w in layer.weights] == [(3, 4), (3, 4)]
    gamma = rng.standard_normal((3, 4)).astype(np.float32)
    beta = rng.standard_normal((3, 4)).astype(np.float32)
    layer.set_weights([gamma, beta])
    flat = _built((2, 12, 5), groups=6, axis=1)
    flat.set_weights([gamma.reshape(-1), beta.reshape(-1)])
    np.testing.assert_allclose(
        layer(x).numpy(), flat(x.reshape(2, 12, 5)).numpy().reshape(x.shape), atol=1e-6
    )


def test_freezing_moves_weights_to_non_trainable_and_back():
    layer = _built((2, 8), groups=2, gamma_regularizer="l2")
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert not any(w.trainable for w in layer.weights)
    assert layer.losses == []  # Keras: only trainable weights are regularized
    with GradientTape() as tape:  # frozen weights are not watched automatically
        y = ag.sum(layer(np.ones((2, 8), np.float32)))
    assert tape.gradient(y, layer.weights) == [None, None]
    layer.trainable = True
    assert layer.trainable_weights == layer.weights and len(layer.losses) == 1


def test_frozen_at_construction():
    layer = _built((2, 8), groups=2, trainable=False)
    assert layer.trainable_weights == [] and not layer.get_config()["trainable"]
    layer.trainable = True
    assert len(layer.trainable_weights) == 2


def test_get_weights_returns_copies_and_set_weights_round_trips(rng):
    layer = _built((2, 6), groups=3)
    values = [rng.standard_normal(6), rng.standard_normal(6)]
    layer.set_weights(values)
    got = layer.get_weights()
    for g, v in zip(got, values, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, v.astype(np.float32))
    got[0][:] = 123.0
    assert not np.any(layer.get_weights()[0] == 123.0)
    layer.set_weights([Tensor(values[1]), values[0].tolist()])  # Tensors and lists too
    np.testing.assert_array_equal(layer.get_weights()[0], values[1].astype(np.float32))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (lambda g, b: [g], ValueError, "length 1, but the layer was expecting 2"),
        (lambda g, b: [g, b, b], ValueError, "length 3"),
        (lambda g, b: [g, b[:-1]], ValueError, r"weight 1 \('beta'\) has shape \(6,\)"),
        (lambda g, b: [g, b.reshape(2, 3)], ValueError, r"shape \(2, 3\)"),
        (lambda g, b: [g, np.array(["a"] * 6)], TypeError, "must be numeric"),
        (lambda g, b: [g, [[1.0], [1.0, 2.0]]], ValueError, "value 1 for weight 'beta'"),
        (lambda g, b: np.stack([g, b]), TypeError, "list of arrays"),
    ],
)
def test_failed_set_weights_changes_nothing(rng, bad, error, match):
    layer = _built((2, 6), groups=3)
    before = layer.get_weights()
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    with pytest.raises(error, match=match):
        layer.set_weights(bad(gamma, beta))
    for b, a in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_losses_are_recomputed_from_current_values(rng):
    layer = _built((2, 4), groups=2, gamma_regularizer="l2", beta_regularizer=regularizers.L1(0.1))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    layer.set_weights([gamma, beta])
    losses = layer.losses
    assert len(losses) == 2 and all(isinstance(t, Tensor) and t.shape == () for t in losses)
    g32, b32 = gamma.astype(np.float32), beta.astype(np.float32)
    np.testing.assert_allclose(losses[0].numpy(), 0.01 * np.sum(g32**2), rtol=1e-6)
    np.testing.assert_allclose(losses[1].numpy(), 0.1 * np.sum(np.abs(b32)), rtol=1e-6)
    layer.set_weights([np.zeros(4), np.zeros(4)])
    assert [float(t.numpy()) for t in layer.losses] == [0.0, 0.0]


def test_constraints_are_carried_by_the_variables():
    layer = _built(
        (2, 4), groups=2, gamma_constraint="non_neg", beta_constraint=constraints.MaxNorm(1.0)
    )
    assert isinstance(layer.gamma.constraint, constraints.NonNeg)
    assert isinstance(layer.beta.constraint, constraints.MaxNorm)
    w = np.array([-1.0, 2.0, -3.0, 0.5], np.float32)
    np.testing.assert_array_equal(layer.gamma.constraint(w), [0.0, 2.0, 0.0, 0.5])
    assert layer.gamma.regularizer is None


def test_add_weight_defaults_like_keras():
    class Probe(Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 3))
            self.count = self.add_weight(name="count", shape=(), dtype="int64", trainable=False)

        def call(self, inputs):
            return inputs @ self.kernel

    layer = Probe()
    y = layer(np.ones((2, 4), np.float64))  # autocast: float64 input cast to float32
    assert y.dtype == np.float32 and y.shape == (2, 3)
    assert np.abs(layer.kernel.numpy()).max() > 0  # glorot_uniform, not zeros
    assert layer.count.numpy() == 0 and layer.count.dtype == np.int64
    assert [w.name for w in layer.trainable_weights] == ["kernel"]
    assert [w.name for w in layer.non_trainable_weights] == ["count"]
    with pytest.raises(TypeError, match="does not use masks"):
        layer(np.ones((2, 4)), mask=np.ones(2, bool))
    with pytest.raises(NotImplementedError):
        layer.compute_output_shape((2, 4))
    assert layer.compute_mask(None, np.ones(2, bool)) is None


def test_layer_rejects_lists_of_tensors_and_non_numeric_input():
    layer = GroupNormalization(groups=1)
    with pytest.raises(TypeError, match="one Tensor or array"):
        layer([Tensor(np.ones((2, 2))), Tensor(np.ones((2, 2)))])
    with pytest.raises(TypeError, match="numeric input"):
        layer(np.array([["a", "b"]]))


# -- configs --------------------------------------------------------------------------------------


def test_config_round_trip_is_json_equal():
    layer = GroupNormalization(
        groups=4,
        axis=1,
        epsilon=1e-5,
        center=False,
        gamma_initializer=initializers.RandomNormal(stddev=0.2, seed=3),
        gamma_regularizer=regularizers.L1L2(0.01, 0.02),
        beta_constraint="max_norm",
        name="gn_config",
        trainable=False,
    )
    config = layer.get_config()
    assert list(config) == [
        "name", "trainable", "dtype", "groups", "axis", "epsilon", "center", "scale",
        "beta_initializer", "gamma_initializer", "beta_regularizer", "gamma_regularizer",
        "beta_constraint", "gamma_constraint",
    ]  # fmt: skip
    clone = GroupNormalization.from_config(json.loads(json.dumps(config)))
    assert json.dumps(clone.get_config()) == json.dumps(config)
    assert clone.name == "gn_config" and not clone.trainable


def test_groups_minus_one_stays_in_config_after_build():
    layer = GroupNormalization(groups=-1)
    layer(np.ones((2, 3, 6), np.float32))
    assert layer.get_config()["groups"] == -1 and layer.groups == -1


def test_group_size_only_in_config_when_set(rng):
    assert "group_size" not in GroupNormalization().get_config()
    layer = GroupNormalization(group_size=2)
    config = layer.get_config()
    assert config["group_size"] == 2
    clone = GroupNormalization.from_config(config)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    np.testing.assert_allclose(
        clone(x).numpy(), functional.group_norm(x, 4, axis=-1, epsilon=1e-3), atol=1e-6
    )


def test_tuple_axis_survives_json():
    config = json.loads(json.dumps(GroupNormalization(axis=(1, 2)).get_config()))
    assert GroupNormalization.from_config(config).axis == (1, 2)


def test_from_config_rejects_unknown_keys_and_non_dicts():
    config = GroupNormalization().get_config()
    with pytest.raises(TypeError, match=r"Unknown key\(s\) \['activity_regularizer'\]"):
        GroupNormalization.from_config({**config, "activity_regularizer": None})
    with pytest.raises(TypeError, match="takes a dict"):
        GroupNormalization.from_config([("groups", 4)])


def test_from_config_never_imports_from_the_config():
    config = GroupNormalization().get_config()
    evil = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    with pytest.raises(ValueError, match="Refusing"):
        GroupNormalization.from_config({**config, "gamma_regularizer": evil})
    evil_policy = {**config["dtype"], "module": "os"}
    with pytest.raises(ValueError, match="Refusing"):
        GroupNormalization.from_config({**config, "dtype": evil_policy})


@pytest.mark.parametrize(
    ("dtype", "variable", "compute"),
    [
        (None, "float32", "float32"),
        ("float64", "float64", "float64"),
        (np.float64, "float64", "float64"),
        (np.dtype("float16"), "float16", "float16"),
        ("mixed_float16", "float32", "float16"),
        (DTypePolicy("mixed_float16"), "float32", "float16"),
        (
            {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": "float64"},
                "registered_name": None,
            },
            "float64",
            "float64",
        ),
        ({"class_name": "FloatDTypePolicy", "config": {"name": "float32"}}, "float32", "float32"),
    ],
)
def test_dtype_policies(dtype, variable, compute):
    layer = _built((2, 4), groups=2, dtype=dtype)
    assert (layer.dtype, layer.variable_dtype, layer.compute_dtype) == (variable, variable, compute)
    assert all(w.dtype == np.dtype(variable) for w in layer.weights)
    assert layer.get_config()["dtype"]["config"]["name"] == layer.dtype_policy.name


@pytest.mark.parametrize(
    "policy",
    [
        {"class_name": "DTypePolicyMap", "config": {"name": "float32"}},
        {"class_name": "DTypePolicy", "config": {"name": "float32", "x": 1}},
        {"class_name": "DTypePolicy", "config": {"name": "float32"}, "extra": 1},
        {"class_name": "DTypePolicy", "config": {"name": "int8_from_float32"}},
    ],
)
def test_bad_policy_dicts(policy):
    with pytest.raises(ValueError):
        GroupNormalization(dtype=policy)


# -- dtypes of the computation --------------------------------------------------------------------


def test_float16_computed_in_float32_returned_float16(rng):
    x = rng.standard_normal((2, 5, 8)).astype(np.float16)
    layer = _built(x.shape, groups=4)
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    layer.set_weights([gamma, beta])
    with GradientTape() as tape:
        y = layer(x)
        loss = ag.sum(ag.cast(y, np.float32) ** 2)
    assert y.dtype == np.float16
    assert layer.gamma.dtype == layer.beta.dtype == np.float32
    ref = functional.group_norm(x.astype(np.float64), 4, gamma, beta, epsilon=1e-3)
    np.testing.assert_allclose(y.numpy().astype(np.float64), ref, atol=5e-3, rtol=2e-3)
    grads = tape.gradient(loss, layer.weights)
    assert [g.dtype for g in grads] == [np.float32, np.float32]
    assert all(np.isfinite(g).all() for g in grads)


def test_float64_input_computed_and_returned_in_float64(rng):
    x = rng.standard_normal((2, 5, 8))
    y = _built(x.shape, groups=4)(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), functional.group_norm(x, 4), atol=1e-12)


def test_integer_input_becomes_float32():
    y = GroupNormalization(groups=2)(np.arange(16).reshape(2, 8))
    assert y.dtype == np.float32
    np.testing.assert_allclose(
        y.numpy(), functional.group_norm(np.arange(16.0).reshape(2, 8), 2), 1e-6
    )


def test_mixed_float16_outputs_float16_with_float32_weights():
    layer = GroupNormalization(groups=2, dtype="mixed_float16")
    y = layer(np.full((2, 4, 8), 70000.0, np.float32))
    assert y.dtype == np.float16 and not np.isnan(y.numpy()).any()
    assert all(w.dtype == np.float32 for w in layer.weights)


# -- masks ----------------------------------------------------------------------------------------


def _padded(rng, lengths, T=6, C=8):
    x = rng.standard_normal((len(lengths), T, C)).astype(np.float32)
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    return x, mask


def test_mask_padding_values_do_not_change_unmasked_outputs(rng):
    x, mask = _padded(rng, [6, 4, 1])
    layer = _built(x.shape, groups=4)
    layer.set_weights([rng.standard_normal(8), rng.standard_normal(8)])
    y = layer(x, mask=mask).numpy()
    for fill in (0.0, 1e4, -np.inf, np.nan):
        x2 = x.copy()
        x2[~mask] = fill
        y2 = layer(x2, mask=mask).numpy()
        np.testing.assert_array_equal(y2[mask], y[mask])


def test_mask_equals_normalising_the_unpadded_sequence(rng):
    x, mask = _padded(rng, [6, 3, 5])
    layer = _built(x.shape, groups=2)
    y = layer(x, mask=mask).numpy()
    for n, length in enumerate([6, 3, 5]):
        alone = layer(x[n : n + 1, :length]).numpy()[0]
        np.testing.assert_allclose(y[n, :length], alone, atol=2e-6)


def test_all_true_mask_equals_unmasked_path(rng):
    for shape, axis, groups in [
        ((3, 5, 8), -1, 4),
        ((2, 6, 3, 4), 1, 3),
        ((2, 3, 4, 6), (1, 3), 6),
    ]:
        x = rng.standard_normal(shape).astype(np.float32)
        layer = _built(shape, groups=groups, axis=axis)
        layer.set_weights([rng.standard_normal(w.shape) for w in layer.weights])
        axes = {a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))}
        mask = np.ones([s for i, s in enumerate(shape) if i not in axes], bool)
        np.testing.assert_allclose(layer(x, mask=mask).numpy(), layer(x).numpy(), atol=2e-6)


def test_fully_masked_sample_outputs_beta_and_no_nan(rng):
    x, mask = _padded(rng, [4, 0])
    x[1] = np.inf
    layer = _built(x.shape, groups=4)
    beta = rng.standard_normal(8)
    layer.set_weights([rng.standard_normal(8), beta])
    y = layer(x, mask=mask).numpy()
    np.testing.assert_allclose(y[1], np.broadcast_to(beta.astype(np.float32), (6, 8)))
    _, mean, rstd = group_norm_masked(x, mask, 4, epsilon=0.0)
    assert (mean[1] == 0).all() and (rstd[1] == 0).all()


def test_mask_channels_first_and_float16(rng):
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float16)
    mask = rng.random((2, 3, 5)) > 0.3
    layer = _built(x.shape, groups=2, axis=1)
    y = layer(x, mask=mask)
    assert y.dtype == np.float16
    x2 = x.copy()
    x2[np.broadcast_to(~mask[:, None], x.shape)] = 7.0
    sel = np.broadcast_to(mask[:, None], x.shape)
    np.testing.assert_array_equal(layer(x2, mask=mask).numpy()[sel], y.numpy()[sel])


def test_mask_accepts_tensors_and_01_ints(rng):
    x, mask = _padded(rng, [5, 2])
    layer = _built(x.shape, groups=4)
    y = layer(x, mask=mask).numpy()
    np.testing.assert_array_equal(layer(x, mask=Tensor(mask)).numpy(), y)
    np.testing.assert_array_equal(layer(x, mask=mask.astype(np.int32)).numpy(), y)


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.ones((2, 6, 8), bool), ValueError, r"i\.e\. \(2, 6\)"),
        (np.ones((6,), bool), ValueError, "shape"),
        (np.full((2, 6), 0.5), TypeError, "boolean"),
        (np.full((2, 6), 2), TypeError, "boolean"),
        ([[True], [True, False]], ValueError, "`mask` could not be converted"),
    ],
)
def test_bad_masks(rng, mask, error, match):
    layer = _built((2, 6, 8), groups=4)
    with pytest.raises(error, match=match):
        layer(rng.standard_normal((2, 6, 8)).astype(np.float32), mask=mask)


def test_masked_backward_with_all_true_mask_equals_unmasked(rng):
    x = rng.standard_normal((2, 5, 6))
    gamma = rng.standard_normal(6)
    dy = rng.standard_normal(x.shape)
    mask = np.ones((2, 5), bool)
    _, mean, rstd = group_norm_masked(x, mask, 3, gamma)
    got = group_norm_masked_backward(dy, x, mask, mean, rstd, 3, gamma)
    _, m2, r2 = functional.group_norm(x, 3, gamma, return_stats=True)
    want = functional.group_norm_backward(dy, x, m2, r2, 3, gamma)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-12)


# -- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "axis", "groups", "center", "scale"),
    [
        ((2, 3, 4), -1, 2, True, True),
        ((2, 4, 3), 1, -1, True, True),
        ((2, 2, 3, 2), (1, 3), 2, True, True),
        ((2, 3, 4), -1, 1, False, True),
        ((2, 3, 4), -1, 4, True, False),
    ],
)
def test_gradcheck_layer_with_regularizers(rng, shape, axis, groups, center, scale):
    layer = GroupNormalization(
        groups=groups,
        axis=axis,
        center=center,
        scale=scale,
        dtype="float64",
        gamma_regularizer=regularizers.L1L2(0.01, 0.03),
        beta_regularizer=regularizers.L2(0.05),
    )
    layer.build(shape)
    weight_values = [rng.standard_normal(w.shape) for w in layer.trainable_weights]
    r = rng.standard_normal(shape)

    def loss(x, *weights):
        y, _, losses = layer.stateless_call(list(weights), [], x, return_losses=True)
        total = ag.sum(ag.tanh(y) * r)
        for penalty in losses:
            total = total + penalty
        return total

    assert gradcheck(loss, [rng.standard_normal(shape), *weight_values])


def test_layer_gradients_reach_the_variables(rng):
    x = rng.standard_normal((2, 3, 4))
    layer = _built(x.shape, groups=2, dtype="float64", gamma_regularizer="l2")
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    layer.set_weights([gamma, beta])
    r = rng.standard_normal(x.shape)

    def loss(x, g, b):
        y, _, losses = layer.stateless_call([g, b], [], x, return_losses=True)
        return ag.sum(y * r) + losses[0]

    xt = Tensor(x)
    with GradientTape() as tape:
        tape.watch(xt)
        value = ag.sum(layer(xt) * r) + layer.losses[0]
    stateful = tape.gradient(value, [xt, *layer.weights])
    gt, bt = Tensor(gamma), Tensor(beta)
    with GradientTape() as tape:
        tape.watch([xt, gt, bt])
        stateless = tape.gradient(loss(xt, gt, bt), [xt, gt, bt])
    for a, b in zip(stateful, stateless, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_stateless_call_leaves_weights_alone_and_validates(rng):
    layer = _built((2, 4), groups=2)
    before = layer.get_weights()
    y, non_trainable = layer.stateless_call([np.full(4, 2.0), np.ones(4)], [], np.eye(2, 4))
    assert non_trainable == [] and y.shape == (2, 4)
    for b, a in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert layer.gamma is layer.weights[0]
    with pytest.raises(ValueError, match="needs 2 trainable"):
        layer.stateless_call([np.ones(4)], [], np.eye(2, 4))
    with pytest.raises(ValueError, match="shape"):
        layer.stateless_call([np.ones(3), np.ones(4)], [], np.eye(2, 4))
    with pytest.raises(ValueError, match="built"):
        GroupNormalization().stateless_call([], [], np.eye(2, 4))


@pytest.mark.parametrize(
    ("shape", "axis", "groups", "lengths_or_mask"),
    [
        ((3, 4, 4), -1, 2, "lengths"),
        ((2, 4, 3, 2), 1, 2, "random"),
        ((2, 2, 3, 4), (1, 3), 4, "random"),
    ],
)
def test_gradcheck_masked_op(rng, shape, axis, groups, lengths_or_mask):
    axes = {a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))}
    mask_shape = tuple(s for i, s in enumerate(shape) if i not in axes)
    if lengths_or_mask == "lengths":
        mask = np.arange(shape[1])[None, :] < np.array([4, 2, 0])[:, None]  # incl. all masked
    else:
        mask = rng.random(mask_shape) > 0.4
    channel_shape = tuple(shape[a] for a in (axis if isinstance(axis, tuple) else (axis,)))
    inputs = [
        rng.standard_normal(shape),
        rng.standard_normal(channel_shape),
        rng.standard_normal(channel_shape),
    ]
    r = rng.standard_normal(shape)

    def f(x, g, b):
        return ag.sum(masked_group_norm(x, mask, g, b, groups, axis=axis, epsilon=1e-3) * r)

    assert gradcheck(f, inputs)


def test_training_argument_is_accepted_and_ignored():
    # Keras passes `training` only to layers whose call() takes it; GroupNormalization's doesn't.
    x = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    layer = GroupNormalization(groups=4)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), layer(x).numpy())
