"""Helpers shared by our tests."""

import keras
import nengo
import numpy as np

import nengo_jax

MB = 4
STEPS = 5


def committed(sim):
    """Copies of everything a call may change."""
    snapshot = sim._runtime.snapshot
    return {
        "params": {k: np.array(v) for k, v in snapshot.params.items()},
        "state": {k: np.array(v) for k, v in snapshot.state.items()},
        "n_steps": snapshot.n_steps,
        "probes": {i: np.array(sim.data[p]) for i, p in enumerate(sim.model.probes)},
    }


def assert_same(a, b):
    assert a["n_steps"] == b["n_steps"]
    for part in ("params", "state", "probes"):
        assert a[part].keys() == b[part].keys(), part
        for key in a[part]:
            np.testing.assert_array_equal(a[part][key], b[part][key], err_msg=key)


def ramp_net(neuron_type=None, seed=0, synapse=None):
    """Input Node -> (LIF) Ensemble -> output Node, probed without a filter."""
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node(np.sin, label="inp")
        net.ens = nengo.Ensemble(
            30, 1, neuron_type=neuron_type or nengo.LIF(), label="ens"
        )
        net.out = nengo.Node(size_in=1, label="out")
        net.c_in = nengo.Connection(net.inp, net.ens, synapse=None, transform=1.0)
        net.c_out = nengo.Connection(net.ens, net.out, synapse=synapse)
        net.p = nengo.Probe(net.out, label="p")
        net.p_ens = nengo.Probe(net.ens, synapse=0.01, label="p_ens")
        net.p_neurons = nengo.Probe(net.ens.neurons, label="p_neurons")
    return net


def weights_net(neuron_type=None, n_neurons=20, seed=0, parallel=False):
    """Input Node -> LIFRate Ensemble -> output Node, all connections with weights.

    With ``parallel``, a second Ensemble alike: Nengo's optimizer then merges
    their biases (and weights) into shared arrays.
    """
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node(np.sin, label="inp")
        net.ens = nengo.Ensemble(
            n_neurons, 1, neuron_type=neuron_type or nengo.LIFRate(), label="ens"
        )
        net.out = nengo.Node(size_in=1, label="out")
        net.c_in = nengo.Connection(net.inp, net.ens, synapse=None, transform=1.0)
        net.c_out = nengo.Connection(net.ens, net.out, synapse=0.005)
        net.p = nengo.Probe(net.out, label="p")
        if parallel:
            ens2 = nengo.Ensemble(n_neurons, 1, neuron_type=net.ens.neuron_type)
            nengo.Connection(net.inp, ens2, synapse=None, transform=1.0)
            nengo.Connection(ens2, net.out, synapse=0.005)
    return net


def train(sim, net, epochs=3):
    """A few epochs of ``x -> x**2`` on ``net.p`` (a `weights_net`)."""
    rng = np.random.RandomState(1)
    x = rng.uniform(-1, 1, size=(2 * MB, STEPS, 1))
    sim.compile(keras.optimizers.Adam(0.02), loss={net.p: "mse"})
    sim.fit({net.inp: x}, {net.p: x**2}, epochs=epochs, verbose=0)


def objects(net):
    """The ensembles and connections of ``net`` (those with parameters)."""
    return net.all_ensembles + net.all_connections


# -- the converter ------------------------------------------------------------


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


def assert_rates_match(converter, x):
    """The network in training mode (spiking neurons as rates) computes the model."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(learning_phase=True)
    net.networks.append(converter.net)
    inp = converter.model.inputs[0]
    out = converter.model.outputs[0]
    with nengo_jax.Simulator(net, minibatch_size=len(x), progress_bar=False) as sim:
        data = np.reshape(x, (len(x), 1, -1))
        got = sim.predict({converter.inputs[inp]: data}, verbose=0)
    want = np.reshape(converter.model(x, training=True), (len(x), 1, -1))
    np.testing.assert_allclose(got[converter.outputs[out]], want, atol=1e-5)


def converted(converter, cls):
    """The objects of type ``cls`` in ``converter``'s network."""
    net = converter.net
    everything = net.all_nodes + net.all_ensembles + net.all_connections
    return [obj for obj in everything if isinstance(obj, cls)]


def tensor_nodes(converter):
    return converted(converter, nengo_jax.TensorNode)


def predict(converter, x, n_steps=1, **sim_args):
    inp = converter.model.inputs[0]
    out = converter.model.outputs[0]
    with nengo_jax.Simulator(
        converter.net, minibatch_size=len(x), progress_bar=False, **sim_args
    ) as sim:
        data = np.repeat(np.reshape(x, (len(x), 1, -1)), n_steps, axis=1)
        result = sim.predict({converter.inputs[inp]: data}, verbose=0)
    return result[converter.outputs[out]][:, -1], result[converter.outputs[out]]


class Square(keras.layers.Layer):
    def call(self, x):
        return x**2

    def compute_output_shape(self, input_shape):
        return input_shape


def replay(neuron_type, J, dt=0.001):
    """The type's NumPy ``step`` in float64 over the inputs ``J`` (n_steps, n)."""
    state = neuron_type.make_state(J.shape[1], np.random.RandomState(0), np.float64)
    output = np.zeros(J.shape)
    for t in range(J.shape[0]):
        neuron_type.step(dt, J[t].astype(np.float64), output[t], **state)
    return output
