"""Converter: Keras 3 models as Nengo networks, layer by layer.

The oracle is Keras: every converted network must compute the Keras model's
output (``verify`` runs both; rate neurons, no synapses, one step).
"""

import jax
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.converter import LayerConverter
from nengo_jax.converter.layers import pool_matrix
from nengo_jax.testing import assert_allclose


def seq(shape, *layers):
    return keras.Sequential([keras.Input(shape), *layers])


def randomize(model, seed=0):
    """Random non-zero weights (Keras initializes biases to zero)."""
    rng = np.random.RandomState(seed)
    for var in model.weights:
        value = rng.uniform(-1, 1, size=var.shape)
        if "variance" in var.path:
            value = np.abs(value) + 0.5
        var.assign(value.astype(var.dtype))
    return model


def convert(model, **kwargs):
    converter = nengo_jax.Converter(randomize(model), **kwargs)
    assert converter.verify()
    return converter


def objects(converter, cls):
    net = converter.net
    everything = net.all_nodes + net.all_ensembles + net.all_connections
    return [obj for obj in everything if isinstance(obj, cls)]


def tensor_nodes(converter):
    return objects(converter, nengo_jax.TensorNode)


NATIVE = {
    "dense": lambda: seq((5,), keras.layers.Dense(4)),
    "dense-no-bias": lambda: seq((5,), keras.layers.Dense(4, use_bias=False)),
    "dense-relu": lambda: seq((5,), keras.layers.Dense(4, activation="relu")),
    "dense-sigmoid": lambda: seq((5,), keras.layers.Dense(4, activation="sigmoid")),
    "dense-tanh": lambda: seq((5,), keras.layers.Dense(4, activation="tanh")),
    "dense-rank2": lambda: seq((3, 5), keras.layers.Dense(4, activation="relu")),
    "dense-rank3": lambda: seq((2, 3, 5), keras.layers.Dense(4)),
    "activation-relu": lambda: seq((6,), keras.layers.Activation("relu")),
    "activation-sigmoid": lambda: seq((6,), keras.layers.Activation("sigmoid")),
    "activation-tanh": lambda: seq((6,), keras.layers.Activation("tanh")),
    "activation-linear": lambda: seq(
        (6,), keras.layers.Dense(3), keras.layers.Activation("linear")
    ),
    "relu": lambda: seq((2, 3), keras.layers.ReLU()),
    "relu-slope": lambda: seq((6,), keras.layers.ReLU(negative_slope=0.2)),
    "leaky-relu": lambda: seq((6,), keras.layers.LeakyReLU(negative_slope=0.1)),
    "flatten": lambda: seq((2, 3, 2), keras.layers.Flatten(), keras.layers.Dense(2)),
    "reshape": lambda: seq((6,), keras.layers.Reshape((3, 2)), keras.layers.Dense(2)),
    "permute": lambda: seq((2, 3, 4), keras.layers.Permute((3, 1, 2))),
    "conv1d": lambda: seq((7, 2), keras.layers.Conv1D(3, 3, activation="relu")),
    "conv1d-same-strided": lambda: seq(
        (7, 2), keras.layers.Conv1D(3, 3, strides=2, padding="same")
    ),
    "conv2d": lambda: seq((6, 5, 2), keras.layers.Conv2D(3, (3, 2))),
    "conv2d-same-strided": lambda: seq(
        (6, 5, 2), keras.layers.Conv2D(3, 3, strides=2, padding="same")
    ),
    "conv2d-groups": lambda: seq((5, 5, 4), keras.layers.Conv2D(6, 3, groups=2)),
    "avgpool1d": lambda: seq((7, 2), keras.layers.AveragePooling1D(2)),
    "avgpool1d-same": lambda: seq(
        (7, 2), keras.layers.AveragePooling1D(3, strides=2, padding="same")
    ),
    "avgpool2d": lambda: seq((6, 5, 2), keras.layers.AveragePooling2D((2, 2))),
    "avgpool2d-same": lambda: seq(
        (5, 5, 2), keras.layers.AveragePooling2D(3, strides=2, padding="same")
    ),
    "global-avgpool1d": lambda: seq((5, 3), keras.layers.GlobalAveragePooling1D()),
    "global-avgpool2d": lambda: seq(
        (4, 3, 2), keras.layers.GlobalAveragePooling2D(keepdims=True)
    ),
    "zeropad1d": lambda: seq((4, 2), keras.layers.ZeroPadding1D((1, 2))),
    "zeropad2d": lambda: seq((3, 4, 2), keras.layers.ZeroPadding2D(((1, 0), (2, 1)))),
    "cropping2d": lambda: seq((5, 4, 2), keras.layers.Cropping2D(((1, 2), (0, 1)))),
    "upsampling1d": lambda: seq((3, 2), keras.layers.UpSampling1D(2)),
    "upsampling2d": lambda: seq((3, 2, 2), keras.layers.UpSampling2D((2, 3))),
}


