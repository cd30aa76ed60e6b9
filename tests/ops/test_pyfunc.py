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
    assert times["of_t"] == ref_times["of_t"]
    batch = minibatch_size or 1
    assert times["of_tx"] == [t for t in ref_times["of_tx"] for _ in range(batch)]
    assert all(type(t) is float for v in times.values() for t in v)
