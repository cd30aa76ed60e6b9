"""Test utilities: the Nengo-comparison oracle and the factory for Nengo's suite."""

from __future__ import annotations

import nengo
import numpy as np

from nengo_jax.simulator import Simulator

#: Default comparison tolerances per simulation dtype.
TOLERANCES = {
    "float32": {"atol": 1e-5, "rtol": 1e-4},
    "float64": {"atol": 1e-10, "rtol": 1e-8},
}


def assert_allclose(actual, desired, dtype="float32", **overrides):
    """Assert ``actual`` matches ``desired`` within the tolerances of ``dtype``.

    Keyword arguments (``atol``, ``rtol``) override the defaults for ``dtype``.
    """
    tols = dict(TOLERANCES[str(np.dtype(dtype))], **overrides)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), **tols)


def run_both(net, n_steps, minibatch_size=None, seed=0, dt=0.001, data=None):
    """Run ``net`` on `nengo.Simulator` and `nengo_jax.Simulator`.

    Returns
    -------
    (ref, ours) : (dict, dict)
        Probe -> data. ``ref`` has Nengo's shapes; ``ours`` always has a leading
        batch axis, ``(minibatch_size or 1, n, ...)``.
    """
    with nengo.Simulator(net, dt=dt, seed=seed, progress_bar=False) as sim:
        sim.run_steps(n_steps)
        ref = {p: sim.data[p] for p in net.all_probes}
    with Simulator(
        net, dt=dt, seed=seed, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        sim.run_steps(n_steps, data=data)
        ours = {p: sim.data[p] for p in net.all_probes}
    if minibatch_size is None:
        ours = {p: v[None] for p, v in ours.items()}
    return ref, ours


def make_test_sim(request):
    """The Simulator for Nengo's test suite (``nengo_simloader``)."""
    return Simulator