@pytest.mark.parametrize("name", list(NATIVE))
def test_native_layers_match_keras(name):
    converter = convert(NATIVE[name]())
    assert not tensor_nodes(converter)


def test_dense_is_a_trainable_transform_and_bias():
    model = seq((5,), keras.layers.Dense(4, activation="relu"))
    converter = convert(model)
    dense = model.layers[0]
    neurons = converter.layers[dense]
    assert isinstance(neurons, nengo.ensemble.Neurons)
    assert neurons.ensemble.n_neurons == 4
    assert isinstance(neurons.ensemble.neuron_type, nengo.RectifiedLinear)
    conns = [c for c in converter.net.all_connections if c.post_obj is neurons]
    kernel, bias = sorted(conns, key=lambda c: c.pre_obj.label == "bias")
    assert isinstance(kernel.transform, nengo.Dense)
    assert_allclose(kernel.transform.init, np.asarray(dense.kernel.value).T)
    assert bias.pre_obj.label == "bias"
    assert_allclose(bias.transform.init[:, 0], np.asarray(dense.bias.value))
    config = converter.net.config
    assert config[kernel].trainable and config[bias].trainable
    assert config[neurons.ensemble].trainable is False
    dense.trainable = False
    converter = nengo_jax.Converter(model)
    assert not any(
        converter.net.config[c].trainable for c in objects(converter, nengo.Connection)
    )


def merge_model(layer, n=2, shape=(3, 2)):
    inputs = [keras.Input(shape) for _ in range(n)]
    hidden = [keras.layers.Dense(2)(x) for x in inputs]
    return keras.Model(inputs, layer(hidden))


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Add,
        keras.layers.Average,
        keras.layers.Subtract,
        keras.layers.Concatenate,
        lambda: keras.layers.Concatenate(axis=1),
    ],
)
def test_merge_layers(layer):
    model = merge_model(layer(), n=2)
    converter = convert(model)
    assert not tensor_nodes(converter)
    assert len(converter.inputs) == 4  # each Input tensor and Input layer


def test_three_way_average():
    converter = convert(merge_model(keras.layers.Average(), n=3))
    assert not tensor_nodes(converter)


def test_pool_matrix_averages_valid_elements():
    indices, values, out = pool_matrix((3,), 1, (2,), (2,), "same")
    assert out == (2,)
    matrix = np.zeros((2, 3))
    matrix[indices[:, 0], indices[:, 1]] = values
    assert_allclose(matrix, [[0.5, 0.5, 0], [0, 0, 1]])


def test_max_pooling():
    model = randomize(seq((4, 4, 2), keras.layers.MaxPooling2D(2)))
    # by default it runs in a TensorNode, which computes the max
    converter = convert(model)
    assert len(tensor_nodes(converter)) == 1
    with pytest.raises(ValidationError, match="max_to_avg_pool=True"):
        nengo_jax.Converter(model, allow_fallback=False)
    # max_to_avg_pool: the average of the window
    converter = nengo_jax.Converter(model, max_to_avg_pool=True)
    assert not tensor_nodes(converter)
    avg = seq((4, 4, 2), keras.layers.AveragePooling2D(2))
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 4, 4, 2))
    with pytest.raises(ValidationError, match="differs"):
        converter.verify(inputs=x)  # the max differs from the mean
    assert_allclose(
        predict(converter, x)[0], np.asarray(avg(x)).reshape(2, -1), atol=1e-6
    )


