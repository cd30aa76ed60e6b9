"""SoftLIFRate, LeakyReLU and SpikingLeakyReLU: against nengo.Simulator, their
limits, and their gradients."""

import jax
import jax.numpy as jnp
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

from nengo_jax.maths.neurons import MATHS, maths_for, params_of
from nengo_jax.neurons import LeakyReLU, SoftLIFRate, SpikingLeakyReLU
from nengo_jax.testing import assert_allclose, run_both
from tests.helpers import replay

DT = 0.001
N_STEPS = 300

#: Each new type next to the Nengo type it extends: a wrong dispatch or a merge
#: of the two would change one of them.
TYPES = {
    "softlif": SoftLIFRate(),
    "softlif_params": SoftLIFRate(
        sigma=0.05, tau_rc=0.03, tau_ref=0.003, amplitude=0.5
    ),
    "lifrate": nengo.LIFRate(),
    "leaky": LeakyReLU(negative_slope=0.1, amplitude=2),
    "relu": nengo.RectifiedLinear(amplitude=2),
    "spiking_leaky": SpikingLeakyReLU(negative_slope=0.3, amplitude=0.5),
    "spiking_leaky0": SpikingLeakyReLU(negative_slope=0),
    "spiking_relu": nengo.SpikingRectifiedLinear(),
}


def types_net(types, n_neurons=12):
    """One ensemble per type, driven by a sine without synapses."""
    probes = {}
    with nengo.Network(seed=3) as net:
        node = nengo.Node(lambda t: np.sin(10 * t))
        for name, neuron_type in types.items():
            ens = nengo.Ensemble(
                n_neurons,
                1,
                neuron_type=neuron_type,
                max_rates=nengo.dists.Uniform(100, 200),
                label=name,
            )
            nengo.Connection(node, ens, synapse=None)
            probes[name] = {
                "output": nengo.Probe(ens.neurons, synapse=None),
                "input": nengo.Probe(ens.neurons, "input", synapse=None),
            }
            if "voltage" in neuron_type.state:
                probes[name]["voltage"] = nengo.Probe(
                    ens.neurons, "voltage", synapse=None
                )
    return net, probes


@pytest.mark.parametrize("minibatch_size", [None, 3])
def test_against_nengo(minibatch_size):
    net, probes = types_net(TYPES)
    ref, ours = run_both(net, N_STEPS, minibatch_size=minibatch_size)
    for name, neuron_type in TYPES.items():
        output, J = probes[name]["output"], probes[name]["input"]
        for b in range(1, ours[output].shape[0]):
            np.testing.assert_array_equal(ours[output][b], ours[output][0])
        assert np.ptp(ref[output]) > 1, f"{name} never changes"
        if neuron_type.spiking:
            # Float32 voltages may move a spike by a step: compare counts per
            # neuron and the voltages away from such a step.
            n_spikes = np.round(ours[output][0] * DT / neuron_type.amplitude)
            ref_n_spikes = np.round(ref[output] * DT / neuron_type.amplitude)
            assert np.sum(np.abs(ref_n_spikes)) > 100, f"{name} hardly spikes"
            different = np.sum(n_spikes != ref_n_spikes)
            assert different <= 0.01 * np.sum(np.abs(ref_n_spikes)), name
            np.testing.assert_allclose(
                n_spikes.sum(0), ref_n_spikes.sum(0), atol=1, err_msg=name
            )
            voltage = probes[name]["voltage"]
            same = np.cumsum(n_spikes != ref_n_spikes, axis=0) == 0
            assert_allclose(
                ours[voltage][0][same], ref[voltage][same], atol=1e-4, rtol=0
            )
        else:
            # Given the same float32 input, the output is Nengo's to float32
            # rounding; J itself differs by float32 rounding of gain * x + bias.
            expected = replay(neuron_type, ours[J][0], DT)
            assert_allclose(ours[output][0], expected, atol=1e-4, rtol=1e-5)
            assert_allclose(ours[output][0], ref[output], atol=1e-2, rtol=1e-3)
    # The leaky types do go negative, in both signs of spike.
    for name in ("leaky", "spiking_leaky"):
        assert np.min(ref[probes[name]["output"]]) < 0, name
        assert np.max(ref[probes[name]["output"]]) > 0, name
    assert np.min(ours[probes["spiking_leaky0"]["output"]]) == 0


