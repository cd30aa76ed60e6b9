"""Python functions (Node functions) get Nengo's time and inputs."""

import nengo
import numpy as np
import pytest

import nengo_jax


@pytest.mark.parametrize("minibatch_size", [None, 2])
def test_functions_get_nengo_float64_time(minibatch_size):
    """``t`` is ``step * dt`` in float64, as nengo.Simulator passes it: at step
    200, ``t > 0.2`` is False (float32 time, 0.20000000298, said True)."""
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
        pa, pb = nengo.Probe(a), nengo.Probe(b)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(202)
    # (the steps' calls: Nengo also calls f(t) when it makes and builds the Node)
    ref_times = {k: v[-202:] for k, v in times.items()}
    for v in times.values():
        v.clear()
    with nengo_jax.Simulator(
        net, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        sim.run_steps(202)
        for p in (pa, pb):
            ours = sim.data[p] if minibatch_size is None else sim.data[p][0]
            np.testing.assert_array_equal(ours, ref.data[p])
            assert ours[199] == 0 and ours[200] == 1  # steps 200 and 201
    # (the network has a function of its input, so both run in the loop, once
    # per batch item: see test_closed_loop_through_python_state)
    batch = minibatch_size or 1
    for name in ("of_t", "of_tx"):
        assert times[name] == [t for t in ref_times[name] for _ in range(batch)]
    assert all(type(t) is float for v in times.values() for t in v)


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
