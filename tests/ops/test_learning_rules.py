"""Learning rules (PES, BCM, Oja, Voja, RLS) against `nengo.Simulator`.

Each test builds a small network of rate neurons (RectifiedLinear: no spike-time
shifts, so float32 results follow Nengo's float64 ones closely) whose learning
depends on the value of a constant input Node. With ``minibatch_size=4`` the
Node is fed per item with ``data=``: items 0 and 1 get the network's own value,
items 2 and 3 others. Every item must match a `nengo.Simulator` run of the same
network with that item's value, so identical inputs learn identically and
different inputs learn differently.
"""

import nengo
import numpy as np
import pytest
from nengo.builder.learning_rules import SimRLS
from nengo.builder.signal import Signal
from nengo.exceptions import BuildError

import nengo_jax.ops.learning_rules  # noqa: F401
import nengo_jax.ops.neurons  # noqa: F401
from nengo_jax import Simulator
from nengo_jax.ops.learning_rules import SimRLSBuilder
from nengo_jax.testing import assert_allclose

N_STEPS = 300

#: Tolerance relative to each probe's largest magnitude: the largest float32 error
#: measured over these runs is 9e-6 (Voja encoders, BCM weights), so this leaves a
#: 10x margin while every probe changes by at least 20x this during learning.
TOL = 1e-4


def rate_ens(n_neurons, dimensions=1, **kwargs):
    return nengo.Ensemble(
        n_neurons, dimensions, neuron_type=nengo.RectifiedLinear(), **kwargs
    )


def run_nengo(make_net, value):
    net, _, probes = make_net(value)
    with nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(N_STEPS)
        return [sim.data[p] for p in probes]


def check_rule(make_net, values, minibatch_size, tol=TOL):
    """Run ``make_net(values[0])`` on our simulator, one item per value.

    Compares every probe of every item with Nengo's run for that item's value,
    within ``tol`` times the probe's largest magnitude (float32 rounding
    accumulated over the run), and checks that learning changed every probe by
    much more than that tolerance.
    """
    net, stim, probes = make_net(values[0])
    B = minibatch_size or 1
    values = values[:B]
    data = None
    if minibatch_size is not None:
        x = np.asarray(values, dtype=float)[:, None, :]
        data = {stim: np.broadcast_to(x, (B, N_STEPS, x.shape[-1]))}
    with Simulator(net, minibatch_size=minibatch_size, progress_bar=False) as sim:
        sim.run_steps(N_STEPS, data=data)
        ours = [sim.data[p] if minibatch_size else sim.data[p][None] for p in probes]

    refs = {}
    for b, value in enumerate(values):
        key = tuple(value)
        if key not in refs:
            refs[key] = run_nengo(make_net, value)
        for probe, our, ref in zip(probes, ours, refs[key], strict=True):
            scale = np.abs(ref).max()
            change = np.abs(ref[-1] - ref[0]).max()
            assert change > 20 * tol * scale, f"{probe} barely learns"
            assert_allclose(
                our[b], ref, atol=tol * scale, rtol=0, err_msg=f"item {b}, {probe}"
            )
    if len(refs) > 1:
        first, *others = refs.values()
        for other in others:  # different inputs must learn different weights
            assert not np.allclose(other[0], first[0], rtol=0.01, atol=0)


def pes_net(value):
    """PES on a decoded connection and on a neuron-to-neuron connection."""
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(value)
        pre = rate_ens(40, 2)
        post = rate_ens(30, 2)
        out = nengo.Node(size_in=2)
        nengo.Connection(stim, pre, synapse=None)
        decoded = nengo.Connection(
            pre,
            out,
            function=lambda x: [0, 0],
            learning_rule_type=nengo.PES(learning_rate=3e-4, pre_synapse=None),
            synapse=None,
        )
        nengo.Connection(out, decoded.learning_rule, synapse=None)
        nengo.Connection(stim, decoded.learning_rule, transform=-1, synapse=None)

        # The error reaches each neuron through its (gain-scaled) encoder, so
        # this connection needs a much lower rate to converge smoothly.
        to_neurons = nengo.Connection(
            pre.neurons,
            post.neurons,
            transform=np.zeros((post.n_neurons, pre.n_neurons)),
            learning_rule_type=nengo.PES(learning_rate=3e-6, pre_synapse=None),
            synapse=None,
        )
        nengo.Connection(post, to_neurons.learning_rule, synapse=None)
        nengo.Connection(stim, to_neurons.learning_rule, transform=-1, synapse=None)
        probes = [
            nengo.Probe(decoded, "weights"),
            nengo.Probe(out),
            nengo.Probe(to_neurons, "weights"),
            nengo.Probe(post, synapse=None),
        ]
    return net, stim, probes


