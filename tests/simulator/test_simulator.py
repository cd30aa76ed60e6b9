"""The Simulator's API: lifecycle, run-time data, batching, errors."""

import gc
import importlib.metadata

import nengo
import numpy as np
import pytest
from nengo.exceptions import (
    ReadonlyError,
    SimulationError,
    SimulatorClosed,
    ValidationError,
)

import nengo_jax
from nengo_jax.simulator.runtime import gc_paused
from nengo_jax.testing import assert_allclose, run_both


def node_net():
    """A network of Nodes only: a function of time, a constant, a function of x."""
    with nengo.Network(seed=1) as net:
        net.stim = nengo.Node(lambda t: [np.sin(10 * t), t], label="stim")
        net.const = nengo.Node([0.5, -1.0], label="const")
        net.sum = nengo.Node(size_in=2)
        net.double = nengo.Node(lambda t, x: 2 * x + t, size_in=2)
        nengo.Connection(net.stim, net.sum, synapse=None)
        nengo.Connection(net.const, net.sum, transform=[[1, 2], [3, 4]], synapse=None)
        nengo.Connection(net.sum, net.double, synapse=None)
        net.p_double = nengo.Probe(net.double)
        net.p_sum = nengo.Probe(net.sum)
        net.p_stim = nengo.Probe(net.stim, sample_every=0.003)
    return net


@pytest.mark.parametrize("minibatch_size", [None, 4])
def test_matches_nengo(minibatch_size):
    net = node_net()
    ref, ours = run_both(net, 20, minibatch_size=minibatch_size)
    for probe in net.all_probes:
        for item in ours[probe]:
            assert_allclose(item, ref[probe])


def test_data_shapes_and_trange():
    net = node_net()
    with nengo_jax.Simulator(net, minibatch_size=3, progress_bar=False) as sim:
        sim.run(0.01)
        assert sim.data[net.p_double].shape == (3, 10, 2)
        assert sim.data[net.p_stim].shape == (3, 3, 2)
        assert np.allclose(sim.trange(), np.arange(1, 11) * 0.001)
        assert np.allclose(sim.trange(sample_every=0.003), [0.003, 0.006, 0.009])
        assert sim.n_steps == 10 and np.isclose(sim.time, 0.01)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(5)
        assert sim.data[net.p_double].shape == (5, 2)


def test_run_time_data_replaces_outputs():
    net = node_net()
    stim = np.random.RandomState(0).uniform(-1, 1, size=(2, 7, 2))
    const = np.ones((2, 7, 2))
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(7, data={net.stim: stim, "const": const})
        expected = stim + const @ np.array([[1, 2], [3, 4]]).T
        assert_allclose(sim.data[net.p_sum], expected)
        # without data, the Nodes' own outputs come back
        sim.run_steps(3)
        assert_allclose(sim.data[net.p_sum][1, 7:], sim.data[net.p_sum][0, 7:])
        assert not np.allclose(sim.data[net.p_sum][:, 7:], expected[:, :3])


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("stim", np.zeros((5, 2)), r"must have shape \(minibatch_size=2.*x\[None\]"),
        ("stim", np.zeros((2, 4, 2)), r"got \(2, 4, 2\).*number of steps"),
        ("stim", np.zeros((3, 5, 2)), r"got \(3, 5, 2\)"),
        ("stim", np.zeros((2, 5, 1)), r"size_out=2"),
        ("nothing", np.zeros((2, 5, 2)), "label"),
        ("double", np.zeros((2, 5, 2)), "has inputs"),
        (nengo.Node(0, add_to_container=False), np.zeros((2, 5, 1)), "not part of"),
    ],
)
def test_bad_data_is_refused_and_nothing_changes(key, value, match):
    net = node_net()
    key = getattr(net, key) if key == "double" else key
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(3)
        before = sim.data[net.p_sum].copy()
        with pytest.raises(ValidationError, match=match):
            sim.run_steps(5, data={key: value})
        assert sim.n_steps == 3
        assert np.array_equal(sim.data[net.p_sum], before)
        sim.run_steps(2)  # still usable
        assert sim.data[net.p_sum].shape == (2, 5, 2)


def test_failing_node_function_keeps_state():
    calls = []

    def fail_late(t, x):
        calls.append(t)
        if t > 0.0045:
            raise RuntimeError("boom")
        return x

    with nengo.Network() as net:
        stim = nengo.Node(lambda t: t)
        node = nengo.Node(fail_late, size_in=1, label="controller")
        nengo.Connection(stim, node, synapse=None)
        probe = nengo.Probe(node)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3)
        with pytest.raises(SimulationError, match="boom") as info:
            sim.run_steps(3)
        assert_user_traceback(info.value, "controller", "fail_late")
        assert sim.n_steps == 3
        assert_allclose(sim.data[probe].ravel(), [0.001, 0.002, 0.003])

    def sensor(t):  # a function of time, computed before the loop
        if t > 0.0025:
            raise RuntimeError("unplugged")
        return t

    with nengo.Network() as net:
        nengo.Node(sensor, label="sensor")
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="unplugged") as info:
            sim.run_steps(3)
        assert_user_traceback(info.value, "sensor", "sensor")


