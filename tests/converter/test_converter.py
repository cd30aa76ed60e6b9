"""Converter: Keras 3 models as Nengo networks, layer by layer.

The model as a whole: the registry, nested models, the input, output and
layer maps, synapses, shared weights, temporal models and bad models. The
oracle is Keras: every converted network must compute the Keras model's
output (``verify`` runs both; rate neurons, no synapses, one step).
"""

import warnings

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.converter import LayerConverter
from nengo_jax.testing import assert_allclose
from tests.helpers import Square, convert, predict, randomize, seq, tensor_nodes


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x


def test_register_converter():
    @nengo_jax.Converter.register(Scale)
    class ConvertScale(LayerConverter):
        def convert_inputs(self, inputs):
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
        assert isinstance(converter.get_converter(model.layers[1]), ConvertScale)
        assert converter.get_converter(model.layers[1]) is converter.get_converter(
            model.layers[1]
        )
    finally:
        del nengo_jax.Converter.converters[Scale]
    assert len(tensor_nodes(convert(model))) == 1


class Affine(keras.layers.Layer):
    """``relu(a @ w + b) + 2 * c`` of its inputs ``[a, c]``."""

    def build(self, shapes):
        self.w = self.add_weight(shape=(shapes[0][-1], 2), initializer="ones")
        self.b = self.add_weight(shape=(2,), initializer="zeros")

    def call(self, inputs):
        a, c = inputs
        return keras.activations.relu(a @ self.w + self.b) + 2 * c


class ConvertAffine(LayerConverter):
    """A converter written for NengoDL (its tf.nn.relu now keras's relu)."""

    has_weights = True

    def convert(self, node_id):
        self.shapes = (
            self.input_shape(node_id),
            self.output_shape(node_id),
            self.input_shape(node_id, full_shape=True),
        )
        hidden = self.add_nengo_obj(
            node_id,
            biases=np.asarray(self.layer.b),
            activation=keras.activations.relu,
        )
        self.add_connection(
            node_id,
            hidden,
            input_idx=0,
            transform=np.asarray(self.layer.w).T,
            trainable=True,
        )
        output = self.add_nengo_obj(node_id)
        conn = nengo.Connection(hidden, output, synapse=None)
        self.set_trainable(conn, False)
        self.add_connection(node_id, output, input_idx=1, transform=2.0)
        return output


def label(obj):
    if isinstance(obj, nengo.ensemble.Neurons):
        return f"{obj.ensemble.label} neurons"
    return obj.label


def test_nengo_dl_layer_converter_api():
    # what NengoDL 3.6 does with this converter: the shapes below, an
    # Ensemble 'affine.0' of 2 RectifiedLinear neurons and a Node 'affine.0';
    # the connection from input 0 trains, the others do not; verify passes,
    # with training too (8 trainable parameters in both)
    nengo_jax.Converter.register(Affine)(ConvertAffine)
    try:
        a, c = keras.Input((3,)), keras.Input((2,))
        affine = Affine(name="affine")
        model = keras.Model([a, c], affine([a, c]))
        randomize(model)
        converter = nengo_jax.Converter(model, allow_fallback=False)
        layer_converter = converter.get_converter(affine)
        assert layer_converter.shapes == (
            [(3,), (2,)],
            (2,),
            [(None, 3), (None, 2)],
        )
        (ens,) = converter.net.all_ensembles
        assert (ens.label, ens.neuron_type, ens.n_neurons) == (
            "affine.0",
            nengo.RectifiedLinear(),
            2,
        )
        output = converter.layers[affine]
        assert isinstance(output, nengo.Node) and output.label == "affine.0"
        connections = converter.net.all_connections
        trainable = {
            (label(conn.pre_obj), label(conn.post_obj)): config[conn].trainable
            for conn, config in [(x, converter.net.config) for x in connections]
            if label(conn.pre_obj) != "bias"
        }
        assert trainable == {
            (converter.inputs[a].label, "affine.0 neurons"): True,
            ("affine.0 neurons", "affine.0"): False,
            (converter.inputs[c].label, "affine.0"): False,
        }
        rng = np.random.RandomState(1)
        x = [rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (4, 2))]
        assert converter.verify(inputs=x)
        assert converter.verify(training=True, inputs=x)
    finally:
        del nengo_jax.Converter.converters[Affine]


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


