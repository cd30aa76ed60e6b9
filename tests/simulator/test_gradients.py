"""check_gradients and the finite differences it compares with."""

import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulationError

import nengo_jax
from tests.helpers import MB, ramp_net


def test_finite_difference_estimates_its_own_error():
    from nengo_jax.simulator.gradients import finite_difference

    eps = float(np.finfo(np.float32).eps)

    def tolerance(estimate):
        return 1e-4 + 1e-2 * abs(estimate)

    def terms(f):
        return lambda offset: np.array([f(offset)], np.float64)

    # smooth: the error is small and bounds the estimate's distance to the truth
    estimate, error = finite_difference(
        terms(lambda d: np.exp(2 + d)), 0.01, eps, tolerance
    )
    assert abs(estimate - np.exp(2)) <= error <= 0.01 * tolerance(estimate)
    # a kink (slopes 1 and 3) within reach of every step tried: the error says so
    for at in (0.0004, -0.0002, 1e-9):
        estimate, error = finite_difference(
            terms(lambda d, at=at: d + 2 * max(d - at, 0)), 0.01, eps, tolerance
        )
        assert error > tolerance(estimate), at
    # a kink beyond the smallest step's reach: that step gets the slope right
    estimate, error = finite_difference(
        terms(lambda d: d + 2 * max(d - 0.003, 0)), 0.01, eps, tolerance
    )
    assert abs(estimate - 1) <= error <= tolerance(estimate)
    # float32 rounding of 1000 terms of about 100 swamps a slope of 1 at the
    # first step (error 0.06 > tolerance 0.01); a larger step sees through it
    rng = np.random.RandomState(0)
    base = rng.uniform(50, 150, size=1000)

    def rounded(offset):
        return (base + offset / base.size).astype(np.float32).astype(np.float64)

    estimate, error = finite_difference(rounded, 0.01, eps, tolerance)
    assert abs(estimate - 1) <= error <= tolerance(estimate)


def test_check_gradients(monkeypatch):
    net = ramp_net(nengo.LIFRate(), synapse=0.01)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        # every parameter has a verified element (no NaN, no warning), none fails
        worst = sim.check_gradients(n_steps=5)
        assert set(worst) == {v.name for v in sim.keras_model.trainable_variables}
        print("check_gradients margins (mismatch / (tolerance + error)):", worst)
        assert max(worst.values()) <= 0.5

    # a rate whose gradient is twice the truth is caught
    import jax

    import nengo_jax.maths.neurons as neurons

    @jax.custom_jvp
    def wrong(J, tau_rc, tau_ref, amplitude):
        p = {"tau_rc": tau_rc, "tau_ref": tau_ref, "amplitude": amplitude}
        return neurons.rate.lif_rate_output(J, p)

    @wrong.defjvp
    def wrong_jvp(primals, tangents):
        value, dvalue = jax.jvp(wrong.fun, primals, tangents)
        return value, 2 * dvalue

    def bad_rate(dt, J, state, p, noise=None):
        return wrong(J, p["tau_rc"], p["tau_ref"], p["amplitude"]), state

    maths = neurons.MATHS[nengo.LIFRate]
    monkeypatch.setitem(
        neurons.MATHS,
        nengo.LIFRate,
        type(maths)(bad_rate, bad_rate, params=maths.params),
    )
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with pytest.raises(
            SimulationError, match="Gradient mismatch in parameter"
        ) as error:
            sim.check_gradients(n_steps=5)
        print("doubled gradient:", error.value)
