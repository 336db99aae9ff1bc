"""Models run GroupNorm (+ Add) + Activation chains as one fused op, unchanged otherwise.

`compile(fuse=True)` (the default) lets `Sequential` and functional models run each
`GroupNormalization` whose output only an `Activation` takes (or only a residual `Add` whose
output only an `Activation` takes) as `numba_gn.autograd.group_norm(..., residual=,
activation=)`. These tests compare fused and unfused runs of the same models (outputs,
gradients, training), check where fusion must not happen, and that configs, weights and saved
files do not change.
"""

# Measured fused-vs-unfused differences on these models ("scaled": max |fused - unfused| over
# eps times the largest |unfused| entry of the array):
# * float32 relu, leaky_relu, linear, silu, sigmoid: the same bits, outputs and gradients,
#   in Sequential models, the residual block and training (2 epochs, same weights after);
# * float32 gelu: GN -> gelu alone within 1 ulp; followed by more layers, outputs within 1.2
#   scaled and gradients within 6.5 scaled (residual block, UNet); training losses within
#   3e-8 relative after 4 epochs;
# * float64 silu, sigmoid: 1 ulp; gelu: 5 ulps elementwise, gradients within 0.7 scaled.
# The bounds below leave a margin of 2-8 over these.

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn import layers, models
from numba_gn.autograd import GradientTape, Tensor
from numba_gn.autograd.ops_groupnorm import FusedGroupNorm
from numba_gn.layers import Input

# Activations whose fused float32 results are the layers' bits (measured; see above).
SAME_BITS = ["linear", "relu", "leaky_relu", "silu", "sigmoid"]
FUSED_ACTIVATIONS = [*SAME_BITS, "swish", "gelu"]


@pytest.fixture
def fused_runs(monkeypatch):
    """A list that gets one entry per run of the fused op (its activation and residual)."""
    runs = []
    forward = FusedGroupNorm.forward

    def counting(ctx, x, gamma, beta, residual, **kwargs):
        runs.append((kwargs["activation"], residual is not None))
        return forward(ctx, x, gamma, beta, residual, **kwargs)

    monkeypatch.setattr(FusedGroupNorm, "forward", staticmethod(counting))
    return runs


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    """The largest elementwise difference in units in the last place of the larger value."""
    a, b = np.asarray(a), np.asarray(b)
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(a.dtype))
    return float(np.max(np.abs(a.astype(np.float64) - b) / spacing))


def run(model, x, fuse, training=True):
    """`(output, [dL/dx, dL/dweights...])` of a forward and backward with `fuse` set."""
    model.compile(loss="mse", fuse=fuse)
    xs = [Tensor(v) for v in (x if isinstance(x, list) else [x])]
    with GradientTape() as tape:
        tape.watch(xs)
        y = model(xs if isinstance(x, list) else xs[0], training=training)
        loss = ag.sum(y * y)
    grads = tape.gradient(loss, xs + model.trainable_weights)
    return y.data, grads


def assert_close_scaled(fused, unfused, factor):
    """Each array within `factor` eps (of its dtype) of its largest entry, elementwise."""
    for a, b in zip(fused, unfused, strict=True):
        assert a.dtype == b.dtype
        eps = float(np.finfo(b.dtype).eps)
        assert np.max(np.abs(a - b)) <= factor * eps * np.max(np.abs(b))


def seed_weights(model, rng):
    """Every weight drawn from `rng`, so that the test does not depend on unseeded inits."""
    values = []
    for w in model.weights:
        if w.path.endswith("gamma"):
            v = rng.uniform(0.5, 1.5, w.shape)
        elif w.path.endswith(("beta", "bias")):
            v = rng.standard_normal(w.shape) * 0.1
        else:  # kernels: about unit-variance outputs
            fan_in = int(np.prod(w.shape[:-1]))
            v = rng.standard_normal(w.shape) / np.sqrt(fan_in)
        values.append(v.astype(w.dtype))
    model.set_weights(values)
    return model


