"""The functional API: ``Input``, layers called on symbolic tensors, ``Model(inputs, outputs)``.

Symbolic calls (shapes, nodes, errors), graphs with several inputs and outputs and shared
layers, the run order and the freeing of intermediate results, ``layers``/``get_layer``/
``summary``/weights in Keras's order, Keras 3's functional config and ``to_json`` in both
directions with Keras (numpy backend), construction-time validation, and training with several
inputs and outputs.
"""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

import numba_gn
from numba_gn import layers
from numba_gn.autograd import Tensor
from numba_gn.layers.input_layer import InputLayer
from numba_gn.layers.symbolic import KerasTensor, Node
from numba_gn.models import Model, Sequential, model_from_json
from numba_gn.models.functional import Functional


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _two_branch(prefix: str = ""):
    """img -> conv/gn/relu -> (gap | flatten); vec -> shared dense twice; two outputs."""
    img = numba_gn.Input((6, 6, 2), name=f"{prefix}img")
    vec = numba_gn.Input((5,), name=f"{prefix}vec")
    x = layers.Conv2D(3, 3, padding="same", name=f"{prefix}c1")(img)
    x = layers.GroupNormalization(3, name=f"{prefix}gn")(x)
    x = layers.Activation("relu", name=f"{prefix}act")(x)
    pooled = layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x)
    flat = layers.Flatten(name=f"{prefix}fl")(x)
    shared = layers.Dense(4, name=f"{prefix}shared")
    h1 = shared(vec)
    h2 = shared(layers.Dense(5, name=f"{prefix}pre")(vec))
    added = layers.Add(name=f"{prefix}add")([h1, h2])
    joined = layers.Concatenate(name=f"{prefix}cat")([pooled, added])
    o1 = layers.Dense(3, name=f"{prefix}o1")(joined)
    o2 = layers.Dense(2, name=f"{prefix}o2")(layers.Concatenate(name=f"{prefix}cat2")([flat, h1]))
    return img, vec, o1, o2


# -- symbolic tensors and calls --------------------------------------------------------------------


def test_input_returns_a_symbolic_tensor_made_by_a_built_input_layer():
    x = numba_gn.Input((8, 3), name="seq")
    assert isinstance(x, KerasTensor)
    assert (x.shape, x.dtype, x.name, x.ndim) == ((None, 8, 3), "float32", "seq", 3)
    layer, node_index, tensor_index = x._keras_history
    assert isinstance(layer, InputLayer) and layer.name == "seq" and layer.built
    assert (node_index, tensor_index) == (0, 0)
    assert layer._inbound_nodes[0].outputs == [x] and layer._inbound_nodes[0].is_input
    assert numba_gn.Input((2,), batch_size=4).shape == (4, 2)
    assert numba_gn.Input(batch_shape=(None, 7), dtype="float64").dtype == "float64"
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(x)
    with pytest.raises(ValueError, match="`tensor`"):
        numba_gn.Input((2,), tensor=np.ones(2))


def test_calling_a_layer_on_symbolic_tensors_builds_it_and_records_a_node():
    x = numba_gn.Input((4,), name="a")
    dense = layers.Dense(3, name="d")
    y = dense(x)
    assert isinstance(y, KerasTensor) and y.shape == (None, 3) and y.dtype == "float32"
    assert dense.built and [w.shape for w in dense.weights] == [(4, 3), (3,)]
    assert [w.path for w in dense.weights] == ["d/kernel", "d/bias"]
    assert y._keras_history == (dense, 0, 0)
    node = dense._inbound_nodes[0]
    assert isinstance(node, Node) and node.input_tensors == [x] and node.outputs == [y]
    assert node.parent_nodes == [x._keras_history.operation._inbound_nodes[0]]
    z = dense(x)  # a second call: a second node of the same layer, the same weights
    assert z._keras_history == (dense, 1, 0) and len(dense.weights) == 2


