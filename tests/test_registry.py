"""The shared get/serialize/deserialize registry, across the three parameter families."""

import builtins
import contextlib
import importlib
import json
import os
import sys

import numpy as np
import pytest

from numba_gn.params import _registry, constraints, initializers, regularizers

FAMILIES = {
    "initializers": initializers,
    "regularizers": regularizers,
    "constraints": constraints,
}

# One configured instance of every built-in class, with non-default arguments where possible.
INSTANCES = [
    ("initializers", initializers.Initializer()),
    ("initializers", initializers.Zeros()),
    ("initializers", initializers.Ones()),
    ("initializers", initializers.Constant(value=2.5)),
    ("initializers", initializers.Identity(gain=3.0)),
    ("initializers", initializers.RandomNormal(mean=1.0, stddev=2.0, seed=3)),
    ("initializers", initializers.RandomUniform(minval=-1.0, maxval=2.0, seed=4)),
    ("initializers", initializers.TruncatedNormal(mean=0.5, stddev=0.1, seed=5)),
    (
        "initializers",
        initializers.VarianceScaling(
            scale=2.0,
            mode="fan_avg",
            distribution="uniform",
            seed=6,
            input_axes=[0],
            output_axes=[1],
        ),
    ),
    ("initializers", initializers.GlorotNormal(seed=7)),
    ("initializers", initializers.GlorotUniform(seed=8)),
    ("initializers", initializers.HeNormal(seed=9)),
    ("initializers", initializers.HeUniform(seed=10)),
    ("initializers", initializers.LecunNormal(seed=11)),
    ("initializers", initializers.LecunUniform(seed=12)),
    ("initializers", initializers.Orthogonal(gain=2.0, seed=13)),
    ("regularizers", regularizers.Regularizer()),
    ("regularizers", regularizers.L1(l1=0.25)),
    ("regularizers", regularizers.L2(l2=0.5)),
    ("regularizers", regularizers.L1L2(l1=0.25, l2=0.5)),
    ("regularizers", regularizers.OrthogonalRegularizer(factor=0.125, mode="columns")),
    ("constraints", constraints.Constraint()),
    ("constraints", constraints.MaxNorm(max_value=3.0, axis=1)),
    ("constraints", constraints.MinMaxNorm(min_value=0.5, max_value=2.0, rate=0.75, axis=[0, 1])),
    ("constraints", constraints.NonNeg()),
    ("constraints", constraints.UnitNorm(axis=1)),
]
IDS = [type(obj).__name__ for _, obj in INSTANCES]


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    return pytest.importorskip("keras")


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "obj"), INSTANCES, ids=IDS)
def test_round_trip_preserves_class_and_config(family, obj):
    mod = FAMILIES[family]
    data = mod.serialize(obj)
    assert data == {
        "module": f"keras.{family}",
        "class_name": type(obj).__name__,
        "config": obj.get_config(),
        "registered_name": None,
    }
    # The serialized form is plain JSON.
    back = mod.deserialize(json.loads(json.dumps(data)))
    assert type(back) is type(obj)
    assert back.get_config() == obj.get_config()
    assert back is not obj


@pytest.mark.parametrize(("family", "obj"), INSTANCES, ids=IDS)
def test_two_key_config_is_accepted(family, obj):
    mod = FAMILIES[family]
    back = mod.deserialize({"class_name": type(obj).__name__, "config": obj.get_config()})
    assert type(back) is type(obj)
    assert back.get_config() == obj.get_config()


@pytest.mark.parametrize("family", FAMILIES)
def test_none_passes_through(family):
    mod = FAMILIES[family]
    assert mod.get(None) is None
    assert mod.serialize(None) is None
    assert mod.deserialize(None) is None


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "name", "cls_name"),
    [
        ("initializers", "glorot_uniform", "GlorotUniform"),
        ("initializers", "GlorotUniform", "GlorotUniform"),
        ("initializers", "he_normal", "HeNormal"),
        ("initializers", "lecun_uniform", "LecunUniform"),
        ("initializers", "variance_scaling", "VarianceScaling"),
        ("initializers", "truncated_normal", "TruncatedNormal"),
        ("initializers", "random_normal", "RandomNormal"),
        ("initializers", "normal", "RandomNormal"),
        ("initializers", "uniform", "RandomUniform"),
        ("initializers", "zero", "Zeros"),
        ("initializers", "zeros", "Zeros"),
        ("initializers", "one", "Ones"),
        ("initializers", "ones", "Ones"),
        ("initializers", "IdentityInitializer", "Identity"),
        ("initializers", "OrthogonalInitializer", "Orthogonal"),
        ("initializers", "orthogonal", "Orthogonal"),
        ("regularizers", "l1", "L1"),
        ("regularizers", "l2", "L2"),
        ("regularizers", "l1l2", "L1L2"),
        ("regularizers", "l1_l2", "L1L2"),
        ("regularizers", "L1L2", "L1L2"),
        ("regularizers", "orthogonal_regularizer", "OrthogonalRegularizer"),
        ("constraints", "non_neg", "NonNeg"),
        ("constraints", "max_norm", "MaxNorm"),
        ("constraints", "unit_norm", "UnitNorm"),
        ("constraints", "min_max_norm", "MinMaxNorm"),
        ("constraints", "MinMaxNorm", "MinMaxNorm"),
    ],
)
def test_string_names(family, name, cls_name):
    mod = FAMILIES[family]
    for obj in (mod.get(name), mod.deserialize(name)):
        assert type(obj).__name__ == cls_name
        assert type(obj) is getattr(mod, cls_name)


