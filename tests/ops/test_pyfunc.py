"""Python functions (Node functions) get Nengo's time and inputs."""

import nengo
import numpy as np
import pytest

import nengo_jax


@pytest.mark.parametrize("minibatch_size", [None, 2])
def test_functions_get_nengo_float64_time(minibatch_size):
    """Functions called in the loop (here, since the network has a function of
    its input) get the simulated time, float32 by default, as their inputs:
    at step 200 ``t > 0.2`` is True, where Nengo's float64 time says False
    (test_functions_of_time_alone_get_float64_time has Nengo's time; see
    test_input_computed_from_time_equals_time for why)."""
    times = {"of_t": [], "of_tx": []}

    def of_t(t):
        times["of_t"].append(t)
        return float(t > 0.2)

    def of_tx(t, x):
        times["of_tx"].append(t)
        return float(t > 0.2)

    with nengo.Network() as net:
        a = nengo.Node(of_t)
        b = nengo.Node(of_tx, size_in=1)
        nengo.Connection(a, b, synapse=None)
        pa = nengo.Probe(a)
        nengo.Probe(b)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(202)
    # (the steps' calls: Nengo also calls f(t) when it makes and builds the Node)
    ref_times = {k: v[-202:] for k, v in times.items()}
    assert ref_times["of_t"] == [i * 0.001 for i in range(1, 203)]  # (float64)
    for v in times.values():
        v.clear()
    with nengo_jax.Simulator(
        net, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        sim.run_steps(202)
        ours = sim.data[pa] if minibatch_size is None else sim.data[pa][0]
        # one step early: float32(200 * 0.001) > 0.2 (see above)
        np.testing.assert_array_equal(ours[:199], ref.data[pa][:199])
        assert ours[198] == 0 and ours[199] == 1
    # (the network has a function of its input, so both run in the loop, once
    # per batch item: see test_closed_loop_through_python_state)
    batch = minibatch_size or 1
    # (the time signal: the step times dt, in float32)
    simulated = [float(np.float32(i) * np.float32(0.001)) for i in range(1, 203)]
    for name in ("of_t", "of_tx"):
        assert times[name] == [t for t in simulated for _ in range(batch)]
    assert all(type(t) is float for v in times.values() for t in v)


def test_input_computed_from_time_equals_time():
    """Nengo's test_args, in float32: a function of its input gets the time as
    simulated, so an input that is ``t`` equals ``t``."""
    seen = []

    def check(t, x):
        seen.append(x[0] == t)

    with nengo.Network() as net:
        u = nengo.Node(lambda t: t)
        v = nengo.Node(check, size_in=1, size_out=0)
        nengo.Connection(u, v, synapse=None)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(300)
    assert len(seen) == 300 and all(seen)


class Environment:
    """A sensor reading what a motor wrote: Python state shared by Nodes."""

    def __init__(self):
        self.position = 0.0

    def sense(self, t):
        return self.position

    def act(self, t, x):
        self.position += 0.1 * float(x[0]) + 0.05


def closed_loop_net(env):
    with nengo.Network(seed=0) as net:
        sensor = nengo.Node(env.sense)
        motor = nengo.Node(env.act, size_in=1)
        nengo.Connection(sensor, motor, synapse=None, transform=-1)
        net.p = nengo.Probe(sensor)
    return net


def test_closed_loop_through_python_state():
    """With a Node function of its input, Node functions of time run in the
    loop, in step order, as in nengo.Simulator (they were computed before the
    loop, so the sensor read 0 throughout)."""
    env = Environment()
    net = closed_loop_net(env)
    env.position = 0.0  # (Nengo called the functions to check the Nodes)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(20)
    assert np.ptp(ref.data[net.p]) > 0.3
    for stepwise in (False, True):
        env.position = 0.0
        with nengo_jax.Simulator(net, progress_bar=False) as sim:
            if stepwise:
                for _ in range(20):
                    sim.step()
            else:
                sim.run_steps(20)
            np.testing.assert_allclose(sim.data[net.p], ref.data[net.p], atol=1e-6)


def test_functions_of_time_alone_get_float64_time():
    """Without a function of its input, a function of time is computed before
    the loop (a host stream), with Nengo's float64 time too."""
    times = []

    def of_t(t):
        times.append(t)
        return float(t > 0.2)

    with nengo.Network() as net:
        p = nengo.Probe(nengo.Node(of_t))
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(202)
    ref_times = times[-202:]
    times.clear()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(202)
        np.testing.assert_array_equal(sim.data[p], ref.data[p])
    assert times == ref_times
