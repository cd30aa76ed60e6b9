"""Activations as neuron types: ``swap_activations``, ``scale_firing_rates``."""

import warnings

import jax
import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax import LeakyReLU
from nengo_jax.converter.activations import family
from nengo_jax.testing import assert_allclose
from tests.helpers import (
    assert_rates_match,
    convert,
    predict,
    randomize,
    seq,
    tensor_nodes,
)

#: ``jax.nn.identity`` (JAX 0.6 and later): one more spelling of "linear".
JAX_IDENTITY = [jax.nn.identity] if hasattr(jax.nn, "identity") else []


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
    assert_rates_match(converter, x)
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
        assert_rates_match(converter, x)
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


# -- swap_activations keys: every spelling of an activation --------------------------


def after_dense(layer, units=3):
    """A model: Dense (linear) then the activation layer ``layer``."""
    return seq((4,), keras.layers.Dense(units), layer)


def neuron_types(converter):
    return [ens.neuron_type for ens in converter.net.all_ensembles]


RELU_MODELS = {
    "Dense(activation='relu')": lambda: seq((4,), keras.layers.Dense(3, "relu")),
    "Dense(activation=jax.nn.relu)": lambda: seq(
        (4,), keras.layers.Dense(3, jax.nn.relu)
    ),
    "Dense(activation=keras.ops.relu)": lambda: seq(
        (4,), keras.layers.Dense(3, keras.ops.relu)
    ),
    "ReLU()": lambda: after_dense(keras.layers.ReLU()),
    "Activation('relu')": lambda: after_dense(keras.layers.Activation("relu")),
    "Activation(jax.nn.relu)": lambda: after_dense(
        keras.layers.Activation(jax.nn.relu)
    ),
}


RELU_KEYS = [
    "relu",
    keras.activations.relu,
    keras.ops.relu,
    keras.ops.nn.relu,
    jax.nn.relu,
    nengo.RectifiedLinear(),
]


@pytest.mark.parametrize("model", RELU_MODELS.values(), ids=RELU_MODELS.keys())
def test_every_relu_spelling_swaps_every_relu(model):
    # (NengoDL matches only a key spelled as the model spells the activation:
    # its tf.nn.relu key misses Dense(activation="relu"), and no key but
    # tf.nn.relu and RectifiedLinear() reaches a ReLU layer)
    model = randomize(model())
    rates = nengo_jax.Converter(model)
    assert neuron_types(rates) == [nengo.RectifiedLinear()]
    assert not tensor_nodes(rates)
    assert rates.verify()
    for key in RELU_KEYS:
        converter = nengo_jax.Converter(
            model, swap_activations={key: nengo.SpikingRectifiedLinear()}
        )
        assert neuron_types(converter) == [nengo.SpikingRectifiedLinear()], key
    assert_rates_match(converter, np.random.RandomState(0).uniform(-1, 1, (2, 4)))


@pytest.mark.parametrize(
    "keys, model, default",
    [
        (
            ["sigmoid", keras.activations.sigmoid, keras.ops.sigmoid, jax.nn.sigmoid],
            lambda: after_dense(keras.layers.Activation(jax.nn.sigmoid)),
            nengo.Sigmoid(tau_ref=1),
        ),
        (
            ["tanh", keras.activations.tanh, keras.ops.tanh, jax.nn.tanh, jnp.tanh],
            lambda: seq((4,), keras.layers.Dense(3, "tanh")),
            nengo.Tanh(tau_ref=1),
        ),
        (
            ["linear", None, keras.activations.linear, *JAX_IDENTITY],
            lambda: seq((4,), keras.layers.Dense(3)),
            None,
        ),
        (
            [
                "leaky_relu",
                keras.activations.leaky_relu,
                keras.ops.leaky_relu,
                jax.nn.leaky_relu,
                LeakyReLU(negative_slope=0.3),
            ],
            lambda: after_dense(keras.layers.LeakyReLU(negative_slope=0.3)),
            LeakyReLU(negative_slope=0.3),
        ),
        (
            ["leaky_relu", jax.nn.leaky_relu, LeakyReLU(negative_slope=0.3)],
            lambda: after_dense(keras.layers.ReLU(negative_slope=0.3)),
            LeakyReLU(negative_slope=0.3),
        ),
    ],
    ids=["sigmoid", "tanh", "linear", "LeakyReLU", "ReLU(negative_slope)"],
)
def test_every_spelling_of_other_activations(keys, model, default):
    model = randomize(model())
    rates = nengo_jax.Converter(model)
    assert neuron_types(rates) == ([] if default is None else [default])
    assert rates.verify()
    for key in keys:
        converter = nengo_jax.Converter(
            model, swap_activations={key: nengo.SpikingRectifiedLinear()}
        )
        assert neuron_types(converter) == [nengo.SpikingRectifiedLinear()], key


