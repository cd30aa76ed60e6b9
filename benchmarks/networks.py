"""Named benchmark networks.

Every constructor takes a neuron type, a ``scale`` factor and a seed, and returns
a `Benchmark`: the network and its output probe. Sizes at ``scale=1`` are those
of our performance issue; ``scale`` multiplies the widths (dimensions of the
array networks, neurons per ensemble of the chain) so the whole suite can be
tried quickly at, say, ``scale=0.1``. Inputs are Nodes with a function of time
or a `nengo.processes.WhiteSignal`, so no network needs data fed at run time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import nengo
import numpy as np
from nengo.networks import BasalGanglia, CircularConvolution, EnsembleArray


@dataclass(frozen=True)
class Benchmark:
    """A network to time and a summary of its size."""

    net: nengo.Network
    probe: nengo.Probe
    n_neurons: int


NEURON_TYPES = {
    "lif": nengo.LIF,
    "relu": nengo.RectifiedLinear,
}


def scaled(size: int, scale: float, minimum: int = 1) -> int:
    """``size * scale`` rounded, and at least ``minimum``."""
    return max(minimum, int(round(size * scale)))


def _white() -> nengo.processes.WhiteSignal:
    # unseeded, so each batch item of nengo_jax draws its own signal
    return nengo.processes.WhiteSignal(1.0, high=5, rms=0.3)


def _count(net: nengo.Network) -> int:
    return sum(ens.n_neurons for ens in net.all_ensembles)


def integrator(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    dimensions: int = 128,
    neurons_per_d: int = 32,
    tau: float = 0.1,
) -> Benchmark:
    """An array of 1-D integrators driven by white noise.

    An `.EnsembleArray` of ``dimensions`` ensembles of ``neurons_per_d`` neurons
    feeds its decoded output back to its input through a ``tau`` lowpass, as
    `nengo.networks.Integrator` does for one ensemble.
    """
    dimensions = scaled(dimensions, scale)
    with nengo.Network(label="integrator", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        stim = nengo.Node(_white(), size_out=dimensions)
        ea = EnsembleArray(neurons_per_d, dimensions)
        nengo.Connection(stim, ea.input, transform=tau, synapse=tau)
        nengo.Connection(ea.output, ea.input, synapse=tau)
        probe = nengo.Probe(ea.output, synapse=0.01)
    return Benchmark(net, probe, _count(net))


def cconv(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    dimensions: int = 64,
    neurons_per_d: int = 64,
) -> Benchmark:
    """`nengo.networks.CircularConvolution` of two sinusoidal vectors.

    ``neurons_per_d`` is Nengo's ``n_neurons`` per product: two 1-D ensembles of
    ``neurons_per_d // 2`` neurons. 64 dimensions take 132 products (264
    ensembles, 8448 neurons).
    """
    dimensions = scaled(dimensions, scale, minimum=2)
    freqs = np.linspace(0.5, 3.0, dimensions)
    phases = np.linspace(0, np.pi, dimensions)
    with nengo.Network(label="cconv", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        a = nengo.Node(lambda t: 0.5 * np.sin(2 * np.pi * freqs * t), label="a")
        b = nengo.Node(
            lambda t: 0.5 * np.cos(2 * np.pi * freqs * t + phases), label="b"
        )
        conv = CircularConvolution(neurons_per_d, dimensions)
        nengo.Connection(a, conv.input_a, synapse=None)
        nengo.Connection(b, conv.input_b, synapse=None)
        probe = nengo.Probe(conv.output, synapse=0.01)
    return Benchmark(net, probe, _count(net))


def pes(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    dimensions: int = 128,
    neurons_per_d: int = 32,
    learning_rate: float = 1e-4,
) -> Benchmark:
    """An ensemble array learning a communication channel with `nengo.PES`.

    Each ensemble of ``pre`` projects to its partner in ``post`` through a
    connection that starts out computing zero; the error ``post - stim`` drives
    the PES rule of every connection.
    """
    dimensions = scaled(dimensions, scale)
    with nengo.Network(label="pes", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        stim = nengo.Node(_white(), size_out=dimensions)
        pre = EnsembleArray(neurons_per_d, dimensions, label="pre")
        post = EnsembleArray(neurons_per_d, dimensions, label="post")
        error = nengo.Node(size_in=dimensions, label="error")
        nengo.Connection(stim, pre.input)
        nengo.Connection(post.output, error)
        nengo.Connection(stim, error, transform=-1)
        rule = nengo.PES(learning_rate=learning_rate)
        for i, (a, b) in enumerate(
            zip(pre.ea_ensembles, post.ea_ensembles, strict=True)
        ):
            conn = nengo.Connection(a, b, function=_zero, learning_rule_type=rule)
            nengo.Connection(error[i], conn.learning_rule)
        probe = nengo.Probe(post.output, synapse=0.01)
    return Benchmark(net, probe, _count(net))


def _zero(x):
    return np.zeros(1)


def chain(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    n_ensembles: int = 10,
    n_neurons: int = 1000,
    synapse: float | None = 0.005,
    probe_synapse: float | None = 0.01,
) -> Benchmark:
    """``n_ensembles`` 1-D ensembles of ``n_neurons``, each driving the next.

    ``synapse=None`` (on every connection) lets an input reach the output in
    one step, which is how the training benchmark uses it.
    """
    n_neurons = scaled(n_neurons, scale)
    with nengo.Network(label="chain", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        net.config[nengo.Connection].synapse = synapse
        stim = nengo.Node(_white(), label="stim")
        ensembles = [nengo.Ensemble(n_neurons, 1) for _ in range(n_ensembles)]
        nengo.Connection(stim, ensembles[0])
        for pre, post in zip(ensembles[:-1], ensembles[1:], strict=True):
            nengo.Connection(pre, post)
        probe = nengo.Probe(ensembles[-1], synapse=probe_synapse)
    return Benchmark(net, probe, _count(net))


def basal_ganglia(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    dimensions: int = 128,
    neurons_per_d: int = 32,
) -> Benchmark:
    """`nengo.networks.BasalGanglia` choosing among ``dimensions`` actions.

    ``neurons_per_d`` is Nengo's ``n_neurons_per_ensemble``; the utilities are
    slowly moving sinusoids, so the selected action changes over time.
    """
    dimensions = scaled(dimensions, scale, minimum=2)
    phases = np.linspace(0, 2 * np.pi, dimensions, endpoint=False)
    with nengo.Network(label="basal_ganglia", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        utilities = nengo.Node(
            lambda t: 0.5 + 0.3 * np.sin(2 * np.pi * t + phases), label="utilities"
        )
        bg = BasalGanglia(dimensions, n_neurons_per_ensemble=neurons_per_d)
        nengo.Connection(utilities, bg.input, synapse=None)
        probe = nengo.Probe(bg.output, synapse=0.01)
    return Benchmark(net, probe, _count(net))


def random_network(
    neuron_type: nengo.neurons.NeuronType,
    scale: float = 1.0,
    seed: int = 0,
    dimensions: int = 64,
    neurons_per_d: int = 32,
    n_ensembles: int = 20,
    connections_per: int = 5,
    scale_ensembles: bool = False,
) -> Benchmark:
    """``n_ensembles`` ensemble arrays connected at random.

    Each of the ``n_ensembles`` nodes of the graph is an `.EnsembleArray` of
    ``dimensions`` 1-D ensembles of ``neurons_per_d`` neurons (one plain
    ensemble's worth of neurons, without the cost of solving for
    high-dimensional decoders). Each sends ``connections_per`` connections
    (0.01 s lowpass) to arrays drawn at random with replacement, itself
    included, each with a random orthogonal transform scaled by 0.5, so the
    activity neither dies out nor blows up. A WhiteSignal drives the first array
    and the last one is probed. ``scale`` multiplies ``dimensions``, or with
    ``scale_ensembles`` the number of ensembles.
    """
    if scale_ensembles:
        n_ensembles = scaled(n_ensembles, scale)
    else:
        dimensions = scaled(dimensions, scale)
    rng = np.random.RandomState(seed)
    with nengo.Network(label="random_network", seed=seed) as net:
        net.config[nengo.Ensemble].neuron_type = neuron_type
        stim = nengo.Node(_white(), size_out=dimensions, label="stim")
        arrays = [
            EnsembleArray(neurons_per_d, dimensions, label=f"array{i}")
            for i in range(n_ensembles)
        ]
        nengo.Connection(stim, arrays[0].input, synapse=None)
        for pre in arrays:
            for post in rng.randint(n_ensembles, size=connections_per):
                q, _ = np.linalg.qr(rng.standard_normal((dimensions, dimensions)))
                nengo.Connection(
                    pre.output, arrays[post].input, transform=0.5 * q, synapse=0.01
                )
        probe = nengo.Probe(arrays[-1].output, synapse=0.01)
    return Benchmark(net, probe, _count(net))


#: 2,000 ensembles (1-D, 32 neurons) and 10,000 random connections between them;
#: ``scale`` multiplies the number of ensembles.
large_random_network = functools.partial(
    random_network,
    dimensions=1,
    neurons_per_d=32,
    n_ensembles=2000,
    connections_per=5,
    scale_ensembles=True,
)

#: The default benchmark suite.
NETWORKS = {
    "integrator": integrator,
    "cconv": cconv,
    "pes": pes,
    "chain": chain,
}

#: The networks of the optimizer issue (``run.py --optimizer``): big models whose
#: build, compile and step times depend on operator merging.
OPTIMIZER_NETWORKS = {
    "cconv128": functools.partial(cconv, dimensions=128, neurons_per_d=64),
    "basal_ganglia": basal_ganglia,
    "random": random_network,
    "random_large": large_random_network,
}

ALL_NETWORKS = {**NETWORKS, **OPTIMIZER_NETWORKS}


def step_loop_network(seed: int = 0) -> tuple[nengo.Network, list[nengo.Probe]]:
    """The seed tutorial's network (see ``examples/from_nengo.py``).

    A WhiteSignal Node feeds a 20-neuron ensemble computing ``x**2``, which feeds
    a 20-neuron ensemble computing ``sin``, which feeds an output Node; the input
    and output are probed with a 0.01 s lowpass.
    """
    with nengo.Network(label="tutorial", seed=seed) as net:
        inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3), label="x")
        square = nengo.Ensemble(20, 1)
        sin = nengo.Ensemble(20, 1)
        outpt = nengo.Node(size_in=1)
        nengo.Connection(inpt, square)
        nengo.Connection(square, sin, function=np.square)
        nengo.Connection(sin, outpt, function=np.sin)
        probes = [
            nengo.Probe(inpt, synapse=0.01),
            nengo.Probe(outpt, synapse=0.01),
        ]
    return net, probes