def test_a_layer_without_compute_output_shape_is_built_by_a_run_on_zeros():
    class TakeHalf(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(6)

        def call(self, x):
            return self.inner(x)[:, :3]

    block = TakeHalf(name="half")
    y = block(numba_gn.Input((5,)))
    assert y.shape == (None, 3) and block.built and block.inner.built
    assert [w.shape for w in block.weights] == [(5, 6), (6,)]


def test_shape_errors_name_the_layer_and_both_shapes():
    dense = layers.Dense(2, name="dense_four")
    dense(numba_gn.Input((4,)))
    with pytest.raises(ValueError, match=r'"dense_four".*\(None, 5\)') as info:
        dense(numba_gn.Input((5,)))
    assert "4" in str(info.value)
    with pytest.raises(ValueError, match=r"'gn6'.*GroupNormalization.*\(None, 6\)"):
        layers.GroupNormalization(4, name="gn6")(numba_gn.Input((6,)))
    a, b = numba_gn.Input((3,)), numba_gn.Input((2,))
    with pytest.raises(ValueError, match=r"'plus'.*\[\(None, 3\), \(None, 2\)\]"):
        layers.Add(name="plus")([a, b])
    with pytest.raises(TypeError, match="takes one input"):
        layers.Dense(2)([a, b])
    with pytest.raises(TypeError, match="mixing symbolic tensors"):
        layers.Add()([a, np.ones((1, 3), np.float32)])


def test_sequential_takes_an_input_first_and_nothing_else_symbolic():
    model = Sequential([numba_gn.Input((4,)), layers.Dense(2)])
    assert model.built and model.output_shape == (None, 2)
    x = numba_gn.Input((4,))
    with pytest.raises(TypeError, match="straight from `Input\\(\\)`"):
        Sequential([layers.Dense(4)(x)])


# -- models ----------------------------------------------------------------------------------------


def test_model_of_inputs_and_outputs_is_functional_and_computes_the_graph(rng):
    a = numba_gn.Input((4,), name="a")
    h = layers.Dense(3, activation="relu", name="h")(a)
    out = layers.Dense(2, name="out")(h)
    model = Model(a, out, name="net")
    assert type(model) is Functional and isinstance(model, Model) and model.name == "net"
    assert model.built and model.inputs == [a] and model.outputs == [out]
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    x = _f32(rng, 5, 4)
    kh, bh, ko, bo = model.get_weights()
    expected = np.maximum(x @ kh + bh, 0) @ ko + bo
    y = model(x)
    assert isinstance(y, Tensor)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=2), expected, rtol=1e-5, atol=1e-6)
    assert type(Model(inputs=a, outputs=out)) is Functional
    assert type(Functional(a, out)) is Functional


