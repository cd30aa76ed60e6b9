"""Layers without a native conversion run in TensorNodes (`.fallback`)."""

import keras
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.testing import assert_allclose
from tests.helpers import Square, convert, seq, tensor_nodes


def test_fallback_to_tensor_node():
    inp = keras.Input((4,))
    x = keras.layers.Dense(3, activation="softmax", name="soft")(inp)
    x = Square()(x)
    y = keras.layers.Multiply()([x, keras.layers.Dense(3)(inp)])
    y = y * 2.0 + 1.0  # Keras operations, not layers
    model = keras.Model(inp, y)
    converter = convert(model)
    nodes = tensor_nodes(converter)
    assert len(nodes) == 5  # softmax, Square, Multiply, multiply, add
    assert any(n.label == "soft.softmax" for n in nodes)
    assert isinstance(converter.layers[model.layers[2]], nengo_jax.TensorNode)


def test_fallback_layer_weights_train():
    """A layer in a TensorNode keeps its weights as trainable parameters."""
    inp = keras.Input((3,))
    out = keras.layers.EinsumDense("ab,bc->ac", output_shape=2)(inp)
    model = keras.Model(inp, out)
    converter = convert(model)
    (node,) = tensor_nodes(converter)
    x = np.random.RandomState(0).uniform(-1, 1, size=(16, 1, 3))
    y = x @ np.array([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    probe = converter.outputs[out]
    with nengo_jax.Simulator(
        converter.net, minibatch_size=8, progress_bar=False
    ) as sim:
        sim.compile(keras.optimizers.Adam(0.05), loss={probe: "mse"})
        feed = {converter.inputs[inp]: x}
        history = sim.fit(feed, {probe: y}, epochs=30, verbose=0)
        assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
        converter.copy_params_to_keras(sim)
        assert_allclose(model(x[:, 0]), sim.predict(feed, verbose=0)[probe][:, 0])


def test_no_fallback_names_the_layer():
    model = seq((4,), keras.layers.Dense(3), Square(name="sq"))
    with pytest.raises(ValidationError, match="'sq' \\(Square\\).*no native"):
        nengo_jax.Converter(model, allow_fallback=False)
    # (NengoDL 3.6 raises a TypeError for an unconvertible layer or activation:
    # the error is both)
    with pytest.raises(TypeError, match="'sq' \\(Square\\).*no native"):
        nengo_jax.Converter(model, allow_fallback=False)
    model = seq((4,), keras.layers.Dense(3, activation="softmax", name="d"))
    with pytest.raises(ValidationError, match="'d'.*softmax"):
        nengo_jax.Converter(model, allow_fallback=False)
    with pytest.raises(TypeError, match="'d'.*softmax"):
        nengo_jax.Converter(model, allow_fallback=False)
    model = seq((6, 2), keras.layers.Conv1D(2, 3, dilation_rate=2, name="c"))
    with pytest.raises(ValidationError, match="'c'.*dilation_rate"):
        nengo_jax.Converter(model, allow_fallback=False)
    assert len(tensor_nodes(convert(model))) == 1


class Scale(keras.layers.Layer):
    """A layer with weights and no native conversion."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_shared_layer_without_conversion_falls_back():
    # as NengoDL: with allow_fallback, each call runs in a TensorNode (no
    # split_shared_weights needed); without it, the error says the layer has
    # no native conversion
    scale = Scale(name="scale")
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Add()([scale(a), scale(b)]))
    with pytest.warns(UserWarning, match="'scale' .*called several times.*train"):
        converter = convert(model)
    assert [n.label for n in tensor_nodes(converter)] == ["scale", "scale"]
    with pytest.raises(ValidationError, match="'scale' \\(Scale\\).*no native"):
        nengo_jax.Converter(model, allow_fallback=False)
    # (a layer with a native conversion still needs split_shared_weights)
    dense = keras.layers.Dense(3)
    model = keras.Model([a, b], keras.layers.Add()([dense(a), dense(b)]))
    with pytest.raises(ValidationError, match="split_shared_weights"):
        nengo_jax.Converter(model)