def test_string_names_use_class_defaults():
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert constraints.get("max_norm").get_config() == {"max_value": 2, "axis": 0}


@pytest.mark.parametrize(
    ("family", "keras_module"),
    [
        ("initializers", "keras.src.initializers"),
        ("regularizers", "keras.src.regularizers"),
        ("constraints", "keras.src.constraints"),
    ],
)
def test_every_keras_name_is_known(keras, family, keras_module):
    keras_table = importlib.import_module(keras_module).ALL_OBJECTS_DICT
    # STFT is Keras's audio-layer initializer, out of scope here.
    keras_names = set(keras_table) - {"STFT", "stft", "STFTInitializer"}
    assert keras_names <= set(FAMILIES[family]._REGISTRY.names)
    for name in keras_names:
        assert type(FAMILIES[family].deserialize(name)).__name__ == keras_table[name].__name__


def test_snake_case_matches_keras(keras):
    from keras.src.utils.naming import to_snake_case

    for name in ["GlorotUniform", "L1L2", "OrthogonalRegularizer", "MinMaxNorm", "HeNormal", "L2"]:
        assert _registry.to_snake_case(name) == to_snake_case(name)


@pytest.mark.parametrize("family", FAMILIES)
def test_unknown_name_is_a_value_error_listing_valid_names(family):
    mod = FAMILIES[family]
    with pytest.raises(ValueError, match=r"'no_such_thing'") as info:
        mod.get("no_such_thing")
    # The message lists the valid names.
    assert all(name in str(info.value) for name in mod._REGISTRY.names)
    with pytest.raises(ValueError, match="no_such_thing"):
        mod.deserialize({"class_name": "no_such_thing", "config": {}})


# -- get --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "obj"), INSTANCES, ids=IDS)
def test_get_returns_instances_as_is(family, obj):
    assert FAMILIES[family].get(obj) is obj


@pytest.mark.parametrize(("family", "obj"), INSTANCES, ids=IDS)
def test_get_instantiates_family_classes(family, obj):
    made = FAMILIES[family].get(type(obj))
    assert type(made) is type(obj)


@pytest.mark.parametrize("family", FAMILIES)
def test_get_passes_plain_callables(family):
    def fn(*args, **kwargs):
        return 0.0

    assert FAMILIES[family].get(fn) is fn


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bad", [5, 1.5, True, [1, 2], object()])
def test_get_rejects_wrong_types(family, bad):
    with pytest.raises(TypeError, match="Could not interpret"):
        FAMILIES[family].get(bad)


def test_get_rejects_classes_of_another_family():
    with pytest.raises(TypeError, match="subclass Regularizer"):
        regularizers.get(constraints.MaxNorm)


def test_initializers_get_accepts_an_array():
    value = np.arange(6.0).reshape(2, 3)
    init = initializers.get(value)
    out = init((2, 3), dtype="float64")
    np.testing.assert_array_equal(out, value)
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="Expected `shape`"):
        init((3, 2))
    with pytest.raises(TypeError, match="cannot be serialized"):
        initializers.serialize(init)


def test_only_initializers_accept_arrays():
    with pytest.raises(TypeError):
        regularizers.get(np.ones(3))
    with pytest.raises(TypeError):
        constraints.get(np.ones(3))


# -- safety: nothing from a config is imported or evaluated ------------------------------------


@contextlib.contextmanager
def spy_imports():
    """Record every import attempted inside the block (only our code runs there)."""
    seen = []
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def spy_import(name, *args, **kwargs):
        seen.append(name)
        return real_import(name, *args, **kwargs)

    def spy_import_module(name, *args, **kwargs):
        seen.append(name)
        return real_import_module(name, *args, **kwargs)

    builtins.__import__ = spy_import
    importlib.import_module = spy_import_module
    try:
        yield seen
    finally:
        builtins.__import__ = real_import
        importlib.import_module = real_import_module