def test_several_inputs_and_outputs_as_lists_and_dicts(rng):
    a, b = numba_gn.Input((4,), name="a"), numba_gn.Input((3,), name="b")
    d = layers.Dense(2, name="d")
    y = layers.Concatenate(name="cat")([d(a), b])
    z = layers.Dense(1, name="z")(y)
    xa, xb = _f32(rng, 6, 4), _f32(rng, 6, 3)
    listed = Model([a, b], [y, z])
    out_list = listed([xa, xb])
    assert isinstance(out_list, list) and [t.shape for t in out_list] == [(6, 5), (6, 1)]
    by_name = listed({"a": xa, "b": xb})  # a list model takes a dict keyed by input names
    np.testing.assert_array_equal(by_name[1].numpy(), out_list[1].numpy())
    keyed = Model({"b": b, "a": a}, {"y": y, "z": z})
    assert keyed.inputs == [a, b]  # flat in sorted-key order, as Keras
    out_dict = keyed({"a": xa, "b": xb})
    assert list(out_dict) == ["y", "z"]
    np.testing.assert_array_equal(out_dict["z"].numpy(), out_list[1].numpy())
    predicted = keyed.predict({"a": xa, "b": xb}, batch_size=4)
    np.testing.assert_allclose(predicted["y"], out_list[0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"missing: \['b'\]"):
        keyed({"a": xa})
    with pytest.raises(ValueError, match="takes 2 inputs"):
        listed(xa)
    with pytest.raises(ValueError, match=r"Input 'a'.*expected shape \(None, 4\).*\(6, 3\)"):
        listed([xb, xb])
    # A list of one output is returned as that output, as Keras unpacks it.
    assert isinstance(Model(a, [z := layers.Dense(1)(a)])(xa), Tensor) and z.shape == (None, 1)


def test_dict_inputs_keyed_by_other_names_than_their_inputs_warn_as_in_keras():
    a = numba_gn.Input((2,), name="left")
    with pytest.warns(UserWarning, match="Received key 'right'"):
        Model({"right": a}, layers.Dense(1)(a))


def test_inputs_are_cast_to_their_input_dtype(rng):
    a = numba_gn.Input((3,), dtype="float64")
    model = Model(a, layers.Dense(2, dtype="float64")(a))
    out = model(np.arange(6).reshape(2, 3))  # ints, as Keras converts them
    assert out.dtype == np.float64


def test_a_shared_layer_has_one_set_of_weights_and_two_calls(rng):
    a = numba_gn.Input((3,), name="a")
    shared = layers.Dense(3, name="shared")
    out = shared(shared(a))
    model = Model(a, out)
    assert [la.name for la in model.layers] == ["a", "shared"]
    assert len(model.weights) == 2 and len(shared._inbound_nodes) == 2
    x = _f32(rng, 4, 3)
    k, b = shared.get_weights()
    np.testing.assert_allclose(model.predict(x), (x @ k + b) @ k + b, rtol=1e-5, atol=1e-6)
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    row = next(line for line in lines if line.startswith(" shared (Dense)"))
    assert row.rstrip().endswith("a[0][0], shared[0][0]")


def test_nodes_run_in_topological_order_and_intermediates_are_freed_early(rng):
    log: list[str] = []
    refs: dict[str, weakref.ref] = {}

    class Probe(layers.Layer):
        """Identity that logs its call and keeps a weak reference to its output."""

        def call(self, x):
            log.append(self.name)
            gc.collect()
            log.extend(f"{k} alive" for k, r in refs.items() if r() is not None)
            y = x * 1.0
            refs[self.name] = weakref.ref(y)
            return y

        def compute_output_shape(self, input_shape):
            return input_shape

    a = numba_gn.Input((2,))
    p1 = Probe(name="p1")(a)
    p2 = Probe(name="p2")(p1)  # p1's last reader
    p3 = Probe(name="p3")(p2)
    p4 = Probe(name="p4")(layers.Add()([p3, p2]))  # p2 is read by p3 and the Add
    model = Model(a, p4)
    log.clear()
    refs.clear()
    with numba_gn.autograd.no_record():
        model(np.ones((1, 2), np.float32))
    # p1 is gone once p2 has run; p2 and p3 once the Add has run.
    assert log == ["p1", "p2", "p1 alive", "p3", "p2 alive", "p4"]


def test_layers_weights_and_get_layer_follow_keras(keras, rng):
    img, vec, o1, o2 = _two_branch()
    ours = Model([img, vec], [o1, o2], name="two")
    k_img = keras.Input((6, 6, 2), name="img")
    k_vec = keras.Input((5,), name="vec")
    x = keras.layers.Conv2D(3, 3, padding="same", name="c1")(k_img)
    x = keras.layers.GroupNormalization(3, name="gn")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    flat = keras.layers.Flatten(name="fl")(x)
    shared = keras.layers.Dense(4, name="shared")
    h1 = shared(k_vec)
    h2 = shared(keras.layers.Dense(5, name="pre")(k_vec))
    joined = keras.layers.Concatenate(name="cat")([pooled, keras.layers.Add(name="add")([h1, h2])])
    k1 = keras.layers.Dense(3, name="o1")(joined)
    k2 = keras.layers.Dense(2, name="o2")(keras.layers.Concatenate(name="cat2")([flat, h1]))
    theirs = keras.Model([k_img, k_vec], [k1, k2], name="two")
    assert [la.name for la in ours.layers] == [la.name for la in theirs.layers]
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert ours.output_names == theirs.output_names == ["o1", "o2"]
    names = [la.name for la in ours.layers]
    assert ours.get_layer("gap") is ours.layers[names.index("gap")]
    assert ours.get_layer(index=0).name == "img" and ours.get_layer(index=-1).name == "o2"
    with pytest.raises(ValueError, match="No such layer: nope"):
        ours.get_layer("nope")
    with pytest.raises(ValueError, match="only has"):
        ours.get_layer(index=99)
    with pytest.raises(ValueError, match="Provide only"):
        ours.get_layer("gap", 1)
    # The same weights give the same outputs.
    ours.set_weights(theirs.get_weights())
    xs = [_f32(rng, 3, 6, 6, 2), _f32(rng, 3, 5)]
    for r, g in zip(theirs.predict(xs, verbose=0), ours.predict(xs), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_set_weights_checks_everything_first_and_names_the_weight(rng):
    a = numba_gn.Input((3,))
    model = Model(a, layers.Dense(2, name="out")(layers.Dense(4, name="hid")(a)))
    before = model.get_weights()
    bad = [w.copy() for w in before]
    bad[2] = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"'dense_1/kernel'.*\(4, 2\).*\(5, 2\)"):
        model.set_weights(bad)
    for w, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)
    with pytest.raises(ValueError, match="got 3 arrays for 4 weights"):
        model.set_weights(before[:3])