def test_dispatch():
    """Each type finds its own maths before its Nengo base's."""
    for cls in (SoftLIFRate, LeakyReLU, SpikingLeakyReLU):
        assert maths_for(cls()) is MATHS[cls]
    assert maths_for(SoftLIFRate()) is not maths_for(nengo.LIFRate())
    assert maths_for(LeakyReLU()) is not maths_for(nengo.RectifiedLinear())
    assert MATHS[SpikingLeakyReLU].spiking
    assert MATHS[SpikingLeakyReLU].rate is MATHS[LeakyReLU].step
    assert not MATHS[SoftLIFRate].spiking and not MATHS[LeakyReLU].spiking

    class LabelledSoftLIF(SoftLIFRate):
        """Keeps SoftLIFRate's step: runs natively as SoftLIFRate."""

    assert maths_for(LabelledSoftLIF()) is MATHS[SoftLIFRate]
    assert params_of(SoftLIFRate(sigma=0.5), MATHS[SoftLIFRate]) == {
        "sigma": 0.5,
        "tau_rc": 0.02,
        "tau_ref": 0.002,
        "amplitude": 1.0,
    }
    assert params_of(SpikingLeakyReLU(negative_slope=0.2), MATHS[SpikingLeakyReLU]) == {
        "negative_slope": 0.2,
        "amplitude": 1.0,
    }


@pytest.mark.parametrize("sigma", [0, -1])
def test_invalid_sigma(sigma):
    with pytest.raises(ValidationError, match="sigma"):
        SoftLIFRate(sigma=sigma)


def numpy_rates(neuron_type, J):
    output = np.zeros_like(J)
    neuron_type.step(DT, J, output)
    return output


def jax_rates(neuron_type, J):
    maths = maths_for(neuron_type)
    J = jnp.asarray(J, jnp.float32)
    return np.asarray(maths.rate(DT, J, {}, params_of(neuron_type, maths))[0])


#: Inputs away from LIF's threshold at 1, from far below to far above it.
J_OFF_THRESHOLD = np.concatenate(
    [[-1e6, -100], np.linspace(-2, 0.99, 31), np.linspace(1.01, 10, 31), [1e3, 1e6]]
)