def assert_user_traceback(error, label, function):
    """The error names the Node, and its traceback shows the user's function
    where the failure happened and none of JAX's or nengo_jax's machinery."""
    import traceback

    assert f"<Node '{label}'>: function '{function}' raised" in str(error)
    cause = error.__cause__
    assert isinstance(cause, RuntimeError)
    assert traceback.extract_tb(cause.__traceback__)[0].name == function
    frames = traceback.extract_tb(error.__traceback__)
    assert not [f for f in frames if "jax/" in f.filename.replace("nengo_jax", "")]
    assert len(frames) < 8


def _late(bad):
    """A Node function of time that returns ``bad`` from its fourth step on."""
    return lambda t: bad if t > 0.0035 else [t, t]


def _late_in_loop(bad):
    """A Node function of its input that returns ``bad`` for a negative input."""
    return lambda t, x: bad if x[0] < 0 else [t, t]


@pytest.mark.parametrize(
    "make, bad, match",
    [
        (_late, np.nan, "non-finite"),
        (_late, None, "non-finite"),
        (_late, [1.0, np.inf], "non-finite"),
        (_late, "ab", "invalid type"),
        (_late, [1.0, 2.0, 3.0], "invalid type"),
        (_late_in_loop, [np.nan, 0.0], "non-finite"),
        (_late_in_loop, "ab", "invalid type"),
    ],
)
def test_bad_node_output_raises_simulation_error(make, bad, match):
    with nengo.Network() as net:
        stim = nengo.Node(lambda t: 1.0 if t < 0.0035 else -1.0)
        if make is _late:
            node = nengo.Node(make(bad))
        else:
            node = nengo.Node(make(bad), size_in=1, size_out=2)
            nengo.Connection(stim, node, synapse=None)
        probe = nengo.Probe(node)
    with nengo_jax.Simulator(net, progress_bar=False, minibatch_size=2) as sim:
        sim.run_steps(3)
        before = sim.data[probe].copy()
        with pytest.raises(SimulationError, match=match):
            sim.run_steps(2)
        assert sim.n_steps == 3
        assert np.array_equal(sim.data[probe], before)
        assert_allclose(before[1, :, 0], [0.001, 0.002, 0.003], rtol=1e-6)


def test_second_run_compiles_nothing():
    net = node_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(10)
        compiled = sim.compile_count
        sim.run_steps(10)
        sim.reset()
        sim.run_steps(10)
        assert sim.compile_count == compiled
        sim.run_steps(7)
        assert sim.compile_count == compiled + 1


def test_reset_and_soft_reset():
    net = node_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(5)
        first = sim.data[net.p_double].copy()
        sim.soft_reset()
        assert sim.n_steps == 0
        assert sim.data[net.p_double].shape == (5, 2)  # probe data kept
        sim.reset()
        assert sim.data[net.p_double].shape == (0, 2)
        sim.run_steps(5)
        assert_allclose(sim.data[net.p_double], first)


def test_closed_simulator():
    net = node_net()
    sim = nengo_jax.Simulator(net, progress_bar=False)
    sim.run_steps(2)
    sim.close()
    assert sim.data[net.p_sum].shape == (2, 2)  # data outlives the simulator
    for call in (lambda: sim.run(0.01), sim.step, sim.reset, sim.soft_reset):
        with pytest.raises(SimulatorClosed):
            call()
    with pytest.raises(SimulatorClosed):
        with sim:
            pass


def test_readonly_and_seed():
    net = node_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ReadonlyError):
            sim.dt = 0.1
        assert sim.seed == net.seed + 1
    with nengo_jax.Simulator(net, seed=5, dt=0.002, progress_bar=False) as sim:
        assert sim.seed == 5 and sim.dt == 0.002


@pytest.mark.parametrize(
    "kwargs, attr",
    [({"minibatch_size": 0}, "minibatch_size"), ({"unroll_simulation": 0}, "unroll")],
)
def test_bad_arguments(kwargs, attr):
    with pytest.raises(ValidationError, match=attr):
        nengo_jax.Simulator(node_net(), progress_bar=False, **kwargs)


def test_step_and_unroll():
    net = node_net()
    with nengo_jax.Simulator(net, unroll_simulation=4, progress_bar=False) as sim:
        for _ in range(6):
            sim.step()
        sim.run_steps(6)
        ref, _ = run_both(net, 12)
        assert_allclose(sim.data[net.p_double], ref[net.p_double])


def test_progress_bar_and_zero_time():
    net = node_net()
    with nengo_jax.Simulator(
        net, progress_bar=nengo.utils.progress.NoProgressBar()
    ) as sim:
        with pytest.warns(UserWarning, match="0 timesteps"):
            sim.run(0.0001)
        with pytest.raises(ValidationError, match="positive"):
            sim.run(-1)


def test_cpu_device():
    with nengo_jax.Simulator(node_net(), device="cpu", progress_bar=False) as sim:
        sim.run_steps(2)
    with pytest.raises(ValidationError, match="No JAX device"):
        nengo_jax.Simulator(node_net(), device="nosuchdevice", progress_bar=False)


