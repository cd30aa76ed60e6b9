"""SimProcess: synapses in JAX, host-streamed processes and the host fallback."""

import nengo
import numpy as np
import pytest
from nengo.synapses import LinearFilter

import nengo_jax.ops.processes  # noqa: F401
from nengo_jax import Simulator
from nengo_jax.maths.synapses import LinearFilterStep
from nengo_jax.testing import assert_allclose, run_both

P = nengo.processes

#: Synapses and the Nengo step class each one exercises.
SYNAPSES = {
    "lowpass": (nengo.Lowpass(0.01), "OneX"),
    "alpha": (nengo.Alpha(0.005), "NoD"),
    "triangle": (nengo.synapses.Triangle(0.004), None),
    "feedthrough": (LinearFilter([1, 2], [1, 3]), "General"),
    "order2_feedthrough": (LinearFilter([5e-5, 0.01, 1], [1e-4, 0.02, 1]), "General"),
    "order4": (LinearFilter([1], [1e-8, 4e-6, 6e-4, 0.04, 1]), "NoD"),
    "gain_only": (LinearFilter([2.0], [1.0]), "NoX"),
    "digital": (LinearFilter([0.5, 0.1], [1, -0.5], analog=False), "General"),
}


def synapse_net(synapses):
    with nengo.Network(seed=1) as net:
        # (unseeded, so that batch items differ; the network seed fixes item 0)
        stim = nengo.Node(P.WhiteSignal(0.5, high=10), size_out=2)
        probes = {"stim": (nengo.Probe(stim),)}
        for name, synapse in synapses.items():
            node = nengo.Node(size_in=2)
            nengo.Connection(stim, node, synapse=synapse)
            probes[name] = (nengo.Probe(node), nengo.Probe(stim, synapse=synapse))
    return net, probes


def test_synapse_kinds():
    """Each test synapse runs the step class its name claims."""
    with nengo.Network() as net:
        stim = nengo.Node([0, 0])
        conns = {
            name: nengo.Connection(stim, nengo.Node(size_in=2), synapse=synapse)
            for name, (synapse, kind) in SYNAPSES.items()
            if kind is not None
        }
    model = nengo.builder.Model(dt=0.001)
    model.build(net)
    ops = {op.process: op for op in model.operators if hasattr(op, "process")}
    for name, conn in conns.items():
        step = LinearFilterStep(ops[conn.synapse], 0.001, np.float32)
        assert step.kind == SYNAPSES[name][1], name


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_synapses(minibatch_size):
    net, probes = synapse_net({k: s for k, (s, _) in SYNAPSES.items()})
    ref, ours = run_both(net, 150, minibatch_size=minibatch_size)
    (stim,) = probes.pop("stim")
    # Each item gets its own WhiteSignal (item 0 is Nengo's), filtered alike.
    assert_allclose(ours[stim][0], ref[stim], atol=1e-7)
    for b in range(1, len(ours[stim])):
        assert not np.allclose(ours[stim][b], ref[stim])
    for name, name_probes in probes.items():
        synapse = SYNAPSES[name][0]
        assert np.abs(ref[name_probes[0]]).max() > 0.1, name
        for probe in name_probes:
            assert_allclose(ours[probe][0], ref[probe], atol=2e-6, err_msg=name)
            for b in range(1, len(ours[probe])):
                # Synapses are updates: their output shows one step later.
                y = synapse.filt(ours[stim][b].astype(np.float64), dt=0.001)
                expected = np.concatenate([np.zeros_like(y[:1]), y[:-1]])
                assert_allclose(ours[probe][b], expected, atol=2e-6, err_msg=name)


def noise_net():
    with nengo.Network(seed=3) as net:
        processes = {
            "white_signal": P.WhiteSignal(0.5, high=10),
            "white_noise": P.WhiteNoise(),
            "filtered_noise": P.FilteredNoise(synapse=nengo.Alpha(0.01)),
            "brown_noise": P.BrownNoise(),
            "seeded_noise": P.WhiteNoise(dist=nengo.dists.Uniform(-1, 1), seed=4),
            "present_input": P.PresentInput([[1, 2], [3, 4], [5, 6]], 0.01),
            "piecewise": P.Piecewise({0: [1, 0], 0.03: [0, 2]}, interpolation="zero"),
        }
        probes = {
            name: nengo.Probe(nengo.Node(process, size_out=2))
            for name, process in processes.items()
        }
        # Ensemble noise is an "inc" process onto the neuron input; Direct neurons
        # pass it straight through to a probed node.
        ens = nengo.Ensemble(2, 2, neuron_type=nengo.Direct(), noise=P.WhiteNoise())
        out = nengo.Node(size_in=2)
        nengo.Connection(nengo.Node([0.5, -0.5]), ens, synapse=None)
        nengo.Connection(ens, out, synapse=None)
        probes["ensemble_noise"] = nengo.Probe(out)
    return net, probes