def predict(converter, x, n_steps=1, **sim_args):
    inp = converter.model.inputs[0]
    out = converter.model.outputs[0]
    with nengo_jax.Simulator(
        converter.net, minibatch_size=len(x), progress_bar=False, **sim_args
    ) as sim:
        data = np.repeat(np.reshape(x, (len(x), 1, -1)), n_steps, axis=1)
        result = sim.predict({converter.inputs[inp]: data}, verbose=0)
    return result[converter.outputs[out]][:, -1], result[converter.outputs[out]]


def test_global_max_pooling_with_max_to_avg_pool():
    model = randomize(seq((5, 3), keras.layers.GlobalMaxPooling1D()))
    converter = nengo_jax.Converter(model, max_to_avg_pool=True)
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 5, 3))
    assert_allclose(predict(converter, x)[0], x.mean(axis=1), atol=1e-6)


def test_batch_normalization():
    model = seq(
        (3, 2),
        keras.layers.BatchNormalization(),
        keras.layers.BatchNormalization(axis=1, center=False),
    )
    converter = convert(model, inference_only=True)
    assert not tensor_nodes(converter)
    # in a trainable network it uses batch statistics: a TensorNode
    converter = convert(model)
    assert len(tensor_nodes(converter)) == 2
    with pytest.raises(ValidationError, match="inference_only=True"):
        nengo_jax.Converter(model, allow_fallback=False)


def test_dropout_is_identity_in_inference():
    model = seq((4,), keras.layers.Dense(3), keras.layers.Dropout(0.5))
    assert not tensor_nodes(convert(model, inference_only=True))
    assert len(tensor_nodes(convert(model))) == 1


class Square(keras.layers.Layer):
    def call(self, x):
        return x**2

    def compute_output_shape(self, input_shape):
        return input_shape


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x


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
    model = seq((4,), keras.layers.Dense(3, activation="softmax", name="d"))
    with pytest.raises(ValidationError, match="'d'.*softmax"):
        nengo_jax.Converter(model, allow_fallback=False)
    model = seq((6, 2), keras.layers.Conv1D(2, 3, dilation_rate=2, name="c"))
    with pytest.raises(ValidationError, match="'c'.*dilation_rate"):
        nengo_jax.Converter(model, allow_fallback=False)
    assert len(tensor_nodes(convert(model))) == 1


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


def test_swap_activations_and_spikes():
    model = randomize(seq((4,), keras.layers.Dense(8, activation="relu")))
    x = np.random.RandomState(2).uniform(0, 1, size=(3, 4))
    rates = np.asarray(model(x))
    for key in ("relu", keras.activations.relu, nengo.RectifiedLinear()):
        converter = nengo_jax.Converter(
            model,
            swap_activations={key: nengo.SpikingRectifiedLinear()},
            scale_firing_rates=200,
        )
        (ens,) = converter.net.all_ensembles
        assert isinstance(ens.neuron_type, nengo.SpikingRectifiedLinear)
    # training mode runs the spiking neurons as rates
    assert converter.verify(training=True, inputs=x)
    with pytest.raises(ValidationError, match="differs"):
        converter.verify(inputs=x)
    # spikes (of amplitude 1/200) over time average to the rates
    _, spikes = predict(converter, x, n_steps=500)
    assert set(np.unique(spikes)) == {0.0, 5.0}
    assert_allclose(spikes.mean(axis=1), rates, atol=0.011, rtol=0)