def test_entry_point():
    points = importlib.metadata.entry_points(group="nengo.backends")
    assert any(p.load() is nengo_jax.Simulator for p in points)


def test_many_probes_keep_their_own_data():
    # probe outputs are packed into one array; order must survive "probe10" < "probe2"
    with nengo.Network() as net:
        probes = [nengo.Probe(nengo.Node([float(i), -i])) for i in range(12)]
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(3)
    for i, probe in enumerate(probes):
        assert np.array_equal(sim.data[probe], np.tile([i, -i], (2, 3, 1)))


def test_gc_paused_during_build_and_run_only():
    seen = []

    def record(t, x):
        seen.append(gc.isenabled())
        return x

    with nengo.Network() as net:
        nengo.Node(record, size_in=1)  # (Nengo calls it once here)
    assert seen == [True]
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        assert gc.isenabled()
        sim.run_steps(3)  # inside the program: each step calls back
    assert seen == [True, False, False, False]
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("fails inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()


def ramp_node_net():
    with nengo.Network(seed=0) as net:
        a = nengo.Node(lambda t: t)
        b = nengo.Node(size_in=1)
        nengo.Connection(a, b, synapse=0.01)
        net.p = nengo.Probe(b)
    return net


def test_stateless_runs():
    """run/run_steps/step(stateful=False) record the probes but leave state,
    time and n_steps as they were (values as NengoDL 3.6 gives them)."""
    net = ramp_node_net()
    first = [0.0, 9.5e-05, 2.76e-04]  # the first three steps, rounded
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3, stateful=False)
        assert sim.n_steps == 0 and sim.time == 0
        assert_allclose(sim.data[net.p].ravel(), first, atol=1e-6)
        sim.run_steps(3)
        assert sim.n_steps == 3
        assert_allclose(sim.data[net.p].ravel(), first * 2, atol=1e-6)
        sim.run(0.002, stateful=False)
        sim.step(stateful=False)
        assert sim.n_steps == 3 and sim.data[net.p].shape == (9, 1)
        data = sim.data[net.p].ravel()
        assert_allclose(data[6:8], [5.36e-04, 8.65e-04], atol=1e-6)
        assert data[8] == data[6]  # (the step repeats step 4)
    with net:
        nengo_jax.configure_settings(stateful=False)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3)
        with pytest.warns(UserWarning, match="stateful=True is ignored"):
            sim.run_steps(2, stateful=True)
        assert sim.n_steps == 0
        assert_allclose(sim.data[net.p].ravel(), first + first[:2], atol=1e-6)


def test_nengo_dl_spellings():
    """NengoDL's names: sim.unroll, sim.data.get_params, dtype objects in
    configure_settings. (sim.data keeps Nengo's float64 arrays where NengoDL
    gives float32 copies: Nengo's test_gain_bias requires them.)"""
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(dtype=np.float64)
        ens = nengo.Ensemble(10, 1)
        conn = nengo.Connection(ens, nengo.Node(size_in=1))
    with nengo_jax.Simulator(net, unroll_simulation=2, progress_bar=False) as sim:
        assert sim.unroll == 2 and sim.settings.dtype == "float64"
    with net:
        nengo_jax.configure_settings(dtype=np.dtype("float32"))
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        built = sim.data[ens]
        assert built is sim.model.params[ens]
        encoders, weights, bias = sim.data.get_params(
            (ens, "encoders"), (conn, "weights"), (ens.neurons, "bias")
        )
        assert encoders.shape == (10, 1) and weights.shape == (1, 10)
        # (the signals, in the simulation dtype)
        np.testing.assert_array_equal(bias, np.float32(built.bias))
        np.testing.assert_array_equal(encoders, np.float32(built.scaled_encoders))
        with pytest.raises(ValidationError, match="has no signal 'gain'"):
            sim.data.get_params((ens, "gain"))


def test_prebuilt_model_is_not_modified():
    from nengo.builder import Model

    with nengo.Network(seed=0) as net:
        inp = nengo.Node([0.5])
        ens = nengo.Ensemble(10, 1)
        nengo.Connection(inp, ens)
        probe = nengo.Probe(ens)
    model = Model(dt=0.001)
    model.build(net)

    def contents(model):
        return (
            [(op, op.sets, op.incs, op.reads, op.updates) for op in model.operators],
            {obj: dict(sigs) for obj, sigs in model.sig.items()},
        )

    before = contents(model)
    with nengo_jax.Simulator(net, progress_bar=False) as reference:
        reference.run_steps(5)
    for _ in range(2):  # the model stays as Nengo built it, and can be reused
        with nengo_jax.Simulator(None, model=model, progress_bar=False) as sim:
            sim.run_steps(5)
            # (here NengoDL 3.6 also keeps the 12 operators Nengo built; merging
            # would leave 10)
            assert contents(model) == before
            assert_allclose(sim.data[probe], reference.data[probe])
    # a network built into an empty model given: built there, not optimized
    empty = Model(dt=0.001)
    with nengo_jax.Simulator(net, model=empty, progress_bar=False) as sim:
        assert len(empty.operators) == len(before[0])
        assert sim.model.operators != empty.operators