#: the same for every batch item: no randomness, or (as NengoDL, measured on
#: NengoDL 3.6) a process with its own seed
SAME_PER_ITEM = ("present_input", "piecewise", "seeded_noise")


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_processes_without_input(minibatch_size):
    net, probes = noise_net()
    ref, ours = run_both(net, 60, minibatch_size=minibatch_size)
    for name, probe in probes.items():
        assert np.abs(ref[probe]).max() > 0.1, name
        for b in range(len(ours[probe])):
            if b == 0 or name in SAME_PER_ITEM:
                # Nengo's own values, rounded to float32
                assert_allclose(
                    ours[probe][b], ref[probe], atol=1e-6, rtol=1e-6, err_msg=name
                )
            else:
                assert not np.allclose(ours[probe][b], ref[probe]), name
                assert not np.allclose(ours[probe][b], ours[probe][b - 1]), name


def test_reset_seed():
    """``sim.reset(seed=...)`` gives the noise of ``nengo.Simulator(seed=...)``."""
    net, probes = noise_net()
    probe = probes["filtered_noise"]
    with nengo.Simulator(net, seed=7, progress_bar=False) as ref_sim:
        ref_sim.run_steps(20)
    with Simulator(net, seed=1, progress_bar=False) as sim:
        sim.run_steps(20)
        first = sim.data[probe].copy()
        sim.reset(seed=7)
        sim.run_steps(20)
        assert not np.allclose(first, sim.data[probe])
        assert_allclose(sim.data[probe], ref_sim.data[probe], atol=1e-6, rtol=1e-6)
        sim.reset()
        sim.run_steps(20)  # the new seed is kept
        assert_allclose(sim.data[probe], ref_sim.data[probe], atol=1e-6, rtol=1e-6)


def test_process_data_replaces_output():
    with nengo.Network() as net:
        node = nengo.Node(P.WhiteNoise(), size_out=2)
        probe = nengo.Probe(node)
    data = np.arange(2 * 10 * 2, dtype=float).reshape(2, 10, 2)
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(10, data={node: data})
        assert_allclose(sim.data[probe], data)
        sim.run_steps(10)
        assert np.abs(sim.data[probe][:, 10:]).max() > 1


class NoisyIntegrator(nengo.Process):
    """A user process with input, state and randomness (runs on the host)."""

    def make_state(self, shape_in, shape_out, dt, dtype=None):
        return {"acc": np.zeros(shape_out)}

    def make_step(self, shape_in, shape_out, dt, rng, state):
        acc = state["acc"]

        def step_noisy_integrator(t, x):
            acc[...] += dt * x + 0.01 * rng.normal(size=shape_out)
            return acc * (1 + t)

        return step_noisy_integrator


@pytest.mark.parametrize("minibatch_size", [None, 3])
def test_user_process_with_input(minibatch_size):
    with nengo.Network(seed=5) as net:
        stim = nengo.Node(lambda t: [np.sin(10 * t), 1.0])
        filtered = nengo.Probe(stim, synapse=0.01)
        # A chain of Nodes puts the process after the probe's synapse in the step
        # order, so its seed depends on the synapse drawing one like Nengo's does.
        x = stim
        for _ in range(3):
            y = nengo.Node(lambda t, x: x, size_in=2)
            nengo.Connection(x, y, synapse=None)
            x = y
        node = nengo.Node(
            NoisyIntegrator(default_size_in=2, default_size_out=2), size_in=2
        )
        nengo.Connection(x, node, synapse=None)
        probe = nengo.Probe(node)
    with nengo.Simulator(net, progress_bar=False) as ref_sim:
        ref_sim.run_steps(40)
    with pytest.warns(UserWarning, match="NoisyIntegrator.*runs on the host"):
        sim = Simulator(net, minibatch_size=minibatch_size, progress_bar=False)
    with sim:
        sim.run_steps(25)  # two runs: the state carries over
        sim.run_steps(15)
        ours = sim.data[probe] if minibatch_size else sim.data[probe][None]
        sim.reset()
        sim.run_steps(40)
        again = sim.data[probe] if minibatch_size else sim.data[probe][None]
        smooth = sim.data[filtered] if minibatch_size else sim.data[filtered][None]
    assert_allclose(ours[0], ref_sim.data[probe], atol=1e-6)
    assert_allclose(smooth[0], ref_sim.data[filtered], atol=1e-6)
    assert_allclose(again, ours)
    for b in range(1, len(ours)):
        assert not np.allclose(ours[b], ours[0])


def test_host_process_error_is_raised():
    class Failing(nengo.Process):
        def make_step(self, shape_in, shape_out, dt, rng, state):
            def step_failing(t, x):
                if t > 0.0025:
                    raise RuntimeError("bad step")
                return x

            return step_failing

    with nengo.Network() as net:
        node = nengo.Node(Failing(default_size_in=1), size_in=1)
        nengo.Connection(nengo.Node(1.0), node)
    with pytest.warns(UserWarning, match="runs on the host"):
        sim = Simulator(net, progress_bar=False)
    with sim, pytest.raises(RuntimeError, match="bad step"):
        sim.run_steps(5)