def test_jax_activations_become_neurons():
    # the same function as Keras's: neurons; Dense's pre-activation feeds them
    for activation, neurons in [
        (jax.nn.relu, nengo.RectifiedLinear()),
        (jax.nn.sigmoid, nengo.Sigmoid(tau_ref=1)),
        (jnp.tanh, nengo.Tanh(tau_ref=1)),
    ]:
        converter = convert(seq((4,), keras.layers.Dense(3, activation)))
        assert neuron_types(converter) == [neurons]
        assert not tensor_nodes(converter)
    # jax.nn.leaky_relu's slope (0.01) is not Keras's (0.2): a TensorNode
    # computes it, and a leaky_relu key still swaps it
    model = seq((4,), keras.layers.Dense(3, jax.nn.leaky_relu))
    assert len(tensor_nodes(convert(model))) == 1
    converter = nengo_jax.Converter(
        model, swap_activations={"leaky_relu": nengo.RectifiedLinear()}
    )
    assert neuron_types(converter) == [nengo.RectifiedLinear()]
    assert not tensor_nodes(converter)


def test_swap_values_may_be_activations():
    model = randomize(seq((4,), keras.layers.Dense(3, "relu")))
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 4))
    dense = model.layers[0]
    pre = x @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    assert np.any(pre < 0)
    tanh = nengo_jax.Converter(model, swap_activations={"relu": "tanh"})
    assert neuron_types(tanh) == [nengo.Tanh(tau_ref=1)]
    assert_allclose(predict(tanh, x)[0], np.tanh(pre), atol=1e-5)
    linear = nengo_jax.Converter(
        model, swap_activations={jax.nn.relu: keras.activations.linear}
    )
    assert neuron_types(linear) == []
    assert_allclose(predict(linear, x)[0], pre, atol=1e-5)


def test_bad_swap_activations():
    model = seq((4,), keras.layers.Dense(3, "relu"))
    with pytest.raises(ValidationError, match="'rleu'.* not the name of a Keras"):
        nengo_jax.Converter(model, swap_activations={"rleu": nengo.LIF()})
    with pytest.raises(ValidationError, match="must be a Keras activation or a "):
        nengo_jax.Converter(model, swap_activations={"relu": 3})
    with pytest.raises(ValidationError, match="'sofmtax'.* not the name of a Keras"):
        nengo_jax.Converter(model, swap_activations={"relu": "sofmtax"})
    with pytest.raises(ValidationError, match="'relu' and .*relu are the same"):
        nengo_jax.Converter(
            model,
            swap_activations={
                "relu": nengo.LIF(),
                jax.nn.relu: nengo.SpikingRectifiedLinear(),
            },
        )
    # two spellings with one value are fine, and both match
    converter = nengo_jax.Converter(
        model, swap_activations={"relu": nengo.LIF(), keras.ops.relu: nengo.LIF()}
    )
    assert neuron_types(converter) == [nengo.LIF()]


