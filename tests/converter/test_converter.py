"""Converter: Keras 3 models as Nengo networks, layer by layer.

The model as a whole: the registry, nested models, the input, output and
layer maps, synapses, shared weights, temporal models and bad models. The
oracle is Keras: every converted network must compute the Keras model's
output (``verify`` runs both; rate neurons, no synapses, one step).
"""

import keras
import nengo
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.converter import LayerConverter
from tests.helpers import Square, convert, seq, tensor_nodes


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x


def test_register_converter():
    @nengo_jax.Converter.register(Scale)
    class ConvertScale(LayerConverter):
        def convert(self, inputs):
            out = self.add_node(self.output_size)
            self.connect(inputs[0], out, transform=self.layer.factor)
            return out

    try:
        assert nengo_jax.Converter.converter_for(Scale()) is ConvertScale
        model = seq((4,), keras.layers.Dense(3), Scale(3.0))
        converter = convert(model)
        assert not tensor_nodes(converter)
        node = converter.layers[model.layers[1]]
        assert isinstance(node, nengo.Node) and node.label == model.layers[1].name
    finally:
        del nengo_jax.Converter.converters[Scale]
    assert len(tensor_nodes(convert(model))) == 1


def test_nested_models():
    inner = seq((4,), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2))
    a = keras.Input((3, 2))
    b = keras.layers.Flatten()(a)
    sub_in = keras.Input((6,))
    sub = keras.Model(sub_in, keras.layers.Dense(4, activation="tanh")(sub_in))
    out = inner(sub(b))
    model = keras.Model(a, keras.layers.Average()([out, keras.layers.Dense(2)(b)]))
    converter = convert(model)
    assert not tensor_nodes(converter)
    labels = sorted(net.label for net in converter.net.networks)
    assert labels == sorted([inner.name, sub.name])
    # the inner layers are in the layer map too
    assert isinstance(converter.layers[inner.layers[0]], nengo.ensemble.Neurons)


def test_inputs_outputs_layers_maps():
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    x = keras.layers.Concatenate(name="cat")([a, b])
    y1 = keras.layers.Dense(2, name="d1")(x)
    y2 = keras.layers.Dense(1, activation="relu", name="d2")(x)
    model = keras.Model([a, b], [y1, y2])
    converter = convert(model)
    assert converter.inputs[a].label == "a" and converter.inputs[a].size_out == 2
    assert converter.inputs[model.layers[0]] is converter.inputs[a]
    probes = [converter.outputs[y1], converter.outputs[y2]]
    assert all(isinstance(p, nengo.Probe) for p in probes)
    assert converter.outputs[model.get_layer("d1")] is probes[0]
    assert probes[1].target is converter.layers[y2]
    assert converter.layers[model.get_layer("cat")].size_out == 5
    assert x in converter.layers and keras.Input((2,)) not in converter.layers


def test_synapse_on_connections_out_of_neurons():
    model = seq(
        (3,),
        keras.layers.Dense(4, activation="relu"),
        keras.layers.Dense(2),
    )
    converter = nengo_jax.Converter(model, synapse=0.01)
    for conn in converter.net.all_connections:
        is_neurons = isinstance(conn.pre_obj, nengo.ensemble.Neurons)
        assert conn.synapse == (nengo.Lowpass(0.01) if is_neurons else None)


def test_shared_weights():
    dense = keras.layers.Dense(3)
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Add()([dense(a), dense(b)]))
    with pytest.raises(ValidationError, match="called 2 times.*split_shared_weights"):
        nengo_jax.Converter(model)
    convert(model, split_shared_weights=True)
    convert(model, inference_only=True)


def test_temporal_model():
    inp = keras.Input((None, 3))
    x = keras.layers.Dense(4, activation="relu")(inp)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2))(x)
    out = keras.layers.TimeDistributed(Square())(x)
    model = keras.Model(inp, out)
    converter = convert(model, temporal_model=True)
    assert len(tensor_nodes(converter)) == 1
    assert converter.inputs[inp].size_out == 3


def test_bad_models():
    with pytest.raises(ValidationError, match="Expected a keras.Model"):
        nengo_jax.Converter(keras.layers.Dense(2))
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValidationError, match="keras.Input"):
        nengo_jax.Converter(model)
    with pytest.raises(ValidationError, match="unknown size"):
        nengo_jax.Converter(seq((None, 2), keras.layers.Dense(2)))
