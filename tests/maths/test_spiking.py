"""The fast elementary functions of the spiking maths stay as accurate as XLA's."""

import jax
import jax.numpy as jnp
import nengo
import numpy as np
import pytest

from nengo_jax.maths.spiking import expm1_nonpositive, lif


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 0.05, 1.0, 30.0])
def test_expm1_nonpositive_is_as_accurate_as_xla(scale):
    x = -np.random.default_rng(0).uniform(0, scale, size=20000).astype(np.float32)
    exact = np.expm1(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    ours = np.asarray(jax.jit(expm1_nonpositive)(x), np.float64)
    xla = np.asarray(jax.jit(jnp.expm1)(x), np.float64)
    ours_error = np.max(np.abs(ours - exact) / ulp)
    # XLA's own is within about 5 ulps (on x86 and with SSE4.2 alike)
    assert ours_error <= max(8.0, 1.5 * np.max(np.abs(xla - exact) / ulp))


def test_expm1_nonpositive_limits():
    out = np.asarray(expm1_nonpositive(jnp.array([0.0, -np.inf, -100.0])))
    assert out.tolist() == [0.0, -1.0, -1.0]


def test_lif_matches_nengo_float64_spike_times():
    """One step of neurons that spike: the voltage and refractory time (which
    holds the spike time) equal Nengo's float64 step to float32 accuracy."""
    rng = np.random.default_rng(1)
    n, dt = 1000, 0.001
    J = rng.uniform(1.5, 30, n)
    voltage = rng.uniform(0, 1, n)
    refractory = rng.choice([0.0, 0.0005, 0.0012], n)
    neuron = nengo.LIF(tau_rc=0.02, tau_ref=0.002)
    out64, v64, r64 = np.zeros(n), voltage.copy(), refractory.copy()
    neuron.step(dt, J, out64, v64, r64)
    params = {"tau_rc": 0.02, "tau_ref": 0.002, "min_voltage": 0.0, "amplitude": 1.0}
    state = {
        "voltage": jnp.asarray(voltage, jnp.float32),
        "refractory_time": jnp.asarray(refractory, jnp.float32),
    }
    out, new = lif(dt, jnp.asarray(J, jnp.float32), state, params)
    assert 0 < np.count_nonzero(out64) < n  # some spike, some do not
    np.testing.assert_array_equal(np.asarray(out) > 0, out64 > 0)
    np.testing.assert_allclose(new["voltage"], v64, atol=2e-6)
    # the spike time within the step: within 5e-9 s of Nengo's (a float32 ulp
    # of 0.003 is 2.3e-10 s; the log's rounding adds at most 1.2e-9 s)
    np.testing.assert_allclose(new["refractory_time"], r64, atol=5e-9)