def test_unmatched_swap_key_warns():
    model = seq(
        (4,), keras.layers.Dense(3, "relu"), keras.layers.Activation(jax.nn.sigmoid)
    )
    swap = {
        jax.nn.relu: nengo.SpikingRectifiedLinear(),
        "tanh": nengo.LIF(),
        nengo.Sigmoid(): nengo.LIF(),  # tau_ref 0.002: not the converted Sigmoid
    }
    with pytest.warns(UserWarning) as record:
        converter = nengo_jax.Converter(model, swap_activations=swap)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2, messages
    assert messages[0].startswith("swap_activations key 'tanh' (-> LIF(")
    assert "matches no activation in the model" in messages[0]
    assert messages[1].startswith("swap_activations key Sigmoid() (-> LIF(")
    # the key that matched swapped its layer; the other layer is as it was
    assert neuron_types(converter) == [
        nengo.SpikingRectifiedLinear(),
        nengo.Sigmoid(tau_ref=1),
    ]
    assert converter.swap_activations is swap


def test_activation_family():
    def relu(x):
        return x

    assert family(relu) is None  # a function of the user's: only itself
    relu.__module__ = "tensorflow.python.ops.gen_nn_ops"  # as tf.nn.relu's
    assert family(relu) == "relu"
    for spelling, name in [
        ("relu", "relu"),
        (None, "linear"),
        *[(identity, "linear") for identity in JAX_IDENTITY],
        (keras.activations.swish, "silu"),
        (jax.nn.swish, "silu"),
        (jax.nn.softmax, "softmax"),
        (nengo.RectifiedLinear(), "relu"),
        (nengo.SpikingRectifiedLinear(), None),
        (LeakyReLU(0.1), "leaky_relu"),
        (np.tanh, "tanh"),
    ]:
        assert family(spelling) == name, spelling


def test_swaps_before_and_after_the_neuron_mapping():
    # NengoDL 3.6 swaps activation keys, then maps activations to neuron
    # types, then swaps neuron-type keys (once each: no cycles)
    relu = randomize(seq((4,), keras.layers.Dense(3, "relu")))
    tanh = randomize(seq((4,), keras.layers.Dense(3, "tanh")))
    elu = randomize(seq((4,), keras.layers.Dense(3, "elu")))
    acts = keras.activations
    for model, swap, expected in [
        (relu, {acts.relu: acts.tanh, acts.tanh: acts.relu}, nengo.Tanh(tau_ref=1)),
        (tanh, {acts.relu: acts.tanh, acts.tanh: acts.relu}, nengo.RectifiedLinear()),
        (
            relu,
            {acts.relu: nengo.LIF(), nengo.LIF(): nengo.SpikingRectifiedLinear()},
            nengo.SpikingRectifiedLinear(),
        ),
        (
            relu,
            {acts.relu: acts.sigmoid, nengo.Sigmoid(tau_ref=1): nengo.LIF()},
            nengo.LIF(),
        ),
        (elu, {acts.elu: acts.relu}, nengo.RectifiedLinear()),
    ]:
        with warnings.catch_warnings():
            # (the keys that the model does not reach warn)
            warnings.simplefilter("ignore", UserWarning)
            converter = nengo_jax.Converter(model, swap_activations=swap)
        assert neuron_types(converter) == [expected], swap
        assert not tensor_nodes(converter)


def test_swap_to_an_activation_without_neurons():
    # NengoDL 3.6: {relu: elu} computes elu in a TensorNode (an error
    # without allow_fallback), as does {relu: softmax}
    model = randomize(seq((4,), keras.layers.Dense(3, "relu", name="d")))
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 4))
    dense = model.layers[0]
    pre = x @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    assert np.any(pre < 0)
    for value, func in [
        (keras.activations.elu, lambda z: np.where(z > 0, z, np.expm1(z))),
        ("softmax", lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)),
    ]:
        swap = {keras.activations.relu: value}
        converter = nengo_jax.Converter(model, swap_activations=swap)
        assert neuron_types(converter) == []
        assert len(tensor_nodes(converter)) == 1
        assert_allclose(predict(converter, x)[0], func(pre), atol=1e-5)
        with pytest.raises(ValidationError, match="'d'.*activation '(elu|softmax)'"):
            nengo_jax.Converter(model, swap_activations=swap, allow_fallback=False)