def test_soft_lif_rate_to_lif_rate():
    """As sigma goes to 0, SoftLIFRate becomes LIFRate (away from threshold)."""
    lif = numpy_rates(nengo.LIFRate(tau_rc=0.03), J_OFF_THRESHOLD)
    errors = []
    for sigma in (0.1, 1e-2, 1e-6):
        soft = SoftLIFRate(sigma=sigma, tau_rc=0.03)
        errors.append(np.max(np.abs(numpy_rates(soft, J_OFF_THRESHOLD) - lif)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2
    soft = SoftLIFRate(sigma=1e-6, tau_rc=0.03)
    assert_allclose(numpy_rates(soft, J_OFF_THRESHOLD), lif, atol=1e-2, rtol=1e-6)
    assert_allclose(jax_rates(soft, J_OFF_THRESHOLD), lif, atol=1e-2, rtol=1e-5)


def test_soft_lif_rate_curve():
    """Smooth and positive through the threshold, finite for any input, the same
    in NumPy and JAX; gain and bias are LIFRate's."""
    soft = SoftLIFRate(sigma=0.5, amplitude=0.8)
    J = np.concatenate([J_OFF_THRESHOLD, [1.0], np.linspace(0.5, 1.5, 101)])
    ours, ref = jax_rates(soft, J), numpy_rates(soft, J)
    assert np.all(np.isfinite(ref)) and np.all(ref > 0)
    assert_allclose(ours, ref, atol=1e-6, rtol=1e-5)
    assert np.all(ref <= 0.8 / soft.tau_ref)
    assert np.all(np.diff(numpy_rates(soft, np.linspace(-5, 5, 1001))) > 0)
    # The curve's first derivative is continuous through J = 1.
    h = 1e-4
    slopes = np.diff(numpy_rates(soft, 1 + h * np.arange(-2, 3))) / h
    np.testing.assert_allclose(slopes, slopes[0], rtol=1e-3)

    max_rates, intercepts = np.array([100.0, 200.0]), np.array([-0.5, 0.3])
    gain, bias = soft.gain_bias(max_rates, intercepts)
    lif_gain, lif_bias = nengo.LIFRate().gain_bias(max_rates, intercepts)
    np.testing.assert_array_equal(gain, lif_gain)
    np.testing.assert_array_equal(bias, lif_bias)
    # ``rates`` uses the smoothed curve: neurons fire at their intercepts.
    at_intercepts = soft.rates(intercepts, gain, bias)
    assert np.all(np.diag(at_intercepts) > 0)


def test_leaky_relu_rates():
    J = np.linspace(-10, 10, 41)
    leaky = LeakyReLU(negative_slope=0.1, amplitude=2)
    expected = np.where(J > 0, 2 * J, 0.2 * J)
    np.testing.assert_allclose(numpy_rates(leaky, J), expected, rtol=1e-15)
    assert_allclose(jax_rates(leaky, J), expected)
    # With no negative slope it is RectifiedLinear.
    relu = nengo.RectifiedLinear(amplitude=2)
    leaky0 = LeakyReLU(negative_slope=0, amplitude=2)
    np.testing.assert_array_equal(numpy_rates(leaky0, J), numpy_rates(relu, J))
    np.testing.assert_array_equal(jax_rates(leaky0, J), jax_rates(relu, J))
    x, gain, bias = np.linspace(-1, 1, 5), np.array([3.0]), np.array([0.5])
    np.testing.assert_array_equal(
        leaky0.rates(x, gain, bias), relu.rates(x, gain, bias)
    )
    spiking = SpikingLeakyReLU(negative_slope=0.1, amplitude=2)
    np.testing.assert_array_equal(
        spiking.rates(x, gain, bias), leaky.rates(x, gain, bias)
    )


def test_leaky_relu_default_slope():
    """NengoDL's default negative slope is 0.3 (as is keras.layers.LeakyReLU's)."""
    assert LeakyReLU().negative_slope == 0.3
    assert SpikingLeakyReLU().negative_slope == 0.3
    J = np.array([-10.0, -1.0, 0.0, 2.0])
    expected = np.array([-3.0, -0.3, 0.0, 2.0])
    np.testing.assert_allclose(numpy_rates(LeakyReLU(), J), expected, rtol=1e-15)
    assert_allclose(jax_rates(LeakyReLU(), J), expected)
    x, gain, bias = np.array([-1.0, 1.0]), np.array([2.0]), np.array([0.0])
    np.testing.assert_allclose(SpikingLeakyReLU().rates(x, gain, bias), [[-0.6], [2.0]])
    # The spikes of a constant negative input add up to 0.3 of its integral.
    maths = maths_for(SpikingLeakyReLU())
    p = params_of(SpikingLeakyReLU(), maths)

    def body(state, J_t):
        output, state = maths.step(DT, J_t, state, p)
        return state, output

    J_neg = jnp.full((1000, 1), -100.0, jnp.float32)
    spikes = jax.lax.scan(body, {"voltage": jnp.zeros(1)}, J_neg)[1]
    assert float(jnp.sum(spikes) * DT) == pytest.approx(-30.0, abs=1.0)


def test_spiking_leaky_relu_zero_slope_is_spiking_relu():
    """Same voltages, same spikes: floor and truncation agree on [0, 1)."""
    rng = np.random.RandomState(0)
    J = jnp.asarray(rng.uniform(-300, 500, size=(200, 10)), jnp.float32)
    voltage = jnp.asarray(rng.uniform(0, 1, size=10), jnp.float32)
    results = []
    for neuron_type in (nengo.SpikingRectifiedLinear(0.5), SpikingLeakyReLU(0, 0.5)):
        maths = maths_for(neuron_type)
        p = params_of(neuron_type, maths)

        def body(state, J_t, maths=maths, p=p):
            output, state = maths.step(DT, J_t, state, p)
            return state, (output, state["voltage"])

        results.append(jax.lax.scan(body, {"voltage": voltage}, J)[1])
    for ours, ref in zip(*results, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    assert np.sum(np.asarray(results[0][0]) != 0) > 100


def test_spiking_leaky_relu_mean_rate():
    """Over 2 s of constant input, either sign, the spikes average out to
    LeakyReLU's rate to within two spikes (the voltage stays in (-1, 1))."""
    neuron_type = SpikingLeakyReLU(negative_slope=0.3, amplitude=0.5)
    J = np.array([-300, -100, -20, -3.3, -0.5, 0, 0.5, 3.3, 20, 100, 300])
    n_steps = 2000
    with nengo.Network(seed=1) as net:
        node = nengo.Node(J)
        ens = nengo.Ensemble(
            len(J),
            1,
            neuron_type=neuron_type,
            gain=nengo.dists.Choice([1]),
            bias=nengo.dists.Choice([0]),
        )
        nengo.Connection(node, ens.neurons, synapse=None)
        probe = nengo.Probe(ens.neurons, synapse=None)
    ref, ours = run_both(net, n_steps, minibatch_size=2)
    expected = numpy_rates(LeakyReLU(negative_slope=0.3, amplitude=0.5), J)
    tol = 2 * neuron_type.amplitude / (n_steps * DT)
    for spikes in (ref[probe], ours[probe][0], ours[probe][1]):
        assert np.all(np.abs(spikes.mean(axis=0) - expected) < tol)
        # Each spike has the sign of its input.
        assert np.all(spikes * np.sign(J) >= 0)
        assert np.all(spikes[:, J == 0] == 0)
    assert np.min(ref[probe]) == pytest.approx(-0.5 / DT)
    assert np.max(ref[probe]) == pytest.approx(0.5 / DT)


#: Inputs where gradients are at risk: far out, at 0 and at the LIF threshold.
J_GRAD = jnp.array(
    [-1e6, -1e3, -10, -1, -1e-6, 0, 0.5, 0.999, 1, 1.001, 2, 10, 1e3, 1e6],
    jnp.float32,
)


@pytest.mark.parametrize("sigma", [1.0, 0.05, 1e-6])
def test_soft_lif_rate_gradient(sigma):
    neuron_type = SoftLIFRate(sigma=sigma)
    maths = maths_for(neuron_type)
    p = params_of(neuron_type, maths)

    def total(J):
        return jnp.sum(maths.rate(DT, J, {}, p)[0])

    grad = np.asarray(jax.grad(total)(J_GRAD))
    assert np.all(np.isfinite(grad)), grad
    assert np.all(grad >= 0), grad
    assert grad[J_GRAD == 1] > 0
    # Against a central difference of the float64 NumPy step, near threshold.
    J = np.array([-2, 0, 0.9, 1, 1.1, 3])
    h = 1e-6 * sigma
    numeric = (numpy_rates(neuron_type, J + h) - numpy_rates(neuron_type, J - h)) / (
        2 * h
    )
    grad = np.asarray(jax.grad(total)(jnp.asarray(J, jnp.float32)))
    np.testing.assert_allclose(grad, numeric, rtol=2e-3)


def test_leaky_relu_gradient():
    for neuron_type in (
        LeakyReLU(negative_slope=0.1, amplitude=2),
        SpikingLeakyReLU(negative_slope=0.1, amplitude=2),
    ):
        maths = maths_for(neuron_type)
        p = params_of(neuron_type, maths)
        grad = jax.grad(
            lambda J, maths=maths, p=p: jnp.sum(maths.rate(DT, J, {}, p)[0])
        )
        expected = np.where(np.asarray(J_GRAD) > 0, 2, 0.2).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(grad(J_GRAD)), expected)


def test_gradients_of_rate_versions_in_scan():
    """Gradients through a simulated run of each type's rate maths are finite."""

    def loss(J, neuron_type):
        maths = maths_for(neuron_type)
        p = params_of(neuron_type, maths)
        state = {name: jnp.zeros_like(J) for name in maths.state}

        def body(state, t):
            output, state = maths.rate(DT, J * t, state, p)
            return state, output

        return jnp.sum(jax.lax.scan(body, state, jnp.linspace(-2, 2, 20))[1])

    for neuron_type in (SoftLIFRate(sigma=0.02), SpikingLeakyReLU(0.1)):
        grad = jax.grad(loss)(J_GRAD, neuron_type)
        assert np.all(np.isfinite(np.asarray(grad))), type(neuron_type).__name__