def test_synapse_on_probes_of_neuron_outputs():
    # as NengoDL: the output probes of neurons get the synapse, others none
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="relu")(inp)
    relu = keras.layers.Dense(3, activation="relu")(hidden)
    linear = keras.layers.Dense(2)(hidden)
    relu_layer = keras.layers.ReLU()(linear)
    softmax = keras.layers.Dense(2, activation="softmax")(hidden)
    model = keras.Model(inp, [relu, linear, relu_layer, softmax])
    converter = nengo_jax.Converter(model, synapse=0.01)
    synapses = [converter.outputs[t].synapse for t in model.outputs]
    assert synapses == [nengo.Lowpass(0.01), None, nengo.Lowpass(0.01), None]
    assert isinstance(converter.outputs[softmax].target, nengo_jax.TensorNode)
    converter = nengo_jax.Converter(model)
    assert [converter.outputs[t].synapse for t in model.outputs] == [None] * 4


def test_output_of_neurons_is_filtered():
    model = randomize(seq((4,), keras.layers.Dense(3, activation="relu")))
    x = np.random.RandomState(0).uniform(0, 1, size=(2, 4))
    rates = np.asarray(model(x))
    assert np.all(rates.sum(axis=0) > 0)
    n_steps = 30
    _, unfiltered = predict(nengo_jax.Converter(model), x, n_steps=n_steps)
    assert_allclose(unfiltered, np.repeat(rates[:, None], n_steps, axis=1))
    converter = nengo_jax.Converter(model, synapse=nengo.Alpha(0.005))
    assert converter.outputs[model.outputs[0]].synapse == nengo.Alpha(0.005)
    _, filtered = predict(converter, x, n_steps=n_steps)
    # the rates, probed through the synapse in Nengo's reference simulator
    for i, r in enumerate(rates):
        with nengo.Network() as net:
            probe = nengo.Probe(nengo.Node(r), synapse=nengo.Alpha(0.005))
        with nengo.Simulator(net, progress_bar=False) as ref:
            ref.run_steps(n_steps)
        assert_allclose(filtered[i], ref.data[probe], atol=1e-5)
    # it starts at 0 and rises towards the rates
    assert np.all(filtered[:, 0] == 0)
    assert np.all(filtered[:, -1] >= 0.9 * rates) and np.any(filtered[:, -1] > 0.5)


def test_regularizers_and_constraints_run_in_tensor_nodes():
    # as NengoDL: a layer with a regularizer or constraint (which act in
    # training) runs in a TensorNode, with a warning, unless inference_only
    for kwargs, name in [
        (dict(kernel_regularizer=keras.regularizers.L2(0.5)), "kernel_regularizer"),
        (dict(bias_regularizer="l1"), "bias_regularizer"),
        (dict(activity_regularizer="l2"), "activity_regularizer"),
        (dict(kernel_constraint="non_neg"), "kernel_constraint"),
        (dict(bias_constraint=keras.constraints.MaxNorm(2)), "bias_constraint"),
    ]:
        model = seq((4,), keras.layers.Dense(3, activation="relu", name="d", **kwargs))
        with pytest.warns(UserWarning, match=rf"Layer 'd' \(Dense\) has {name}="):
            converter = convert(model)
        assert len(tensor_nodes(converter)) == 1, name
        assert not converter.net.all_ensembles
        converter = convert(model, inference_only=True)
        assert not tensor_nodes(converter)
        assert len(converter.net.all_ensembles) == 1
        with pytest.raises(ValidationError, match=rf"'d' \(Dense\).*{name}="):
            nengo_jax.Converter(model, allow_fallback=False)
    conv = keras.layers.Conv2D(2, 3, kernel_regularizer="l2", name="c")
    with pytest.warns(UserWarning, match=r"'c' \(Conv2D\) has kernel_regularizer=L2"):
        assert len(tensor_nodes(convert(seq((5, 5, 1), conv)))) == 1


