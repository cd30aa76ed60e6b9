"""IsolateState: Keras calls that leave the simulation state as it was, with the
values measured on NengoDL 3.6."""

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulationError, SimulatorClosed

import nengo_jax
from nengo_jax.callbacks import IsolateState

MB = 2
#: 6 items (3 minibatches) of 5 steps, the same input in every item
SAME = np.full((6, 5, 1), 0.5)
RAMP = np.linspace(0, 1, 30).reshape(6, 5, 1)

# NengoDL 3.6, `make` below: the probe's last value in each minibatch of SAME
# (items 0, 2, 4), each minibatch continuing from the last one (stateful=True)
CONTINUED = [0.0180078, 0.0473486, 0.0728705]
# ... each starting from the state after 10 steps (IsolateState made then)
ISOLATED = [0.0180078, 0.0180078, 0.0180078]
# ... the first from the state after 15 steps (IsolateState made after 10)
FIRST_FROM_15 = [-0.0004150, 0.0180078, 0.0180078]
# the probe over 3 steps run from the state after 10 steps, and after 15
NEXT_FROM_10 = [0.0010683, 0.0229415, 0.0086045]
NEXT_FROM_15 = [-0.0083369, 0.0137225, -0.0004320]


def make(steps=10):
    with nengo.Network(seed=1) as net:
        net.inp = nengo.Node(np.sin, label="in")
        ens = nengo.Ensemble(10, 1, label="ens")
        nengo.Connection(net.inp, ens, synapse=0.01)
        net.p = nengo.Probe(ens, synapse=0.05, label="p")
        net.ens = ens
    sim = nengo_jax.Simulator(net, minibatch_size=MB)
    sim.run_steps(steps)
    return sim, net


def next_values(sim, net):
    """The probe over the next 3 steps, leaving the state as it is."""
    sim.run_steps(3, stateful=False)
    return sim.data[net.p][0, -3:, 0]


def last_values(outputs, net):
    return outputs[net.p][::MB, -1, 0]


@pytest.mark.parametrize("isolate", [False, True])
def test_minibatches_start_from_saved_state(isolate):
    sim, net = make()
    with sim:
        callbacks = [IsolateState(sim)] if isolate else []
        out = sim.predict(SAME, stateful=True, callbacks=callbacks, verbose=0)
        expected = ISOLATED if isolate else CONTINUED
        np.testing.assert_allclose(last_values(out, net), expected, atol=1e-5)
        assert sim.n_steps == (10 if isolate else 10 + 3 * 5)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_call_leaves_state(method):
    sim, net = make()
    with sim:
        data = sim.data[net.p].copy()
        sim.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        args = (RAMP,) if method == "predict" else (RAMP, np.zeros_like(RAMP))
        getattr(sim, method)(
            *args, stateful=True, callbacks=[IsolateState(sim)], verbose=0
        )
        assert (sim.n_steps, sim.time) == (10, pytest.approx(0.01))
        np.testing.assert_array_equal(sim.data[net.p], data)
        np.testing.assert_allclose(next_values(sim, net), NEXT_FROM_10, atol=1e-5)


def test_without_isolate_state_changes():
    """(what IsolateState prevents)"""
    sim, net = make()
    with sim:
        sim.predict(RAMP, stateful=True, verbose=0)
        assert sim.n_steps == 25
        assert not np.allclose(next_values(sim, net), NEXT_FROM_10, atol=1e-3)


def test_state_saved_when_created():
    sim, net = make()
    with sim:
        isolate = IsolateState(sim)
        sim.run_steps(5)
        out = sim.predict(SAME, stateful=True, callbacks=[isolate], verbose=0)
        np.testing.assert_allclose(last_values(out, net), FIRST_FROM_15, atol=1e-5)
        assert sim.n_steps == 10
        np.testing.assert_allclose(next_values(sim, net), NEXT_FROM_10, atol=1e-5)


def test_no_effect_without_stateful():
    """As in NengoDL: each minibatch starts from the current state anyway."""
    sim, net = make()
    with sim:
        isolate = IsolateState(sim)
        sim.run_steps(5)
        out = sim.predict(SAME, stateful=False, callbacks=[isolate], verbose=0)
        first = [FIRST_FROM_15[0]] * 3
        np.testing.assert_allclose(last_values(out, net), first, atol=1e-5)
        assert sim.n_steps == 15
        np.testing.assert_allclose(next_values(sim, net), NEXT_FROM_15, atol=1e-5)


def test_fit_with_validation_trains_parameters():
    sim, net = make()
    with sim:
        isolate = IsolateState(sim)
        (bias,) = sim.data.get_params((net.ens.neurons, "bias"))
        sim.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        y = np.ones_like(RAMP)
        sim.fit(
            RAMP, y, epochs=2, stateful=True, callbacks=[isolate],
            validation_data=(RAMP, y), verbose=0,
        )  # fmt: skip
        assert sim.n_steps == 10
        (trained,) = sim.data.get_params((net.ens.neurons, "bias"))
        assert not np.allclose(trained, bias)


def test_reset():
    sim, net = make()
    with sim:
        isolate = IsolateState(sim)
        sim.run_steps(5)
        isolate.reset()
        assert (sim.n_steps, sim.time) == (10, pytest.approx(0.01))
        assert sim.data[net.p].shape == (MB, 15, 1)  # probe data kept
        np.testing.assert_allclose(next_values(sim, net), NEXT_FROM_10, atol=1e-5)
        sim.reset()
        assert sim.n_steps == 0
        isolate.reset()
        assert sim.n_steps == 10
        np.testing.assert_allclose(next_values(sim, net), NEXT_FROM_10, atol=1e-5)


def test_reset_during_run_refused():
    isolate = []
    with nengo.Network() as net:
        # (Nengo calls the function once at build, before there is an isolate)
        node = nengo.Node(
            lambda t, x: isolate[0].reset() if isolate else None, size_in=1
        )
        nengo.Connection(nengo.Node(0.5), node)
    with nengo_jax.Simulator(net) as sim:
        isolate.append(IsolateState(sim))
        with pytest.raises(SimulationError, match="busy with run"):
            sim.run_steps(1)
        assert sim.n_steps == 0


def test_bad_simulator():
    with pytest.raises(ValueError, match=r"IsolateState.sim: must be a nengo_jax"):
        IsolateState(nengo.Network())
    sim, _ = make()
    isolate = IsolateState(sim)
    sim.close()
    with pytest.raises(SimulatorClosed, match="closed Simulator"):
        isolate.reset()
    with pytest.raises(SimulatorClosed, match="IsolateState needs an open"):
        IsolateState(sim)