def residual_block(rng, dtype="float32", activation="silu"):
    """Conv -> GN -> act -> Conv -> GN -> Add(input) -> act, ResNet style."""
    inp = Input((6, 6, 8), dtype=dtype, name="image")
    h = layers.Conv2D(8, 3, padding="same", dtype=dtype, name="conv_a")(inp)
    h = layers.GroupNormalization(4, dtype=dtype, name="gn_a")(h)
    h = layers.Activation(activation, dtype=dtype, name="act_a")(h)
    h = layers.Conv2D(8, 3, padding="same", dtype=dtype, name="conv_b")(h)
    h = layers.GroupNormalization(4, dtype=dtype, name="gn_b")(h)
    h = layers.Add(dtype=dtype, name="skip")([h, inp])
    out = layers.Activation(activation, dtype=dtype, name="act_b")(h)
    return seed_weights(models.Model(inp, out, name="block"), rng)


def tiny_unet(rng):
    """A two-level UNet: skip connection, pooling, upsampling, concatenation, residual add."""
    inp = Input((8, 8, 4), name="image")
    e = layers.Conv2D(8, 3, padding="same", name="enc_conv")(inp)
    e = layers.GroupNormalization(4, name="enc_gn")(e)
    e = layers.Activation("silu", name="enc_act")(e)  # feeds the pooling and the skip
    d = layers.AveragePooling2D(2, name="down")(e)
    d = layers.Conv2D(8, 3, padding="same", name="mid_conv")(d)
    d = layers.GroupNormalization(2, name="mid_gn")(d)
    d = layers.Activation("gelu", name="mid_act")(d)
    u = layers.UpSampling2D(2, name="up")(d)
    c = layers.Concatenate(name="cat")([u, e])
    c = layers.Conv2D(8, 3, padding="same", name="dec_conv")(c)
    c = layers.GroupNormalization(4, name="dec_gn")(c)
    c = layers.Add(name="dec_skip")([e, c])  # the residual first
    c = layers.Activation("relu", name="dec_act")(c)
    out = layers.Conv2D(2, 1, name="head")(c)
    return seed_weights(models.Model(inp, out, name="unet"), rng)


# -- Sequential ----------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_sequential_gn_activation_fuses_and_agrees(activation, rng, fused_runs):
    model = models.Sequential([
        Input((5, 8)),
        layers.Dense(8, name="dense"),
        layers.GroupNormalization(4, name="gn"),
        layers.Activation(activation, name="act"),
        layers.Dense(3, name="out"),
    ])
    seed_weights(model, rng)
    assert model.fused_layers == [("gn", None, "act")]
    x = rng.standard_normal((4, 5, 8)).astype(np.float32)
    y1, g1 = run(model, x, fuse=True)
    fused_count = len(fused_runs)
    y0, g0 = run(model, x, fuse=False)
    assert len(fused_runs) == fused_count
    # A linear activation is plain GroupNorm: the plain op runs, not the fused one.
    assert fused_count == (0 if activation == "linear" else 1)
    assert y1.dtype == np.float32
    if activation in (*SAME_BITS, "swish"):
        np.testing.assert_array_equal(y1, y0)
        for a, b in zip(g1, g0, strict=True):
            np.testing.assert_array_equal(a, b)
    else:  # gelu: a Dense layer follows, so bounded relative to the largest entry
        assert_close_scaled([y1], [y0], 8)
        assert_close_scaled(g1, g0, 8)


@pytest.mark.parametrize("activation", ["relu", "silu", "sigmoid", "gelu"])
def test_float64_models_fuse_within_a_few_ulps(activation, rng, fused_runs):
    model = models.Sequential([
        Input((5, 8), dtype="float64"),
        layers.GroupNormalization(2, dtype="float64"),
        layers.Activation(activation, dtype="float64"),
    ])
    x = rng.standard_normal((3, 5, 8))
    y1, g1 = run(model, x, fuse=True)
    y0, g0 = run(model, x, fuse=False)
    assert len(fused_runs) == 1
    assert y1.dtype == np.float64
    if activation == "relu":
        np.testing.assert_array_equal(y1, y0)
    assert ulps(y1, y0) <= 16
    assert_close_scaled(g1, g0, 4)