def raised_by(fn, *args):
    """Call ``fn(*args)`` and return the exception it raised (None if it returned)."""
    try:
        fn(*args)
    except Exception as exc:  # the caller checks the type
        return exc
    return None


@pytest.mark.parametrize("family", FAMILIES)
def test_foreign_module_is_refused_without_importing(family, monkeypatch):
    def forbidden(*args):
        raise AssertionError("os.system must never be called")

    monkeypatch.setattr(os, "system", forbidden)
    mod = FAMILIES[family]
    evil = {
        "module": "os",
        "class_name": "system",
        "config": {"command": "echo pwned"},
        "registered_name": None,
    }
    # A real class name claimed by a foreign module is refused too.
    probe = {"module": "numba_gn_probe_module", "class_name": "Zeros", "config": {}}
    with spy_imports() as seen:
        errors = [
            raised_by(mod.deserialize, evil),
            raised_by(mod.get, evil),
            raised_by(mod.deserialize, probe),
        ]
    assert seen == []
    assert "numba_gn_probe_module" not in sys.modules
    for exc, needle in zip(errors, ["'os'", "'os'", "numba_gn_probe_module"], strict=True):
        assert isinstance(exc, ValueError)
        assert needle in str(exc)
        assert "Refusing" in str(exc)


@pytest.mark.parametrize("class_name", ["__tensor__", "__lambda__", "function", "eval"])
def test_special_keras_class_names_are_not_evaluated(class_name):
    config = {"class_name": class_name, "config": {"value": "__import__('os')"}}
    with spy_imports() as seen:
        exc = raised_by(initializers.deserialize, config)
    assert seen == []
    assert isinstance(exc, ValueError)


def test_keras_and_numba_gn_modules_are_accepted():
    for module in ["keras.initializers", "keras.src.initializers.random_initializers", "numba_gn"]:
        obj = initializers.deserialize({"module": module, "class_name": "HeNormal", "config": {}})
        assert isinstance(obj, initializers.HeNormal)


def test_unknown_config_key_names_the_key():
    with pytest.raises(TypeError, match=r"\['bogus'\].*GlorotUniform"):
        initializers.deserialize({"class_name": "GlorotUniform", "config": {"bogus": 1}})
    with pytest.raises(TypeError, match="'l3'"):
        regularizers.deserialize({"class_name": "L2", "config": {"l3": 1.0}})
    with pytest.raises(TypeError, match="'max_norm'"):
        constraints.MaxNorm.from_config({"max_norm": 1.0})
    # Keras's preset initializers do not take scale/mode/distribution.
    with pytest.raises(TypeError, match="'scale'"):
        initializers.GlorotUniform.from_config({"scale": 2.0})


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"config": {}}, ValueError, "class_name"),
        ({"class_name": "L2", "config": {}, "extra": 1}, ValueError, "'extra'"),
        ({"class_name": 3, "config": {}}, TypeError, "class_name"),
        ({"class_name": "L2", "config": [0.1]}, TypeError, "must be a dict"),
        ({"class_name": "L2", "config": {1: 0.1}}, TypeError, "strings"),
        (3.5, TypeError, "float"),
        (["L2"], TypeError, "list"),
    ],
)
def test_malformed_configs(config, error, match):
    with pytest.raises(error, match=match):
        regularizers.deserialize(config)


def test_constructor_validation_still_applies():
    with pytest.raises(ValueError, match="l2"):
        regularizers.deserialize({"class_name": "L2", "config": {"l2": -1.0}})


# -- custom objects ---------------------------------------------------------------------------


class ScaledL2(regularizers.L2):
    """A user subclass with one extra argument."""

    def __init__(self, l2=0.01, scale=2.0):
        super().__init__(l2)
        self.scale = scale

    def get_config(self):
        return {"l2": self.l2, "scale": self.scale}


def double_ones(shape, dtype=None):
    return 2 * np.ones(shape, dtype=dtype or "float32")


def test_custom_class_round_trip():
    obj = ScaledL2(l2=0.5, scale=3.0)
    data = regularizers.serialize(obj)
    assert data["class_name"] == "ScaledL2"
    assert data["registered_name"] == "ScaledL2"
    assert data["config"] == {"l2": 0.5, "scale": 3.0}
    with pytest.raises(ValueError, match="Refusing|Unknown"):
        regularizers.deserialize(data)
    back = regularizers.deserialize(data, custom_objects={"ScaledL2": ScaledL2})
    assert type(back) is ScaledL2
    assert back.get_config() == obj.get_config()
    assert type(regularizers.deserialize("ScaledL2", custom_objects={"ScaledL2": ScaledL2})) is (
        ScaledL2
    )