def test_summary_shows_what_each_layer_is_connected_to():
    img, vec, o1, o2 = _two_branch("s_")
    model = Model([img, vec], [o1, o2], name="two")
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert lines[0] == 'Model: "two"'
    assert "Connected to" in lines[2] and "Param #" in lines[2]
    rows = {line.split()[0]: line.rstrip() for line in lines[4:] if line.startswith(" s_")}
    assert rows["s_img"].endswith("-")
    assert rows["s_shared"].endswith("s_vec[0][0], s_pre[0][0]")
    assert rows["s_cat"].endswith("s_gap[0][0], s_add[0][0]")
    assert "(None, 6, 6, 3)" in rows["s_c1"] and rows["s_c1"].endswith("s_img[0][0]")
    assert any(line.startswith(" Total params: ") for line in lines)


# -- validation at construction --------------------------------------------------------------------


def test_an_output_not_reachable_from_the_inputs_is_refused():
    a, b = numba_gn.Input((2,), name="in_a"), numba_gn.Input((2,), name="in_b")
    out_b = layers.Dense(1)(b)
    with pytest.raises(ValueError, match=r"outputs .*cannot be computed.*Input 'in_b'"):
        Model(a, out_b)
    with pytest.raises(ValueError, match=r"outputs\[1\].*Input 'in_b'"):
        Model(a, [layers.Dense(1)(a), out_b])
    with pytest.raises(ValueError, match=r"outputs\['q'\].*Input 'in_b'"):
        Model(a, {"p": layers.Dense(1)(a), "q": out_b})


def test_an_input_no_output_uses_is_refused():
    a, b = numba_gn.Input((2,), name="used"), numba_gn.Input((2,), name="unused")
    with pytest.raises(ValueError, match=r"inputs\[1\] \(Input 'unused'\) is not used"):
        Model([a, b], layers.Dense(1)(a), name="m")


def test_other_graph_errors_are_refused_at_construction():
    a = numba_gn.Input((2,), name="a")
    h = layers.Dense(2, name="same")(a)
    with pytest.raises(ValueError, match="must be a tensor returned by `Input\\(\\)`"):
        Model(h, layers.Dense(1)(h))
    with pytest.raises(ValueError, match="must be KerasTensors"):
        Model(a, np.ones(2))
    with pytest.raises(ValueError, match="cannot be empty"):
        Model([], h)
    with pytest.raises(ValueError, match="given once"):
        Model([a, a], h)
    with pytest.raises(ValueError, match='"same" is used 2 times'):
        Model(a, layers.Dense(1, name="same")(h))
    with pytest.raises(TypeError, match="unexpected keyword"):
        Model(a, h, nonsense=1)


def test_trainable_false_freezes_every_layer():
    a = numba_gn.Input((3,))
    model = Model(a, layers.Dense(2)(layers.Dense(2)(a)), trainable=False)
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4
    assert all(not layer.trainable for layer in model.layers)


# -- configs ---------------------------------------------------------------------------------------