def test_scale_firing_rates():
    model = randomize(
        seq(
            (4,),
            keras.layers.Dense(8, activation="relu", name="a"),
            keras.layers.Dense(5, activation="relu", name="b"),
        )
    )
    swap = {nengo.RectifiedLinear(): nengo.SpikingRectifiedLinear()}
    x = np.random.RandomState(2).uniform(0, 1, size=(3, 4))
    rates_a = np.asarray(model.get_layer("a")(x))
    for scale in (1, 20, {"a": 20}):
        converter = nengo_jax.Converter(
            model, swap_activations=swap, scale_firing_rates=scale
        )
        ens_a, ens_b = converter.net.all_ensembles
        s_a = 20 if scale != 1 else 1
        s_b = 20 if scale == 20 else 1
        assert ens_a.neuron_type.amplitude == pytest.approx(1 / s_a)
        assert ens_b.neuron_type.amplitude == pytest.approx(1 / s_b)
        assert ens_a.gain.options[0] == s_a
        # the rates are unchanged
        assert converter.verify(training=True, inputs=x)
        # ... and each neuron of `a` spikes s_a times as often, give or take
        # one spike (its random initial voltage)
        seconds = 1.0
        spikes_a = spike_counts(converter, x, seconds)[0]
        expected = s_a * np.sum(rates_a) * seconds
        assert abs(spikes_a - expected) < rates_a.size, (scale, spikes_a, expected)


def spike_counts(converter, x, seconds):
    """The number of spikes of each ensemble (counting multiple spikes per step)."""
    with nengo.Network(seed=0) as net:
        net.networks.append(converter.net)
        ensembles = converter.net.all_ensembles
        probes = [nengo.Probe(e.neurons) for e in ensembles]
    inp = converter.inputs[converter.model.inputs[0]]
    with nengo_jax.Simulator(net, minibatch_size=len(x), progress_bar=False) as sim:
        data = np.repeat(x[:, None], int(round(seconds / sim.dt)), axis=1)
        out = sim.predict({inp: data}, verbose=0)
    return [
        np.sum(out[p]) * sim.dt / e.neuron_type.amplitude
        for p, e in zip(probes, ensembles, strict=True)
    ]


def test_scale_firing_rates_of_sigmoid_and_error():
    model = seq((3,), keras.layers.Dense(2, activation="sigmoid"))
    converter = nengo_jax.Converter(model, scale_firing_rates=4)
    (ens,) = converter.net.all_ensembles
    assert ens.neuron_type.tau_ref == 4 and ens.gain.options[0] == 4

    class NoAmplitude(nengo.neurons.NeuronType):
        def step(self, dt, J, output):
            output[...] = J

    with pytest.raises(ValidationError, match="needs a neuron type with an ampl"):
        nengo_jax.Converter(
            model,
            swap_activations={"sigmoid": NoAmplitude()},
            scale_firing_rates=4,
        )


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


def test_fit_lowers_loss_and_copies_back():
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    converter = convert(model)
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(32, 1, 16))
    y = np.stack([x[:, :, :8].mean(-1), x[:, :, 8:].mean(-1)], axis=-1)
    probe = converter.outputs[out]
    feed = {converter.inputs[inp]: x}
    with nengo_jax.Simulator(
        converter.net, minibatch_size=16, progress_bar=False
    ) as sim:
        names = [v.name for v in sim.keras_model.trainable_variables]
        assert names  # the kernels and biases
        sim.compile(keras.optimizers.Adam(0.01), loss={probe: "mse"})
        before = sim.evaluate(feed, {probe: y}, verbose=0)["loss"]
        sim.fit(feed, {probe: y}, epochs=20, verbose=0)
        after = sim.evaluate(feed, {probe: y}, verbose=0)["loss"]
        assert after < 0.5 * before
        trained = sim.predict(feed, verbose=0)[probe][:, 0]
        converter.copy_params_to_keras(sim)
    # the Keras model now computes what the trained network does (at full
    # float32 precision, as nengo_jax does: JAX's default is TF32 on GPUs)
    with jax.default_matmul_precision("highest"):
        assert_allclose(model(x.reshape(32, 4, 4, 1)), trained)
    assert nengo_jax.Converter(model).verify()
