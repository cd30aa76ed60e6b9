"""check_gradients and the finite differences it compares with."""

import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulationError, ValidationError
from numpy.testing import assert_allclose

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


@pytest.fixture
def doubled_lif_rate(monkeypatch):
    """LIFRate's gradient, doubled: a wrong gradient the checks must catch."""
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


def two_inputs_net(dtype=None):
    """Two input Nodes into a ReLU Ensemble (the net measured on NengoDL)."""
    with nengo.Network(seed=0) as net:
        if dtype is not None:
            nengo_jax.configure_settings(dtype=dtype)
        net.a = nengo.Node([0.5, -0.3], label="a")
        net.c = nengo.Node([0.1], label="c")
        ens = nengo.Ensemble(20, 2, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.a, ens)
        nengo.Connection(net.c, ens[0])
        net.p = nengo.Probe(ens, label="p")
        net.p_neurons = nengo.Probe(ens.neurons)
    return net


def test_check_gradients_as_nengo_dl():
    net = two_inputs_net("float64")
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(3)
        result = sim.check_gradients(outputs=[net.p])
        # as NengoDL: the simulation is reset, its probe data kept
        assert sim.n_steps == 0 and sim.time == 0
        assert sim.data[net.p].shape == (2, 3, 2)
        assert list(result) == [net.p]
        analytic, numeric = result[net.p]["analytic"], result[net.p]["numeric"]
        # zero inputs over 2 steps, flattened (batch, step, dimension): NengoDL
        # 3.6 gives these shapes and, in float64, these values
        assert [a.shape for a in analytic] == [(8, 8), (8, 4)]
        assert [n.shape for n in numeric] == [(8, 8), (8, 4)]
        measured = [[0.17353344, -0.01946536], [-0.02718399, 0.1207594]]
        for item in range(2):
            rows = slice(4 * item + 2, 4 * item + 4)
            assert_allclose(
                analytic[0][rows, 4 * item : 4 * item + 2], measured, atol=1e-8
            )
            assert_allclose(
                analytic[1][rows, 2 * item], np.array(measured)[:, 0], atol=1e-8
            )
        # the output at step 1 depends on the input at step 0 only (the
        # connections' synapse), and never on another batch item's
        assert np.count_nonzero(analytic[0]) == 8
        assert np.count_nonzero(analytic[1]) == 4
        for a, n in zip(analytic, numeric, strict=True):
            assert_allclose(n, a, atol=1e-9)

        # inputs as a list in Node order (NengoDL), or a dict for some Nodes
        # (the others run their own outputs: here c, 0.1)
        x = np.random.RandomState(0).uniform(-1, 1, size=(2, 5, 2))
        by_list = sim.check_gradients([x, np.full((2, 5, 1), 0.1)], outputs=net.p)
        by_dict = sim.check_gradients({"a": x}, outputs="p")
        assert [a.shape for a in by_list[net.p]["analytic"]] == [(20, 20), (20, 10)]
        assert [a.shape for a in by_dict[net.p]["analytic"]] == [(20, 20)]
        assert_allclose(by_dict[net.p]["analytic"][0], by_list[net.p]["analytic"][0])


def test_check_gradients_float32_and_errors(doubled_lif_rate):
    # NengoDL 3.6 fails this float32 model (zero inputs, ReLU): numeric
    # -0.00036478 against analytic -0.00035397, a difference its tolerance
    # does not allow, made by float32 rounding of its finite differences
    with nengo_jax.Simulator(two_inputs_net(), minibatch_size=2) as sim:
        result = sim.check_gradients()
        assert list(result) == [sim.model.probes[0], sim.model.probes[1]]
        for probe, found in result.items():
            for a, n in zip(found["analytic"], found["numeric"], strict=True):
                assert np.abs(a).max() > 0.001, probe
                assert_allclose(n, a, atol=1e-5, rtol=1e-3)

        with pytest.raises(ValidationError, match="one minibatch of inputs"):
            sim.check_gradients([np.zeros((4, 2, 2))])
        with pytest.raises(
            ValidationError, match="Data for <Node 'a'> must have shape"
        ):
            sim.check_gradients([np.zeros((2, 2, 3))])
        with pytest.raises(ValidationError, match="outputs"):
            sim.check_gradients(outputs=["nope"])
        # a failed call leaves the simulator usable
        sim.run_steps(2)
        assert sim.n_steps == 2

    # a rate whose gradient is twice the truth is caught
    net = ramp_net(nengo.LIFRate(), synapse=0.01)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        x = np.random.RandomState(1).uniform(-1, 1, size=(MB, 3, 1))
        with pytest.raises(SimulationError, match="Gradient check failed for") as e:
            sim.check_gradients([x], outputs=[net.p])
        print("doubled gradient:", e.value)


def test_check_parameter_gradients(doubled_lif_rate):
    net = ramp_net(nengo.LIFRate(), synapse=0.01)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="Gradient mismatch in parameter"):
            sim.check_parameter_gradients(n_steps=5)


def test_check_parameter_gradients_correct_model():
    net = ramp_net(nengo.LIFRate(), synapse=0.01)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        # every parameter has a verified element (no NaN, no warning), none fails
        worst = sim.check_parameter_gradients(n_steps=5)
        assert set(worst) == {v.name for v in sim.keras_model.trainable_variables}
        print("check_parameter_gradients margins:", worst)
        assert max(worst.values()) <= 0.5
