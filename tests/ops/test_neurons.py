"""SimNeurons: every Nengo neuron type against nengo.Simulator, and the host fallback.

Synapses are left out of these networks (``synapse=None``) so that only neuron
maths is compared; spiking outputs are filtered here in NumPy instead.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.builder.neurons import SimNeurons
from nengo.exceptions import BuildError, SimulationError
from scipy.signal import lfilter

import nengo_jax.ops.neurons  # noqa: F401
from nengo_jax import Simulator, SoftLIFRate
from nengo_jax.maths.neurons import MATHS, maths_for, params_of
from nengo_jax.ops.neurons import SimNeuronsBuilder
from nengo_jax.optimizer.mergers import mergeable
from nengo_jax.testing import assert_allclose, run_both
from tests.helpers import replay

DT = 0.001
N_STEPS = 300
TAU = 0.01  # filter of the spike comparisons
#: A ``TAU``-filtered train jumps by this at a spike (of amplitude 1): a spike
#: moved by one step makes two filtered trains differ by at most one jump.
ONE_JUMP = (1 - np.exp(-DT / TAU)) / DT * 1.01

RATE_TYPES = {
    "lifrate": nengo.LIFRate(amplitude=0.7),
    "alifrate": nengo.AdaptiveLIFRate(tau_n=0.1, inc_n=0.02),
    "relu": nengo.RectifiedLinear(amplitude=2),
    "sigmoid": nengo.Sigmoid(),
    "tanh": nengo.Tanh(),
}
SPIKING_TYPES = {
    "lif": nengo.LIF(),
    "lif_params": nengo.LIF(tau_rc=0.03, tau_ref=0.0035, min_voltage=-1, amplitude=0.5),
    "alif": nengo.AdaptiveLIF(tau_n=0.1, inc_n=0.02),
    "spiking_relu": nengo.SpikingRectifiedLinear(amplitude=0.3),
    "izhikevich": nengo.Izhikevich(
        tau_recovery=0.03, coupling=0.25, reset_voltage=-50, reset_recovery=2
    ),
    "regular_tanh": nengo.RegularSpiking(nengo.Tanh(), amplitude=0.5),
    "regular_lifrate": nengo.RegularSpiking(nengo.LIFRate()),
}
#: Neuron states probed in addition to the output.
STATES = {"lif_params": ("voltage", "refractory_time"), "alif": ("adaptation",)}


def neuron_net(types, n_neurons=12, inputs=False):
    """One ensemble per type, driven by a sine without synapses."""
    probes = {}
    with nengo.Network(seed=3) as net:
        node = nengo.Node(lambda t: np.sin(10 * t))
        for name, neuron_type in types.items():
            ens = nengo.Ensemble(
                n_neurons,
                1,
                neuron_type=neuron_type,
                # LIF with tau_ref=3.5 ms cannot fire at Nengo's default max rates
                max_rates=nengo.dists.Uniform(100, 200),
                label=name,
            )
            if isinstance(neuron_type, nengo.Sigmoid):
                ens.max_rates = nengo.dists.Uniform(250, 350)
            nengo.Connection(node, ens, synapse=None)
            probes[name] = {"output": nengo.Probe(ens.neurons, synapse=None)}
            if inputs:
                probes[name]["input"] = nengo.Probe(ens.neurons, "input")
            for state in STATES.get(name, ()):
                probes[name][state] = nengo.Probe(ens.neurons, state, synapse=None)
            if isinstance(neuron_type, nengo.neurons.RatesToSpikesNeuronType):
                probes[name]["rate_out"] = nengo.Probe(
                    ens.neurons, "rate_out", synapse=None
                )
    return net, probes


def filtered(x, tau=TAU):
    """``x`` through a discrete lowpass of ``tau`` along the time axis (-2)."""
    a = np.exp(-DT / tau)
    return lfilter([1 - a], [1, -a], x, axis=-2)


def spike_events(n_spikes, ref_n_spikes):
    """How ``n_spikes`` differs from ``ref_n_spikes`` (steps x neurons, counts).

    Returns ``(moved, unmatched)``: spikes one step from a reference spike of
    the same neuron (an opposite difference at the next step), and spikes
    added or lost.
    """
    diff = (n_spikes - ref_n_spikes).astype(int)
    moved = 0
    for t in range(len(diff) - 1):
        pair = np.minimum(np.abs(diff[t]), np.abs(diff[t + 1]))
        pair[np.sign(diff[t]) == np.sign(diff[t + 1])] = 0
        moved += pair.sum()
        diff[t] -= np.sign(diff[t]) * pair
        diff[t + 1] -= np.sign(diff[t + 1]) * pair
    return moved, np.abs(diff).sum()


def assert_spikes_close(spikes, ref_spikes, amplitude, name):
    """Spike trains that float32 rounding may have moved by a step here and there.

    A threshold crossing within rounding of a step boundary moves a spike by one
    step (seen with FMA, on one Izhikevich spike of 203). At most 1% of spikes
    may move or be added or lost, and at most one per neuron may be added or
    lost; the filtered trains may differ by one jump (a spike moved by one step)
    at any time.
    """
    n_spikes = np.round(spikes * DT / amplitude)
    ref_n_spikes = np.round(ref_spikes * DT / amplitude)
    moved, unmatched = spike_events(n_spikes, ref_n_spikes)
    total = np.sum(np.abs(ref_n_spikes))
    assert moved + unmatched <= 0.01 * total, f"{name}: {moved} moved, {unmatched}"
    counts, ref_counts = np.sum(n_spikes, axis=0), np.sum(ref_n_spikes, axis=0)
    np.testing.assert_allclose(counts, ref_counts, atol=1, err_msg=name)
    assert_allclose(
        filtered(spikes), filtered(ref_spikes), atol=ONE_JUMP * amplitude, rtol=0
    )


def test_spike_events():
    ref = np.zeros((6, 2))
    ref[[1, 3], 0] = 1
    ref[4, 1] = 2
    ours = ref.copy()
    ours[[1, 2], 0] = [0, 1]  # moved later
    ours[[3, 4], 1] = [1, 1]  # one of two spikes moved earlier
    ours[5, 1] = 1  # added
    assert spike_events(ours, ref) == (2, 1)
    assert spike_events(ref, ref) == (0, 0)


def assert_items_equal(ours):
    """All batch items of a deterministic network are the same."""
    for b in range(1, ours.shape[0]):
        np.testing.assert_array_equal(ours[b], ours[0])


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_rate_types(minibatch_size):
    net, probes = neuron_net(RATE_TYPES, inputs=True)
    ref, ours = run_both(net, N_STEPS, minibatch_size=minibatch_size)
    for name, neuron_type in RATE_TYPES.items():
        output, J = probes[name]["output"], probes[name]["input"]
        assert_items_equal(ours[output])
        assert np.ptp(ref[output]) > 1, f"{name} never changes"
        # Given the same float32 input, the output is Nengo's to float32 rounding
        # (accumulated over the steps by adapting types: 3e-5 relative seen).
        assert_allclose(
            ours[output][0], replay(neuron_type, ours[J][0], DT), atol=1e-4, rtol=1e-4
        )
        # J = gain * x + bias loses ~1e-6 to cancellation in float32 (not in
        # this operator); the LIF rate, steep near threshold, amplifies that.
        assert_allclose(ours[output][0], ref[output], atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_spiking_types(minibatch_size):
    net, probes = neuron_net(SPIKING_TYPES)
    ref, ours = run_both(net, N_STEPS, minibatch_size=minibatch_size)
    for name, neuron_probes in probes.items():
        output = neuron_probes["output"]
        assert_items_equal(ours[output])
        spikes, ref_spikes = ours[output][0], ref[output]
        amplitude = np.max(np.abs(ref_spikes)) * DT
        assert np.sum(ref_spikes != 0) > 50, f"{name} hardly spikes"
        # float32 may move a threshold crossing by a step: allow one spike per
        # neuron, and one shifted spike in the filtered trains.
        assert_spikes_close(spikes, ref_spikes, amplitude, name)
        for state in ("voltage", "refractory_time", "adaptation"):
            if state in neuron_probes:
                probe = neuron_probes[state]
                assert_allclose(ours[probe][0], ref[probe], atol=1e-4, rtol=1e-4)
        if "rate_out" in neuron_probes:
            probe = neuron_probes["rate_out"]
            assert_allclose(ours[probe][0], ref[probe], atol=1e-2, rtol=1e-3)
    # min_voltage=-1 is reached (negative input) and amplitude scales spikes
    voltage = ours[probes["lif_params"]["voltage"]][0]
    assert np.isclose(voltage.min(), -1) and voltage.min() < 0
    assert np.max(ours[probes["lif_params"]["output"]]) == pytest.approx(0.5 / DT)


STOCHASTIC_TYPES = {
    "stochastic_lifrate": nengo.StochasticSpiking(nengo.LIFRate()),
    "stochastic_tanh": nengo.StochasticSpiking(nengo.Tanh(), amplitude=0.5),
}
POISSON_TYPES = {
    "poisson_lifrate": nengo.PoissonSpiking(nengo.LIFRate()),
    "poisson_tanh": nengo.PoissonSpiking(nengo.Tanh(), amplitude=0.5),
}


def assert_counts_match_rates(spikes, rates, amplitude, name):
    """Spike counts per neuron agree with Poisson-like counts at ``rates``.

    The count of each neuron has variance at most its mean (stochastic rounding
    has less); the chi-square statistic over ``n`` neurons stays below
    ``n + 5 sqrt(2 n)`` by a wide margin if the rates are right.
    """
    counts = np.sum(np.abs(spikes), axis=0) * DT / amplitude
    expected = np.sum(np.abs(rates), axis=0) * DT
    assert np.all(np.sign(spikes) * np.sign(rates) >= 0), f"{name}: wrong signs"
    n = expected.size
    chi2 = np.sum((counts - expected) ** 2 / np.maximum(expected, 1))
    assert chi2 < n + 5 * np.sqrt(2 * n), f"{name}: chi2 {chi2:.1f} for {n} neurons"


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_stochastic_spiking(minibatch_size):
    net, probes = neuron_net(STOCHASTIC_TYPES, n_neurons=20)
    ref, ours = run_both(net, N_STEPS, minibatch_size=minibatch_size)
    for name, neuron_type in STOCHASTIC_TYPES.items():
        output, rate_out = probes[name]["output"], probes[name]["rate_out"]
        # Item 0 draws exactly Nengo's uniforms from the ensemble's RandomState.
        np.testing.assert_array_equal(ours[output][0], ref[output])
        for b in range(1, ours[output].shape[0]):
            assert np.any(ours[output][b] != ours[output][0]), f"{name}: item {b}"
            assert_counts_match_rates(
                ours[output][b], ours[rate_out][b], neuron_type.amplitude, name
            )
        assert_counts_match_rates(
            ref[output], ref[rate_out], neuron_type.amplitude, name
        )


def test_stochastic_spiking_reset():
    """A reset restarts the uniforms (Nengo's own generator just continues)."""
    net, probes = neuron_net(STOCHASTIC_TYPES)
    output = probes["stochastic_lifrate"]["output"]
    with Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(50)
        first = sim.data[output].copy()
        sim.run_steps(50)
        assert np.any(sim.data[output][:, 50:] != first)
        sim.reset()
        sim.run_steps(50)
        np.testing.assert_array_equal(sim.data[output], first)


@pytest.mark.parametrize(
    "minibatch_size, name", [(None, "poisson_lifrate"), (4, "poisson_tanh")]
)
def test_poisson_spiking(minibatch_size, name):
    """Poisson draws are device-side: their rates match, not Nengo's draws."""
    neuron_type = POISSON_TYPES[name]
    net, probes = neuron_net({name: neuron_type}, n_neurons=40)
    ref, ours = run_both(net, N_STEPS, minibatch_size=minibatch_size)
    output, rate_out = probes[name]["output"], probes[name]["rate_out"]
    assert_allclose(ours[rate_out][0], ref[rate_out], atol=1e-2, rtol=1e-3)
    for b in range(ours[output].shape[0]):
        spikes = ours[output][b]
        n_spikes = spikes * DT / neuron_type.amplitude
        np.testing.assert_allclose(n_spikes, np.round(n_spikes), atol=1e-5)
        assert_counts_match_rates(
            spikes, ours[rate_out][b], neuron_type.amplitude, name
        )
        if b > 0:
            assert np.any(spikes != ours[output][0]), f"{name}: item {b}"
    if neuron_type.negative:
        assert np.any(ours[output] < 0)


# -- host fallback ------------------------------------------------------------------


class LeakyCounter(nengo.neurons.NeuronType):
    """A spiking type only Nengo knows: a leaky integrator that fires at 1."""

    state = {"voltage": nengo.dists.Uniform(0, 1)}
    negative = False
    spiking = True

    def gain_bias(self, max_rates, intercepts):
        return nengo.RectifiedLinear().gain_bias(max_rates, intercepts)

    def step(self, dt, J, output, voltage):
        voltage += dt * (J - 5 * voltage)
        spiked = voltage > 1
        output[...] = spiked / dt
        voltage[spiked] = 0


class DoubledLIF(nengo.LIF):
    """A LIF subclass whose ``step`` changes the output: it must not run as LIF."""

    def step(self, dt, J, output, voltage, refractory_time):
        super().step(dt, J, output, voltage, refractory_time)
        output *= 2


class HalvedStochastic(nengo.StochasticSpiking):
    """Overrides ``step`` and draws from the ensemble's RandomState."""

    def step(self, dt, J, output, rng, **base_state):
        super().step(dt, J, output, rng, **base_state)
        output *= 0.5


class LIFWithLabel(nengo.LIF):
    """A subclass that keeps LIF's ``step``: it runs natively."""


FALLBACK_TYPES = {
    "leaky": LeakyCounter(),
    "leaky2": LeakyCounter(),
    "doubled": DoubledLIF(),
    "halved": HalvedStochastic(nengo.LIFRate()),
}


def test_dispatch():
    assert maths_for(LIFWithLabel()) is MATHS[nengo.LIF]
    assert maths_for(nengo.AdaptiveLIF()) is MATHS[nengo.AdaptiveLIF]
    for neuron_type in FALLBACK_TYPES.values():
        assert maths_for(neuron_type) is None
    assert params_of(
        nengo.PoissonSpiking(nengo.Tanh()), MATHS[nengo.PoissonSpiking]
    ) == {
        "amplitude": 1.0,
        "negative": True,
    }


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_host_fallback(minibatch_size):
    net, probes = neuron_net(FALLBACK_TYPES)
    with pytest.warns(UserWarning, match="runs on the host") as record:
        ref, ours = run_both(net, 100, minibatch_size=minibatch_size)
    messages = [str(w.message) for w in record if "runs on the host" in str(w.message)]
    # once per type (LeakyCounter twice in the network), naming the type
    assert len(messages) == 3
    for cls in (LeakyCounter, DoubledLIF, HalvedStochastic):
        assert sum(cls.__name__ in m for m in messages) == 1
    for name, neuron_probes in probes.items():
        output = neuron_probes["output"]
        assert np.sum(ref[output] != 0) > 20, f"{name} hardly spikes"
        # Nengo's own step on float32 state
        amplitude = np.max(np.abs(ref[output])) * DT
        assert_spikes_close(ours[output][0], ref[output], amplitude, name)
        if name != "halved":
            assert_items_equal(ours[output])
    halved = ours[probes["halved"]["output"]]
    np.testing.assert_array_equal(halved[0], ref[probes["halved"]["output"]])
    assert np.max(halved) == pytest.approx(0.5 / DT)
    for b in range(1, halved.shape[0]):
        assert np.any(halved[b] != halved[0])


class Failing(LeakyCounter):
    def step(self, dt, J, output, voltage):
        raise ValueError("broken neurons")


def test_host_fallback_error():
    net, _ = neuron_net({"failing": Failing()})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*runs on the host")
        with Simulator(net, progress_bar=False) as sim:
            with pytest.raises(SimulationError, match="Failing.*broken neurons"):
                sim.run_steps(3)


# -- structure ----------------------------------------------------------------------


def test_direct_never_reaches_simneurons():
    with nengo.Network() as net:
        nengo.Ensemble(3, 1, neuron_type=nengo.Direct())
    model = nengo.builder.Model(dt=DT)
    model.build(net)
    assert not any(isinstance(op, SimNeurons) for op in model.operators)
    sig = nengo.builder.signal.Signal(shape=(3,))
    op = SimNeurons(nengo.Direct(), sig, sig)
    with pytest.raises(BuildError, match="Direct"):
        SimNeuronsBuilder(op, ctx=None)


def test_merged_ops_match_separate():
    """Ensembles of one neuron type run as one merged operator, as if separate.

    The optimizer merges equal neuron types into one SimNeurons operator (their
    signals concatenated, each ensemble with its own gains and biases); its
    outputs and states equal those of the unmerged operators exactly.
    """
    alif = nengo.AdaptiveLIF(tau_n=0.1, inc_n=0.02)
    types = {"a": nengo.LIF(), "b": nengo.LIF(), "alif": alif, "alif2": alif}
    net, probes = neuron_net(types)
    with net:
        for ens in net.ensembles:
            probes[ens.label]["voltage"] = nengo.Probe(
                ens.neurons, "voltage", synapse=None
            )
            if ens.label.startswith("alif"):
                probes[ens.label]["adaptation"] = nengo.Probe(
                    ens.neurons, "adaptation", synapse=None
                )
    data, sizes = {}, {}
    for optimize in (False, True):
        with Simulator(
            net, minibatch_size=2, optimize=optimize, progress_bar=False
        ) as sim:
            sizes[optimize] = sorted(
                op.J.size for op in sim.step_order if isinstance(op, SimNeurons)
            )
            sim.run_steps(100)
            data[optimize] = {
                (name, key): sim.data[p].copy()
                for name, named in probes.items()
                for key, p in named.items()
            }
    assert sizes == {False: [12] * 4, True: [24, 24]}
    for key, separate in data[False].items():
        assert np.sum(separate != 0) > 20, f"{key} hardly changes"
        np.testing.assert_array_equal(data[True][key], separate, err_msg=str(key))


@pytest.mark.parametrize(
    "a, b",
    [
        (nengo.LIF(), nengo.LIFRate()),
        (nengo.LIF(), DoubledLIF()),
        (nengo.LIF(), nengo.LIF(tau_rc=0.03)),
        (
            nengo.StochasticSpiking(nengo.Tanh()),
            nengo.StochasticSpiking(nengo.LIFRate()),
        ),
    ],
)
def test_not_mergeable(a, b):
    assert not mergeable(SimNeurons(a, None, None), SimNeurons(b, None, None))


@pytest.mark.parametrize("neuron_type", [nengo.LIF(), DoubledLIF()])
def test_equal_types_mergeable(neuron_type):
    """Equal neuron types plan together (Nengo's merger concatenates them)."""
    a = SimNeurons(neuron_type, None, None)
    b = SimNeurons(type(neuron_type)(), None, None)
    assert mergeable(a, b)


# -- pure maths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "neuron_type, J_max",
    [
        (nengo.LIF(amplitude=0.5), 5),
        (nengo.AdaptiveLIF(), 5),
        (nengo.SpikingRectifiedLinear(), 200),
        (nengo.RegularSpiking(nengo.LIFRate()), 200),
        (nengo.StochasticSpiking(nengo.LIFRate()), 200),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, nengo.neurons.NeuronType) else None,
)
def test_rate_versions(neuron_type, J_max):
    """Each spiking step's long-run mean output is its ``rate`` version's output."""
    maths = maths_for(neuron_type)
    assert maths.spiking
    p = params_of(neuron_type, maths)
    J = jnp.linspace(0, J_max, 7, dtype=jnp.float32)
    state = {name: jnp.zeros_like(J) for name in maths.state}
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    uniforms = jax.random.uniform(jax.random.PRNGKey(1), (2000,) + J.shape)

    def body(carry, noise):
        step_state, rate_state = carry
        noise = noise[0] if maths.noise == "key" else noise[1]
        out, step_state = maths.step(DT, J, step_state, p, noise)
        rate, rate_state = maths.rate(DT, J, rate_state, p)
        return (step_state, rate_state), (out, rate)

    _, (out, rate) = jax.lax.scan(body, (state, state), (keys, uniforms))
    # Over 2 s: within two spikes (of ``amplitude``), or 4 sigma for Poisson.
    rate = np.asarray(rate.mean(0))
    tol = p["amplitude"] * (2 / 2.0 + 4 * np.sqrt(rate / p["amplitude"] / 2.0))
    assert np.all(np.abs(np.asarray(out.mean(0)) - rate) <= tol)
    assert rate.max() > 20


