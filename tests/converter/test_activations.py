"""Activations as neuron types: ``swap_activations``, ``scale_firing_rates``."""

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.testing import assert_allclose
from tests.helpers import predict, randomize, seq


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