def test_regularizers_and_constraints_act_in_training():
    # the numbers NengoDL gives: the loss adds 10 * sum(kernel**2) = 120 and
    # 2 * sum(|bias|) = 6 to the MSE of 16, but not the activity regularizer
    x = np.ones((8, 1, 4))
    for kwargs, loss in [
        ({}, 16),
        (dict(kernel_regularizer=keras.regularizers.L2(10.0)), 136),
        (dict(bias_regularizer=keras.regularizers.L1(2.0)), 22),
        (dict(activity_regularizer=keras.regularizers.L2(10.0)), 16),
    ]:
        model = seq((4,), keras.layers.Dense(3, kernel_initializer="ones", **kwargs))
        model.layers[0].bias.assign(np.full(3, 1.0 if loss == 22 else 0.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converter = nengo_jax.Converter(model)
        inp = converter.inputs[model.inputs[0]]
        out = converter.outputs[model.outputs[0]]
        with nengo_jax.Simulator(converter.net, minibatch_size=8) as sim:
            sim.compile(keras.optimizers.SGD(0.0), loss={out: "mse"})
            y = np.zeros((8, 1, 3)) + (1 if loss == 22 else 0)
            result = sim.evaluate({inp: x}, {out: y}, verbose=0)
        assert result["loss"] == pytest.approx(loss), kwargs
    # a constraint holds the kernel non-negative through training
    for constraint, expected in [(None, -4.4788), ("non_neg", 0)]:
        dense = keras.layers.Dense(
            3, use_bias=False, kernel_initializer="ones", kernel_constraint=constraint
        )
        model = seq((4,), dense)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converter = nengo_jax.Converter(model)
        inp = converter.inputs[model.inputs[0]]
        out = converter.outputs[model.outputs[0]]
        with nengo_jax.Simulator(converter.net, minibatch_size=8) as sim:
            sim.compile(keras.optimizers.SGD(0.1), loss={out: "mse"})
            sim.fit({inp: x}, {out: np.full((8, 1, 3), -10.0)}, epochs=3, verbose=0)
            y = sim.predict({inp: x}, verbose=0)[out]
        assert_allclose(y, np.full((8, 1, 3), expected), atol=1e-4)


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


def test_maps_count_each_tensor_once():
    # as NengoDL: one Input feeding two layers is one input; the maps are
    # keyed by tensors, and a layer looks up the tensor it makes
    inp = keras.Input((3,))
    d1, d2 = keras.layers.Dense(2), keras.layers.Dense(2)
    out = keras.layers.Add()([d1(inp), d2(inp)])
    model = keras.Model(inp, out)
    converter = nengo_jax.Converter(model)
    assert len(converter.inputs) == 1 and len(converter.outputs) == 1
    assert converter.inputs.keys() == [inp]
    assert converter.inputs[model.layers[0]] is converter.inputs[inp]
    assert converter.outputs[model.layers[-1]] is converter.outputs[out]
    # NengoDL: 4 layer entries for two inputs each through one Dense
    a, b = keras.Input((2,)), keras.Input((3,))
    model = keras.Model([a, b], [keras.layers.Dense(2)(a), keras.layers.Dense(2)(b)])
    converter = nengo_jax.Converter(model)
    assert (len(converter.inputs), len(converter.outputs)) == (2, 2)
    assert len(converter.layers) == 4


def test_layer_called_twice_is_an_ambiguous_key():
    # as NengoDL: a KeyError naming the layer; its outputs are keys
    square = Square(name="sq")
    a, b = keras.Input((3,)), keras.Input((3,))
    x, y = square(a), square(b)
    model = keras.Model([a, b], keras.layers.Add()([x, y]))
    converter = convert(model)
    assert converter.layers[x] is not converter.layers[y]
    with pytest.raises(KeyError, match="'sq' is called 2 times"):
        converter.layers[square]
    assert square not in converter.layers