@pytest.mark.parametrize(
    "neuron_type", [nengo.LIF(), nengo.AdaptiveLIFRate(), SoftLIFRate(sigma=0.05)]
)
def test_recomputed_rates_train_as_stored_ones(neuron_type, monkeypatch):
    """Training recomputes LIF rates in the backward pass instead of storing
    their intermediates (``NeuronMaths.recompute``): the trained parameters
    are those of storing them, through 30 steps."""

    def trained():
        with nengo.Network(seed=0) as net:
            stim = nengo.Node(np.zeros(1))
            ens = nengo.Ensemble(20, 1, neuron_type=neuron_type)
            out = nengo.Node(size_in=1)
            nengo.Connection(stim, ens, synapse=None)
            conn = nengo.Connection(ens, out, synapse=0.01)
            probe = nengo.Probe(out)
        x = np.linspace(-1, 1, 4 * 30).reshape(4, 30, 1)
        with Simulator(net, minibatch_size=4, progress_bar=False) as sim:
            sim.compile(keras.optimizers.SGD(0.1), loss={probe: "mse"})
            sim.fit({stim: x}, {probe: x**2}, epochs=2, verbose=0)
            return sim.data[conn].weights, sim.data[ens].bias

    maths = maths_for(neuron_type)
    assert maths.recompute
    recomputed = trained()
    key = next(k for k, v in MATHS.items() if v is maths)
    monkeypatch.setitem(MATHS, key, dataclasses.replace(maths, recompute=False))
    stored = trained()
    assert not np.allclose(recomputed[0], 0)
    for ours, ref in zip(recomputed, stored, strict=True):
        assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
