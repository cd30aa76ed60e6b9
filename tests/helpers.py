"""Helpers shared by our tests."""

import numpy as np


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