def test_sequential_plan_follows_add_and_pop(rng):
    model = models.Sequential([Input((4, 6)), layers.GroupNormalization(3, name="gn")])
    assert model.fused_layers == []
    model.add(layers.Activation("relu", name="act"))
    assert model.fused_layers == [("gn", None, "act")]
    model.pop()
    assert model.fused_layers == []
    model.add(layers.Activation("tanh", name="tanh"))  # not an activation the op has
    assert model.fused_layers == []


def test_sequential_built_on_first_call_fuses(rng, fused_runs):
    model = models.Sequential([layers.GroupNormalization(2), layers.Activation("silu")])
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = model(x)
    assert fused_runs == [("silu", False)]
    ref = layers.Activation("silu")(model.layers[0](x))
    np.testing.assert_array_equal(y.data, ref.data)


# -- functional models ---------------------------------------------------------------------------


def test_residual_block_fuses_both_chains_and_agrees(rng, fused_runs):
    model = residual_block(rng)
    assert model.fused_layers == [("gn_a", None, "act_a"), ("gn_b", "skip", "act_b")]
    x = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    y1, g1 = run(model, x, fuse=True)
    assert sorted(fused_runs) == [("silu", False), ("silu", True)]
    y0, g0 = run(model, x, fuse=False)
    assert len(fused_runs) == 2
    np.testing.assert_array_equal(y1, y0)  # silu in float32: the kernels' bits
    for a, b in zip(g1, g0, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu"])
def test_residual_block_other_activations(activation, rng):
    model = residual_block(rng, activation=activation)
    assert len(model.fused_layers) == 2
    x = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    y1, g1 = run(model, x, fuse=True)
    y0, g0 = run(model, x, fuse=False)
    if activation == "gelu":
        # The first chain's 1-ulp differences pass through a conv and GroupNorm: bounded
        # relative to the largest output, not elementwise (entries near 0 differ in more ulps).
        assert_close_scaled([y1], [y0], 8)
        assert_close_scaled(g1, g0, 16)
    else:
        np.testing.assert_array_equal(y1, y0)
        for a, b in zip(g1, g0, strict=True):
            np.testing.assert_array_equal(a, b)


def test_tiny_unet_fuses_and_agrees(rng, fused_runs):
    model = tiny_unet(rng)
    assert model.fused_layers == [
        ("enc_gn", None, "enc_act"),
        ("mid_gn", None, "mid_act"),
        ("dec_gn", "dec_skip", "dec_act"),
    ]
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    y1, g1 = run(model, x, fuse=True)
    assert sorted(fused_runs) == [("gelu", False), ("relu", True), ("silu", False)]
    y0, g0 = run(model, x, fuse=False)
    # gelu in the middle differs by an ulp, which the layers after it carry along.
    assert_close_scaled([y1], [y0], 8)
    assert_close_scaled(g1, g0, 16)


def test_gn_without_gamma_and_beta_on_a_middle_axis(rng, fused_runs):
    inp = Input((4, 3, 5))
    g = layers.GroupNormalization(2, axis=1, center=False, scale=False, name="gn")(inp)
    out = layers.Activation("leaky_relu", name="act")(layers.Add(name="add")([inp, g]))
    model = models.Model(inp, out)
    assert model.fused_layers == [("gn", "add", "act")]
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    y1, g1 = run(model, x, fuse=True)
    assert fused_runs == [("leaky_relu", True)]
    y0, g0 = run(model, x, fuse=False)
    for a, b in zip([y1, *g1], [y0, *g0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_and_evaluate_fuse(rng, fused_runs):
    model = residual_block(rng, activation="relu")
    model.compile(loss="mse")
    x = rng.standard_normal((5, 6, 6, 8)).astype(np.float32)
    y = rng.standard_normal((5, 6, 6, 8)).astype(np.float32)
    fused = model.predict(x, batch_size=2)
    assert len(fused_runs) == 2 * 3  # two chains, three batches
    loss = model.evaluate(x, y, batch_size=5, verbose=0)
    model.compile(loss="mse", fuse=False)
    np.testing.assert_array_equal(model.predict(x, batch_size=2), fused)
    assert model.evaluate(x, y, batch_size=5, verbose=0) == loss
    assert len(fused_runs) == 2 * 3 + 2


# -- where fusion must not happen ----------------------------------------------------------------


def _no_fusion_agrees(model, x, fused_runs):
    assert model.fused_layers == []
    y1, g1 = run(model, x, fuse=True)
    assert fused_runs == []
    y0, g0 = run(model, x, fuse=False)
    for a, b in zip([y1, *g1], [y0, *g0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_fusion_when_group_norm_output_feeds_another_layer(rng, fused_runs):
    inp = Input((4, 8))
    g = layers.GroupNormalization(4)(inp)
    a = layers.Activation("relu")(g)
    d = layers.Dense(8)(g)  # a second user of GroupNorm's output
    model = models.Model(inp, layers.Add()([a, d]))
    _no_fusion_agrees(model, rng.standard_normal((2, 4, 8)).astype(np.float32), fused_runs)


def test_no_fusion_when_group_norm_output_is_a_model_output(rng, fused_runs):
    inp = Input((4, 8))
    g = layers.GroupNormalization(4)(inp)
    model = models.Model(inp, [g, layers.Activation("relu")(g)])
    assert model.fused_layers == []
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    out = model(x)
    assert fused_runs == []
    np.testing.assert_array_equal(out[1].data, np.maximum(out[0].data, 0))


def test_no_add_fusion_when_the_sum_feeds_two_layers(rng, fused_runs):
    inp = Input((4, 8))
    g = layers.GroupNormalization(4, name="gn")(inp)
    s = layers.Add(name="add")([g, inp])
    a = layers.Activation("silu", name="act")(s)
    d = layers.Dense(8, name="dense")(s)  # the sum has a second user
    model = models.Model(inp, layers.Add(name="join")([a, d]))
    _no_fusion_agrees(model, rng.standard_normal((2, 4, 8)).astype(np.float32), fused_runs)


def test_no_fusion_for_other_shapes_of_graph(rng, fused_runs):
    inp = Input((4, 8))
    g = layers.GroupNormalization(4)(inp)
    three = layers.Add()([g, inp, inp])  # not a single residual
    out1 = layers.Activation("relu")(three)
    g2 = layers.GroupNormalization(4)(out1)
    twice = layers.Add()([g2, g2])  # GroupNorm's output twice
    out2 = layers.Activation("relu")(twice)
    g3 = layers.GroupNormalization(4)(out2)
    out3 = layers.Activation("tanh")(g3)  # an activation the op does not have
    g4 = layers.GroupNormalization(4)(out3)
    out4 = layers.Add()([g4, out3])  # an Add with no Activation after it
    model = models.Model(inp, out4)
    _no_fusion_agrees(model, rng.standard_normal((2, 4, 8)).astype(np.float32), fused_runs)


def test_broadcast_residual_runs_unfused(rng, fused_runs):
    inp = Input((4, 8))
    bias = Input((1, 8))
    g = layers.GroupNormalization(4, name="gn")(inp)
    out = layers.Activation("relu", name="act")(layers.Add(name="add")([g, bias]))
    model = models.Model([inp, bias], out)
    assert model.fused_layers == [("gn", "add", "act")]
    x = [rng.standard_normal((2, 4, 8)).astype(np.float32),
         rng.standard_normal((2, 1, 8)).astype(np.float32)]
    y1, g1 = run(model, x, fuse=True)
    assert fused_runs == []  # Add broadcasts the residual: the layers run one by one
    y0, g0 = run(model, x, fuse=False)
    for a, b in zip([y1, *g1], [y0, *g0], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("policy", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
def test_16_bit_policies_do_not_fuse(policy, rng, fused_runs):
    model = models.Sequential([
        Input((4, 8)),
        layers.GroupNormalization(4, dtype=policy),
        layers.Activation("silu", dtype=policy),
    ])
    assert model.fused_layers == []
    model.predict(rng.standard_normal((2, 4, 8)).astype(np.float32))
    assert fused_runs == []


def test_data_of_another_dtype_runs_unfused(rng, fused_runs):
    """float64 data into float32 layers: Activation casts GroupNorm's float64 output."""
    model = models.Sequential([layers.GroupNormalization(2), layers.Activation("silu")])
    x = rng.standard_normal((2, 3, 4))  # float64
    y1 = model(x)
    assert fused_runs == []
    assert y1.dtype == np.float32
    model.compile(loss="mse", fuse=False)
    np.testing.assert_array_equal(model(x).data, y1.data)


def test_float64_policy_fuses(rng, fused_runs):
    model = residual_block(rng, dtype="float64")
    assert len(model.fused_layers) == 2
    y = model.predict(rng.standard_normal((2, 6, 6, 8)))
    assert y.dtype == np.float64
    assert len(fused_runs) == 2


def test_subclassed_layers_run_as_they_are(rng, fused_runs):
    class Doubled(layers.Activation):
        def call(self, inputs):
            return super().call(inputs) * 2.0

    model = models.Sequential([Input((4, 6)), layers.GroupNormalization(3), Doubled("relu")])
    assert model.fused_layers == []
    y = model(rng.standard_normal((2, 4, 6)).astype(np.float32))
    assert fused_runs == []
    assert np.all(y.data >= 0)


def test_subclassed_models_do_not_fuse(rng, fused_runs):
    class Net(models.Model):
        def __init__(self):
            super().__init__()
            self.gn = layers.GroupNormalization(2)
            self.act = layers.Activation("relu")

        def call(self, x, training=False):
            return self.act(self.gn(x))

    net = Net()
    y = net(rng.standard_normal((2, 3, 4)).astype(np.float32))
    assert net.fused_layers == []
    assert fused_runs == []
    assert np.all(y.data >= 0)


# -- fuse=False ----------------------------------------------------------------------------------


def test_fuse_false_turns_fusion_off(rng, fused_runs):
    model = residual_block(rng)
    model.compile(loss="mse", fuse=False)
    assert model.fused_layers == []
    model.predict(rng.standard_normal((2, 6, 6, 8)).astype(np.float32))
    assert fused_runs == []
    model.compile(loss="mse")  # the default turns it back on
    assert len(model.fused_layers) == 2
    model.predict(rng.standard_normal((2, 6, 6, 8)).astype(np.float32))
    assert len(fused_runs) == 2


def test_fuse_false_reaches_nested_models(rng, fused_runs):
    inner = models.Sequential([Input((4, 8)), layers.GroupNormalization(4),
                               layers.Activation("relu")], name="inner")
    inp = Input((4, 8))
    outer = models.Model(inp, layers.Dense(2)(inner(inp)))
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    outer.compile(loss="mse", fuse=False)
    outer.predict(x)
    assert fused_runs == []
    outer.compile(loss="mse", fuse=True)
    outer.predict(x)
    assert fused_runs == [("relu", False)]


def test_fuse_must_be_a_bool_and_a_bad_value_changes_nothing():
    model = models.Sequential([Input((4, 6)), layers.GroupNormalization(3),
                               layers.Activation("relu")])
    model.compile(loss="mse", fuse=False)
    with pytest.raises(TypeError, match="fuse"):
        model.compile(loss="mae", fuse="no")
    assert model.fused_layers == []
    assert model.loss is not None and model.loss.__class__.__name__ != "MeanAbsoluteError"


def test_fused_layers_is_read_only(rng):
    model = residual_block(rng)
    with pytest.raises(AttributeError):
        model.fused_layers = []
    listed = model.fused_layers
    listed.clear()  # a copy
    assert len(model.fused_layers) == 2


# -- training ------------------------------------------------------------------------------------


def test_training_curves_of_fused_and_unfused_models_overlap(rng):
    x = rng.standard_normal((16, 6, 6, 8)).astype(np.float32)
    y = np.tanh(x)
    first = residual_block(rng, activation="gelu")
    second = models.Model.from_config(first.get_config())
    second.set_weights(first.get_weights())
    curves = []
    for model, fuse in ((first, True), (second, False)):
        model.compile(optimizer="adam", loss="mse", fuse=fuse)
        history = model.fit(x, y, batch_size=4, epochs=4, seed=3, verbose=0)
        curves.append(np.array(history.history["loss"]))
    assert curves[0][-1] < curves[0][0]  # it trains
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-6)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_relu_training_is_bit_identical(rng):
    x = rng.standard_normal((8, 6, 6, 8)).astype(np.float32)
    y = np.abs(x)
    first = residual_block(rng, activation="relu")
    second = models.Model.from_config(first.get_config())
    second.set_weights(first.get_weights())
    losses = []
    for model, fuse in ((first, True), (second, False)):
        model.compile(optimizer="adam", loss="mse", fuse=fuse)
        losses.append(model.fit(x, y, batch_size=4, epochs=2, seed=1, verbose=0)
                      .history["loss"])
    assert losses[0] == losses[1]
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# -- configs, weights, files ---------------------------------------------------------------------


def test_config_and_weights_do_not_change(rng):
    model = residual_block(rng)
    config, weights = model.get_config(), model.get_weights()
    json_text = model.to_json()
    model.compile(loss="mse", fuse=True)
    model.predict(rng.standard_normal((2, 6, 6, 8)).astype(np.float32))
    assert model.get_config() == config
    assert model.to_json() == json_text
    model.compile(loss="mse", fuse=False)
    assert model.get_config() == config
    for a, b in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [w.path for w in model.weights] == [
        "conv_a/kernel", "conv_a/bias", "gn_a/gamma", "gn_a/beta",
        "conv_b/kernel", "conv_b/bias", "gn_b/gamma", "gn_b/beta",
    ]


def test_save_and_load_round_trip(rng, tmp_path, fused_runs):
    model = residual_block(rng)
    model.compile(optimizer="adam", loss="mse", fuse=False)
    x = rng.standard_normal((4, 6, 6, 8)).astype(np.float32)
    model.fit(x, np.tanh(x), batch_size=2, epochs=1, seed=0, verbose=0)
    want = model.predict(x)
    path = tmp_path / "block.keras"
    model.save(path)
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))
    assert "fuse" not in saved["compile_config"]  # Keras's keys only
    loaded = models.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.fused_layers == [("gn_a", None, "act_a"), ("gn_b", "skip", "act_b")]
    fused_runs.clear()
    np.testing.assert_array_equal(loaded.predict(x), want)  # silu: the same bits
    assert len(fused_runs) == 2
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sequential_config_round_trip_keeps_fusion(rng):
    model = models.Sequential([Input((4, 6)), layers.GroupNormalization(3, name="gn"),
                               layers.Activation("leaky_relu", name="act")])
    clone = models.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.fused_layers == [("gn", None, "act")]


# -- the leaky_relu activation, needed to fuse Activation("leaky_relu") ------------------------


def test_leaky_relu_activation_matches_keras(rng):
    keras = pytest.importorskip("keras")
    x = (rng.standard_normal((3, 7)) * 3).astype(np.float32)
    ours = layers.Activation("leaky_relu")
    theirs = keras.layers.Activation("leaky_relu")
    np.testing.assert_allclose(ours(x).data, np.asarray(theirs(x)), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours(x).data, np.maximum(x, np.float32(0.2) * x))
    config = ours.get_config()
    assert config["activation"] == "leaky_relu"
    back = keras.layers.Activation.from_config(config)
    assert layers.Activation.from_config(back.get_config()).get_config()["activation"] == (
        "leaky_relu"
    )