def test_config_round_trip_rebuilds_the_same_graph(rng):
    img, vec, o1, o2 = _two_branch("r_")
    model = Model({"r_img": img, "r_vec": vec}, {"first": o1, "second": o2}, name="rt")
    config = json.loads(json.dumps(model.get_config()))
    assert set(config) == {"name", "trainable", "layers", "input_layers", "output_layers"}
    assert config["input_layers"] == {"r_img": ["r_img", 0, 0], "r_vec": ["r_vec", 0, 0]}
    assert config["output_layers"] == {"first": ["r_o1", 0, 0], "second": ["r_o2", 0, 0]}
    shared = next(e for e in config["layers"] if e["name"] == "r_shared")
    histories = [n["args"][0]["config"]["keras_history"] for n in shared["inbound_nodes"]]
    assert histories == [["r_vec", 0, 0], ["r_pre", 0, 0]]
    assert shared["inbound_nodes"][0]["args"][0]["class_name"] == "__keras_tensor__"
    clone = Model.from_config(config)
    assert type(clone) is Functional and clone.name == "rt"
    assert json.loads(json.dumps(clone.get_config())) == config
    clone.set_weights(model.get_weights())
    x = {"r_img": _f32(rng, 2, 6, 6, 2), "r_vec": _f32(rng, 2, 5)}
    for key in ("first", "second"):
        np.testing.assert_array_equal(clone.predict(x)[key], model.predict(x)[key])
    again = model_from_json(model.to_json())
    assert json.loads(json.dumps(again.get_config())) == config


def test_our_config_matches_keras_for_the_same_graph(keras):
    img, vec, o1, o2 = _two_branch("k_")
    ours = Model([img, vec], [o1, o2], name="two")
    theirs = keras.models.model_from_json(ours.to_json())

    def graph(config):
        config = json.loads(json.dumps(config))
        return (
            [(e["name"], e["class_name"], e["inbound_nodes"]) for e in config["layers"]],
            config["input_layers"],
            config["output_layers"],
        )

    assert graph(ours.get_config()) == graph(theirs.get_config())
    envelope = json.loads(ours.to_json())
    assert {k: envelope[k] for k in ("module", "class_name", "registered_name")} == {
        "module": "keras.src.models.functional", "class_name": "Functional",
        "registered_name": "Functional",
    }