def test_custom_function_round_trip():
    data = initializers.serialize(double_ones)
    assert data == {
        "module": __name__,
        "class_name": "function",
        "config": "double_ones",
        "registered_name": "double_ones",
    }
    with pytest.raises(ValueError, match="custom_objects"):
        initializers.deserialize(data)
    assert (
        initializers.deserialize(data, custom_objects={"double_ones": double_ones}) is double_ones
    )


def test_lambda_cannot_be_serialized():
    with pytest.raises(TypeError, match="lambda"):
        initializers.serialize(lambda shape, dtype=None: np.zeros(shape))


def test_objects_without_config_cannot_be_serialized():
    with pytest.raises(TypeError, match="Cannot serialize"):
        constraints.serialize(3)


# -- interoperability with Keras ----------------------------------------------------------------


def assert_config_close(got, expected):
    """Equal configs, with floats compared to float32 precision (Keras keeps some as float32)."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize(("family", "obj"), INSTANCES, ids=IDS)
def test_keras_reads_our_serialization(keras, family, obj):
    if type(obj) is regularizers.Regularizer:
        pytest.skip("Keras's Regularizer base has no get_config()")
    data = FAMILIES[family].serialize(obj)
    theirs = getattr(keras, family).deserialize(data)
    assert type(theirs).__name__ == type(obj).__name__
    expected = obj.get_config()
    if isinstance(obj, initializers.Identity):
        expected = {}  # Keras's Identity drops `gain` from its config
    assert_config_close(theirs.get_config(), expected)


KERAS_FACTORIES = [
    ("initializers", "Zeros", {}),
    ("initializers", "Ones", {}),
    ("initializers", "Constant", {"value": 2.5}),
    ("initializers", "Identity", {"gain": 2.0}),
    ("initializers", "RandomNormal", {"mean": 1.0, "stddev": 2.0, "seed": 3}),
    ("initializers", "RandomUniform", {"minval": -1.0, "maxval": 2.0, "seed": 4}),
    ("initializers", "TruncatedNormal", {"mean": 0.5, "stddev": 0.1, "seed": 5}),
    (
        "initializers",
        "VarianceScaling",
        {"scale": 2.0, "mode": "fan_out", "distribution": "normal"},
    ),
    ("initializers", "GlorotUniform", {"seed": 1}),
    ("initializers", "GlorotNormal", {}),
    ("initializers", "HeNormal", {"seed": 2}),
    ("initializers", "HeUniform", {}),
    ("initializers", "LecunNormal", {}),
    ("initializers", "LecunUniform", {"seed": 3}),
    ("initializers", "Orthogonal", {"gain": 0.5, "seed": 4}),
    ("regularizers", "L1", {"l1": 0.25}),
    ("regularizers", "L2", {"l2": 0.5}),
    ("regularizers", "L1L2", {"l1": 0.25, "l2": 0.5}),
    ("regularizers", "OrthogonalRegularizer", {"factor": 0.125, "mode": "columns"}),
    ("constraints", "Constraint", {}),
    ("constraints", "MaxNorm", {"max_value": 3.0, "axis": 1}),
    ("constraints", "MinMaxNorm", {"min_value": 0.5, "max_value": 2.0, "rate": 0.75, "axis": 1}),
    ("constraints", "NonNeg", {}),
    ("constraints", "UnitNorm", {"axis": [0, 1]}),
]


@pytest.mark.parametrize(
    ("family", "name", "kwargs"), KERAS_FACTORIES, ids=[n for _, n, _ in KERAS_FACTORIES]
)
def test_we_read_keras_serialization(keras, family, name, kwargs):
    keras_family = getattr(keras, family)
    data = keras_family.serialize(getattr(keras_family, name)(**kwargs))
    ours = FAMILIES[family].deserialize(data)
    assert type(ours) is getattr(FAMILIES[family], name)
    # Same config as ours built directly (floats Keras stored in float32 compare approximately).
    direct = getattr(FAMILIES[family], name)(**kwargs).get_config()
    got = ours.get_config()
    if name == "Identity":
        assert got == {"gain": 1.0}  # Keras's Identity config has no gain, so the default
        return
    assert_config_close(got, direct)
    # get() of the same dict gives the same thing.
    assert type(FAMILIES[family].get(data)) is type(ours)


def test_we_read_keras_constant_with_numpy_scalar(keras):
    data = keras.initializers.serialize(keras.initializers.Constant(np.float32(2.0)))
    assert isinstance(data["config"]["value"], dict)  # Keras wraps it as "__tensor__"
    ours = initializers.deserialize(data)
    np.testing.assert_array_equal(ours((2,)), np.full((2,), 2.0, dtype=np.float32))
