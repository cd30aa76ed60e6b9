"""Transient state: signals set afresh every step live within a step only."""

import jax.numpy as jnp
import nengo
import numpy as np
import pytest
from nengo.builder import Model
from nengo.builder.operator import Copy, DotInc, Reset
from nengo.builder.signal import Signal
from nengo.exceptions import SimulationError

import nengo_jax
from nengo_jax.program.layout import Layout
from nengo_jax.program.signals import SignalEnv

B = 2


def _signals():
    return {
        "fresh": Signal(np.zeros(4), name="fresh"),
        "half": Signal(np.zeros(4), name="half"),
        "kept": Signal(np.zeros(4), name="kept"),
        "rows": Signal(np.zeros((3, 2)), name="rows"),
        "x": Signal(np.ones(4), name="x"),
    }


def _layout(s):
    ops = [
        Reset(s["fresh"]),
        DotInc(Signal(np.eye(4)), s["x"], s["fresh"]),
        Copy(s["x"][:2], s["half"][:2]),  # half[2:] is only incremented
        Copy(s["x"][2:], s["half"][2:], inc=True),
        Copy(s["x"], s["kept"], inc=True),
        Copy(s["x"][:3], s["rows"][:, 0], dst_slice=[0, 1, 2]),
        Copy(s["x"][:3], s["rows"][:, 1], dst_slice=[2, 1, 0]),
    ]
    fresh = [
        (s["fresh"], None),
        (s["half"][:2], None),
        (s["rows"][:, 0], [0, 1, 2]),
        (s["rows"][:, 1], [2, 1, 0]),
    ]
    return Layout(Model(), ops, [], fresh=fresh)


def test_layout_keeps_within_a_step_what_is_all_set_afresh():
    s = _signals()
    layout = _layout(s)
    transient = {layout.key(s[name]) for name in ["fresh", "rows"]}
    assert set(layout.transient_keys) == transient
    # partly set afresh, or only incremented: carried between steps
    assert {layout.key(s["half"]), layout.key(s["kept"])} <= set(layout.state_keys)
    assert not transient & set(layout.initial_state(B))
    assert layout.is_transient(s["rows"][1]) and not layout.is_transient(s["half"])
    # without claims nothing is transient
    plain = Layout(Model(), [Reset(s["fresh"])], [])
    assert plain.transient_keys == [] and plain.state_keys == [plain.key(s["fresh"])]


def _env(layout):
    values = layout.initial_params() | layout.initial_state(B)
    values = {k: jnp.asarray(v) for k, v in values.items()}
    for key in layout.transient_keys:
        values[key] = jnp.zeros((B,) + layout.shape(key))
    return SignalEnv(layout, values, {}, B, 0.001, None, unset=layout.transient_keys)


def test_reading_transient_state_before_it_is_set_fails_loudly():
    s = _signals()
    layout = _layout(s)
    env = _env(layout)
    with pytest.raises(RuntimeError, match="read before it is written"):
        env.read(s["fresh"])
    with pytest.raises(RuntimeError, match="read before it is written"):
        env.inc(s["fresh"], 1.0)  # an increment reads too
    env.write(s["fresh"][:2], 1.0)
    np.testing.assert_array_equal(env.read(s["fresh"][:2]), np.ones((B, 2)))
    with pytest.raises(RuntimeError, match="read before it is written"):
        env.read(s["fresh"][1:3])
    env.write(s["fresh"][2:], 2.0)
    np.testing.assert_array_equal(env.read(s["fresh"])[0], [1, 1, 2, 2])
    # elements written by index count as written
    env.write(s["rows"][:, 0], 3.0)
    with pytest.raises(RuntimeError, match="read before it is written"):
        env.read(s["rows"])
    env.write(s["rows"][:, 1], 4.0)
    np.testing.assert_array_equal(env.read(s["rows"])[1], [[3, 4]] * 3)


def _ensemble_net(neuron_type):
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(np.sin)
        ens = nengo.Ensemble(10, 1, neuron_type=neuron_type)
        nengo.Connection(stim, ens)
        probe = nengo.Probe(ens.neurons, "voltage")
    return net, ens, probe


def test_neuron_input_and_output_are_not_carried():
    net, ens, probe = _ensemble_net(nengo.LIF())
    with nengo_jax.Simulator(net, minibatch_size=B, progress_bar=False) as sim:
        sim.run_steps(5)
        sig = sim.model.sig[ens.neurons]
        layout = sim._layout
        for name in ["in", "out"]:
            assert layout.is_transient(sig[name])
            assert sig[name] not in sim.signals
            with pytest.raises(SimulationError, match="computed anew every step"):
                sim.signals[sig[name]]
        # the neurons' own state is carried, and readable
        assert not layout.is_transient(sig["voltage"])
        np.testing.assert_array_equal(
            sim.signals[sig["voltage"]], sim.data[probe][:, -1]
        )
        assert all(not layout.is_transient(base) for base in sim.signals)
        assert len(sim.signals) == len(list(sim.signals))
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(5)
    np.testing.assert_allclose(sim.data[probe][0], ref.data[probe], atol=1e-5)


class HostLIF(nengo.LIF):
    """A LIF whose NumPy step runs on the host (no JAX maths of its own)."""

    def step(self, dt, J, output, voltage, refractory_time):
        super().step(dt, J, output, voltage, refractory_time)


def test_output_a_numpy_step_is_given_is_carried():
    # Nengo hands a neuron type's step its output array from the step before
    net, ens, _ = _ensemble_net(HostLIF())
    with (
        pytest.warns(UserWarning, match="runs on the host"),
        nengo_jax.Simulator(net, progress_bar=False) as sim,
    ):
        sig = sim.model.sig[ens.neurons]
        assert not sim._layout.is_transient(sig["out"])
        assert sim._layout.is_transient(sig["in"])