def rls_net(value):
    """RLS learning a decoded connection; probes the weights and ``P``."""
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(value)
        pre = rate_ens(30, 1)
        out = nengo.Node(size_in=1)
        nengo.Connection(stim, pre, synapse=None)
        conn = nengo.Connection(
            pre,
            out,
            function=lambda x: 0,
            learning_rule_type=nengo.RLS(learning_rate=1e-3, pre_synapse=None),
            synapse=None,
        )
        nengo.Connection(out, conn.learning_rule, synapse=None)
        nengo.Connection(stim, conn.learning_rule, transform=-1, synapse=None)
        probes = [
            nengo.Probe(conn, "weights"),
            nengo.Probe(conn.learning_rule, "inv_gamma"),
        ]
    return net, stim, probes


def hebbian_net(value):
    """BCM and Oja on neuron-to-neuron connections from one presynaptic ensemble."""
    rng = np.random.RandomState(3)
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(value)
        pre = rate_ens(20, 1)
        post_bcm = rate_ens(15, 1)
        post_oja = rate_ens(15, 1)
        nengo.Connection(stim, pre, synapse=None)
        bcm = nengo.Connection(
            pre.neurons,
            post_bcm.neurons,
            transform=rng.uniform(0, 2e-5, size=(15, 20)),
            learning_rule_type=nengo.BCM(
                learning_rate=1e-10,
                pre_synapse=nengo.Lowpass(0.005),
                theta_synapse=nengo.Lowpass(0.02),
            ),
        )
        oja = nengo.Connection(
            pre.neurons,
            post_oja.neurons,
            transform=rng.uniform(0, 2e-5, size=(15, 20)),
            learning_rule_type=nengo.Oja(learning_rate=3e-8, pre_synapse=None),
            synapse=None,
        )
        probes = [
            nengo.Probe(bcm, "weights"),
            nengo.Probe(bcm.learning_rule, "theta"),
            nengo.Probe(oja, "weights"),
            nengo.Probe(post_oja.neurons, synapse=None),
        ]
    return net, stim, probes


def voja_net(value):
    """Voja moving encoders towards the input, switched off after 0.2 s."""
    with nengo.Network(seed=4) as net:
        stim = nengo.Node(value)
        post = rate_ens(25, 2, intercepts=nengo.dists.Uniform(-0.5, 0.5))
        conn = nengo.Connection(
            stim,
            post,
            learning_rule_type=nengo.Voja(learning_rate=0.05, post_synapse=None),
            synapse=None,
        )
        learning = nengo.Node(lambda t: float(t < 0.2))
        nengo.Connection(learning, conn.learning_rule, transform=1, synapse=None)
        probes = [
            nengo.Probe(conn.learning_rule, "scaled_encoders"),
            nengo.Probe(post.neurons, synapse=None),
        ]
    return net, stim, probes


# Learning-rule inputs: item 0 (and 1) get the network's own value.
PES_VALUES = [[0.6, -0.4], [0.6, -0.4], [-0.3, 0.7], [0.2, 0.1]]
VALUES_1D = [[0.7], [0.7], [-0.5], [0.3]]
VOJA_VALUES = [[0.6, 0.5], [0.6, 0.5], [-0.7, 0.1], [0.1, -0.8]]


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_pes(minibatch_size):
    check_rule(pes_net, PES_VALUES, minibatch_size)


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_rls(minibatch_size):
    check_rule(rls_net, VALUES_1D, minibatch_size)


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_bcm_oja(minibatch_size):
    check_rule(hebbian_net, VALUES_1D, minibatch_size)


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_voja(minibatch_size):
    check_rule(voja_net, VOJA_VALUES, minibatch_size)


def test_rls_rejects_asymmetric_inverse_gamma():
    """Nengo's RLS step relies on ``P`` being symmetric, as our builder does."""
    P = Signal(np.triu(np.ones((3, 3))), name="P")
    op = SimRLS(Signal(np.zeros(3)), Signal(np.zeros(1)), Signal(np.zeros((1, 3))), P)
    with pytest.raises(BuildError, match="symmetric"):
        SimRLSBuilder(op, None)