def test_keras_models_load_with_model_from_json_and_predict_the_same(keras, rng):
    # Merge-free with one output, then merges, a shared layer and two outputs.
    a = keras.Input((6, 6, 2), name="a")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(a)
    x = keras.layers.GroupNormalization(2, name="gn")(x)
    x = keras.layers.Activation("silu", name="act")(x)
    simple = keras.Model(a, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x)))
    img = keras.Input((6, 6, 2), name="img")
    vec = keras.Input((5,), name="vec")
    y = keras.layers.Conv2D(3, 3, padding="same", name="c1")(img)
    y = keras.layers.GroupNormalization(3, name="gn1")(y)
    flat = keras.layers.Flatten(name="fl")(keras.layers.Activation("relu", name="r")(y))
    shared = keras.layers.Dense(4, name="shared")
    h = keras.layers.Add(name="add")([shared(vec), shared(keras.layers.Dense(5, name="pre")(vec))])
    out1 = keras.layers.Dense(3, name="o1")(keras.layers.Concatenate(name="cat")([flat, h]))
    out2 = keras.layers.Dense(1, name="o2")(h)
    merged = keras.Model([img, vec], [out1, out2])
    cases = [(simple, _f32(rng, 3, 6, 6, 2)),
             (merged, [_f32(rng, 3, 6, 6, 2), _f32(rng, 3, 5)])]
    for theirs, data in cases:
        ours = model_from_json(theirs.to_json())
        assert [la.name for la in ours.layers] == [la.name for la in theirs.layers]
        ours.set_weights(theirs.get_weights())
        expected = theirs.predict(data, verbose=0)
        got = ours.predict(data)
        for r, g in zip(expected if isinstance(expected, list) else [expected],
                        got if isinstance(got, list) else [got], strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_our_json_loads_in_keras_and_predicts_the_same_with_our_weights(keras, rng):
    img, vec, o1, o2 = _two_branch("j_")
    ours = Model([img, vec], [o1, o2], name="two")
    theirs = keras.models.model_from_json(ours.to_json())
    theirs.set_weights(ours.get_weights())
    data = [_f32(rng, 3, 6, 6, 2), _f32(rng, 3, 5)]
    for r, g in zip(theirs.predict(data, verbose=0), ours.predict(data), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_nested_models_round_trip_with_keras(keras, rng):
    a = numba_gn.Input((6,), name="n_a")
    inner = Model(a, layers.Dense(4, name="n_in")(a), name="inner")
    stack = Sequential([numba_gn.Input((4,)), layers.Dense(3, name="n_seq")], name="stack")
    b = numba_gn.Input((6,), name="n_b")
    h = inner(b)
    outer = Model(b, [stack(h), layers.Add(name="n_add")([inner(b), h])], name="outer")
    assert [la.name for la in outer.layers] == ["n_b", "inner", "stack", "n_add"]
    assert json.loads(outer.to_json())["config"]["output_layers"] == [["stack", 0, 0],
                                                                    ["n_add", 0, 0]]
    theirs = keras.models.model_from_json(outer.to_json())
    theirs.set_weights(outer.get_weights())
    x = _f32(rng, 4, 6)
    for r, g in zip(theirs.predict(x, verbose=0), outer.predict(x), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    back = model_from_json(theirs.to_json())
    back.set_weights(theirs.get_weights())
    for r, g in zip(outer.predict(x), back.predict(x), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6)


def test_model_from_json_refuses_what_it_cannot_rebuild():
    with pytest.raises(TypeError, match="json_string"):
        model_from_json({"class_name": "Functional"})
    with pytest.raises(ValueError, match="not valid JSON"):
        model_from_json("{nope")
    with pytest.raises(ValueError, match="unknown model class 'Net'"):
        model_from_json(json.dumps({"module": "keras", "class_name": "Net", "config": {}}))
    with pytest.raises(ValueError, match="Refusing"):
        model_from_json(json.dumps({"module": "evil", "class_name": "Functional", "config": {}}))
    a = numba_gn.Input((2,), name="x_in")
    config = Model(a, layers.Dense(1, name="x_out")(a)).get_config()
    config["layers"][1]["class_name"] = "Lambda"
    with pytest.raises(ValueError, match="Unknown layer class 'Lambda'"):
        Model.from_config(config)
    config["layers"][1]["class_name"] = "Dense"
    config["layers"][1]["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "nope"
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        Model.from_config(config)


# -- training --------------------------------------------------------------------------------------


def _chain(seed: int):
    init = numba_gn.initializers.GlorotUniform
    return [layers.Dense(6, activation="relu", kernel_initializer=init(seed)),
            layers.Dense(2, kernel_initializer=init(seed + 1))]


def test_a_functional_chain_trains_exactly_like_the_same_sequential(rng):
    x, y = _f32(rng, 24, 4), _f32(rng, 24, 2)
    seq = Sequential([numba_gn.Input((4,)), *_chain(3)])
    a = numba_gn.Input((4,))
    h = a
    for layer in _chain(3):
        h = layer(h)
    fun = Model(a, h)
    for model in (seq, fun):
        model.compile(numba_gn.optimizers.SGD(0.1), "mse")
    h_seq = seq.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    h_fun = fun.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_fun.history["loss"], h_seq.history["loss"], rtol=1e-6)
    for w, v in zip(fun.get_weights(), seq.get_weights(), strict=True):
        np.testing.assert_allclose(w, v, rtol=1e-6)


def test_fit_with_several_inputs_and_outputs_sums_the_weighted_losses(rng):
    a, b = numba_gn.Input((4,), name="a"), numba_gn.Input((3,), name="b")
    h = layers.Concatenate()([layers.Dense(4, name="da")(a), b])
    model = Model([a, b], [layers.Dense(2, name="p")(h), layers.Dense(1, name="q")(h)])
    xs = [_f32(rng, 20, 4), _f32(rng, 20, 3)]
    ys = [_f32(rng, 20, 2), _f32(rng, 20, 1)]
    model.compile("sgd", loss=["mse", "mse"], loss_weights=[1.0, 0.5])
    logs = model.evaluate(xs, ys, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "p_loss", "q_loss"]
    p, q = model.predict(xs)
    assert logs["p_loss"] == pytest.approx(float(np.mean((p - ys[0]) ** 2)), rel=1e-5)
    assert logs["q_loss"] == pytest.approx(float(np.mean((q - ys[1]) ** 2)), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["p_loss"] + 0.5 * logs["q_loss"], rel=1e-5)
    history = model.fit(xs, ys, batch_size=5, epochs=4, verbose=0, seed=0,
                        validation_data=(xs, ys))
    assert set(history.history) == {"loss", "p_loss", "q_loss", "val_loss", "val_p_loss",
                                    "val_q_loss"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    # A dict of losses keyed by output name, and dict data keyed by input/output names.
    model.compile("sgd", loss={"p": "mse", "q": "mse"}, loss_weights={"q": 2.0})
    by_name = model.evaluate({"a": xs[0], "b": xs[1]}, {"p": ys[0], "q": ys[1]}, verbose=0,
                             return_dict=True)
    assert by_name["loss"] == pytest.approx(by_name["p_loss"] + 2 * by_name["q_loss"], rel=1e-5)


def test_dict_outputs_take_dict_targets_losses_and_metrics(rng):
    x_in = numba_gn.Input((4,), name="x")
    h = layers.Dense(4, activation="relu")(x_in)
    model = Model(x_in, {"cls": layers.Dense(3)(h), "reg": layers.Dense(1)(h)})
    x = _f32(rng, 16, 4)
    y = {"cls": rng.integers(0, 3, 16), "reg": _f32(rng, 16, 1)}
    model.compile(
        "adam",
        loss={"cls": numba_gn.losses.SparseCategoricalCrossentropy(from_logits=True),
              "reg": "mse"},
        metrics={"cls": ["accuracy"]},
    )
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=1)
    # Keras's History keys: the callbacks' logs have their keys sorted.
    assert list(history.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss"]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = model.predict(x)
    assert set(pred) == {"cls", "reg"}
    accuracy = float(np.mean(np.argmax(pred["cls"], axis=-1) == y["cls"]))
    assert logs["cls_accuracy"] == pytest.approx(accuracy)
    with pytest.raises(ValueError, match=r"missing: \['reg'\]"):
        model.fit(x, {"cls": y["cls"]}, verbose=0)


def test_training_arguments_with_several_outputs_are_checked_before_training(rng):
    a = numba_gn.Input((3,), name="a")
    model = Model(a, [layers.Dense(1, name="u")(a), layers.Dense(1, name="v")(a)])
    x, y = _f32(rng, 8, 3), [_f32(rng, 8, 1), _f32(rng, 8, 1)]
    with pytest.raises(ValueError, match="`loss` has 3 entries but the model has 2 outputs"):
        model.compile("sgd", ["mse"] * 3)
    with pytest.raises(ValueError, match=r"Key\(s\) \['w'\] of `loss` name no output"):
        model.compile("sgd", {"w": "mse"})
    with pytest.raises(ValueError, match="as many entries as the model has outputs"):
        model.compile("sgd", "mse", metrics=["accuracy"])
    with pytest.raises(ValueError, match="loss_weights"):
        model.compile("sgd", "mse", loss_weights="heavy")
    model.compile("sgd", "mse")  # one loss for every output
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"`y` of fit\(\) must be a list of 2 arrays"):
        model.fit(x, y[0], verbose=0)
    with pytest.raises(ValueError, match=r"y\[0\]: 8, y\[1\]: 7"):
        model.fit(x, [y[0], y[1][:7]], verbose=0)
    with pytest.raises(ValueError, match="must have the same number of samples, got 7 and 8"):
        model.fit(x[:7], y, verbose=0)
    for w, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)


def test_call_arguments_recorded_on_a_node_are_replayed_and_saved(rng):
    a = numba_gn.Input((50,), name="a")
    always = layers.Dropout(0.5, seed=2, name="always")(a, training=True)
    model = Model(a, always)
    x = np.ones((2, 50), np.float32)
    assert (model.predict(x) == 0).any()  # dropout on, even when predicting
    config = json.loads(json.dumps(model.get_config()))
    assert config["layers"][1]["inbound_nodes"][0]["kwargs"] == {"training": True}
    assert (Model.from_config(config).predict(x) == 0).any()


def test_compute_output_shape_follows_the_graph():
    a = numba_gn.Input((None, 3), name="seq_in")
    out = layers.Dense(4)(layers.Conv1D(5, 3)(a))
    model = Model(a, out)
    assert model.output_shape == (None, None, 4)
    assert model.compute_output_shape((2, 10, 3)) == (2, 8, 4)
    b = numba_gn.Input((12, 3))
    assert model(b).shape == (None, 10, 4)  # a model is a layer: called on a new input
