"""Simplifications, the noop planner and the optimizer report.

Each simplification is checked on a small network where it applies: how many
operators it takes out, and that the probes show exactly what
`nengo.Simulator` and a simulator without simplifications show. Seeded random
networks then check that every combination of simplifications and planner
computes the same thing. Rate neurons keep float32 rounding from flipping
spikes between the programs compared.
"""

import logging
import pickle

import nengo
import numpy as np
import pytest
from nengo.builder import Model
from nengo.builder.operator import Copy, DotInc, ElementwiseInc, Reset
from nengo.builder.signal import Signal
from nengo.exceptions import ConfigError, SimulationError

import nengo_jax
from nengo_jax.graph_optimizer import (
    default_simplifications,
    noop_order_signals,
    noop_planner,
    remove_constant_copies,
    remove_identity_muls,
    remove_reset_incs,
    remove_unmodified_resets,
    remove_zero_incs,
)
from nengo_jax.optimizer.simplify import simplify
from nengo_jax.testing import assert_allclose

N_STEPS = 30
RATE = nengo.RectifiedLinear()


def built(net):
    model = Model()
    model.build(net)
    return model


def count(ops, cls, **attrs):
    return sum(
        type(op) is cls and all(getattr(op, k) == v for k, v in attrs.items())
        for op in ops
    )


def run_ours(
    net, simplifications=default_simplifications, planner=None, steps=N_STEPS, data=None
):
    """Probe data and optimizer report of ``net`` under these settings."""
    with net:
        nengo_jax.configure_settings(simplifications=simplifications, planner=planner)
    with nengo_jax.Simulator(net, seed=0, progress_bar=False) as sim:
        sim.run_steps(steps, data=data)
        return {p: sim.data[p] for p in net.all_probes}, sim.optimizer_report


def run_nengo(net, steps=N_STEPS):
    with nengo.Simulator(net, seed=0, progress_bar=False) as sim:
        sim.run_steps(steps)
        return {p: sim.data[p] for p in net.all_probes}


def check_same_output(net, simplifications):
    """``net`` gives Nengo's probe data with ``simplifications`` and without any.

    (To float32 rounding: the two graphs merge differently, so sums may add
    up in another order.)
    """
    ref = run_nengo(net)
    without, _ = run_ours(net, simplifications=[])
    with_, report = run_ours(net, simplifications=simplifications)
    for probe in net.all_probes:
        assert_allclose(with_[probe], ref[probe])
        np.testing.assert_allclose(with_[probe], without[probe], rtol=1e-5, atol=1e-6)
    return report


def unconnected_inputs_net():
    """An Ensemble and a passthrough Node that nothing drives, and a live path."""
    with nengo.Network(seed=1) as net:
        net.config[nengo.Ensemble].neuron_type = RATE
        stim = nengo.Node(lambda t: [np.sin(20 * t), t])
        net.idle_node = nengo.Node(size_in=2, label="idle")
        net.idle_ens = nengo.Ensemble(20, 2, label="idle_ens")
        net.live = nengo.Ensemble(30, 2, label="live")
        nengo.Connection(stim, net.live)
        nengo.Connection(net.idle_node, net.live, synapse=None)  # adds zero
        nengo.Connection(net.idle_ens, net.live, synapse=0.005)
        net.p_live = nengo.Probe(net.live, synapse=0.01)
        net.p_idle = nengo.Probe(net.idle_ens, synapse=0.01)
        net.p_idle_node = nengo.Probe(net.idle_node)
    return net


def test_remove_unmodified_resets_counts_and_output():
    net = unconnected_inputs_net()
    model = built(net)
    ops = remove_unmodified_resets(model.operators, model)
    # the idle Node's and Ensemble's inputs: nothing but their Reset writes them
    assert count(model.operators, Reset) - count(ops, Reset) == 2
    assert len(model.operators) - len(ops) == 2
    report = check_same_output(net, [remove_unmodified_resets])
    assert report.simplifications == {"remove_unmodified_resets": 2}


def test_remove_zero_incs_counts_and_output():
    net = unconnected_inputs_net()
    model = built(net)
    # alone it finds nothing: the idle inputs are still reset every step
    assert len(remove_zero_incs(model.operators, model)) == len(model.operators)
    ops, changed = simplify(
        model.operators, model, [remove_unmodified_resets, remove_zero_incs]
    )
    # the idle Ensemble's encoding DotInc and the idle Node's Copy into `live`
    assert count(model.operators, DotInc) - count(ops, DotInc) == 1
    assert count(model.operators, Copy, inc=True) - count(ops, Copy, inc=True) == 1
    assert changed == {"remove_unmodified_resets": 2, "remove_zero_incs": 2}
    check_same_output(net, [remove_unmodified_resets, remove_zero_incs])


def test_signals_of_removed_operators_stay_readable():
    net = unconnected_inputs_net()
    with net:
        nengo_jax.configure_settings(simplifications=default_simplifications)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3)
        sig = sim.model.sig[net.idle_ens]["in"]
        assert all(sig.base not in op.all_signals for op in sim.step_order)
        np.testing.assert_array_equal(sim.signals[sig], np.zeros(2))
        encoders = sim.data[net.idle_ens].encoders
        assert encoders.shape == (20, 2)


def test_pickled_simulator_continues():
    """A rebuilt (unpickled) Simulator lays out its arrays as the original did."""
    with nengo.Network(seed=5) as net:
        net.config[nengo.Ensemble].neuron_type = RATE
        stim = nengo.Node(np.sin)
        idle = nengo.Ensemble(10, 1)
        ens = nengo.Ensemble(20, 1)
        nengo.Connection(stim, ens)
        nengo.Connection(idle, ens)
        probe = nengo.Probe(ens, synapse=0.01)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(5)
        clone = pickle.loads(pickle.dumps(sim))
        # the same parameter arrays, by name (those the Keras model trains)
        names = sorted(sim.keras_model.param_values())
        assert sorted(clone.keras_model.param_values()) == names
        assert [str(op) for op in clone.step_order] == [
            str(op) for op in sim.step_order
        ]
        sim.run_steps(5)
        clone.run_steps(5)
        (clone_probe,) = clone.model.probes
        np.testing.assert_array_equal(clone.data[clone_probe], sim.data[probe])
        clone.close()


def zero_constant_net():
    """A constant zero Node (run-time data may replace it) and zero weights."""
    with nengo.Network(seed=2) as net:
        net.zero = nengo.Node(np.zeros(2), label="zero")
        net.out = nengo.Node(size_in=2)
        nengo.Connection(net.zero, net.out, synapse=None)
        nengo.Connection(net.zero, net.out, transform=0.0, synapse=None)
        net.p = nengo.Probe(net.out)
    return net


def test_constant_node_outputs_and_weights_are_kept():
    net = zero_constant_net()
    model = built(net)
    ops, changed = simplify(model.operators, model)
    # the zero Node may be fed data, and the zero weight may be trained or loaded
    assert count(ops, ElementwiseInc) == 1
    assert len(ops) == len(model.operators) and sum(changed.values()) == 0
    data = np.random.RandomState(0).uniform(-1, 1, size=(1, N_STEPS, 2))
    for simplifications in ([], None):
        out, _ = run_ours(net, simplifications, data={net.zero: data})
        assert_allclose(out[net.p], data[0])


def test_learning_rule_operators_are_kept():
    """An unconnected PES error is constant zero, but its operators stay."""
    with nengo.Network(seed=6) as net:
        pre = nengo.Ensemble(10, 1)
        post = nengo.Ensemble(10, 1)
        nengo.Connection(
            pre,
            post.neurons,
            transform=np.ones((10, 1)),
            learning_rule_type=nengo.PES(),
        )
    model = built(net)
    ops, _ = simplify(model.operators, model)
    assert any(op.tag == "PES:encode" for op in ops)
    rule_sigs = {
        s.base for s in model.sig[net.all_connections[0].learning_rule].values()
    }
    gone = [op for op in model.operators if op not in ops]
    assert not any(s.base in rule_sigs for op in gone for s in op.all_signals)


def gains_net():
    """A neuron-to-neuron Connection into an Ensemble with unit gains."""
    with nengo.Network(seed=3) as net:
        net.config[nengo.Ensemble].neuron_type = RATE
        stim = nengo.Node(lambda t: [np.cos(15 * t)])
        a = nengo.Ensemble(10, 1)
        b = nengo.Ensemble(10, 1, gain=np.ones(10), bias=np.linspace(0, 1, 10))
        nengo.Connection(stim, a)
        nengo.Connection(a.neurons, b.neurons, transform=np.eye(10) * 0.01)
        nengo.Connection(stim, b, transform=1.0)  # a trainable weight: kept
        net.p = nengo.Probe(b.neurons)
    return net


def test_remove_identity_muls_counts_and_output():
    net = gains_net()
    model = built(net)
    ops = remove_identity_muls(model.operators, model)
    # only the unit gains; the scalar (trainable) weight 1.0 stays a product
    assert count(model.operators, ElementwiseInc) - count(ops, ElementwiseInc) == 1
    assert count(ops, ElementwiseInc) == 1
    assert count(ops, Copy, inc=True) - count(model.operators, Copy, inc=True) == 1
    check_same_output(net, [remove_identity_muls])


def hand_model():
    """A Model of hand-made operators on signals no Nengo object names."""
    model = Model(dt=0.001)
    s = {
        "eye": Signal(np.eye(3), name="eye"),
        "x": Signal(np.array([1.0, -2.0, 3.0]), name="x"),
        "y": Signal(np.zeros(3), name="y"),
        "ones": Signal(np.ones(3), name="ones"),
        "z": Signal(np.zeros(3), name="z"),
        "r": Signal(np.zeros(3), name="r"),
        "r0": Signal(np.zeros(3), name="r0"),
        "c": Signal(np.array([4.0, 5.0, 6.0]), name="c"),
        "cd": Signal(np.zeros(3), name="cd"),
        "cd_same": Signal(np.array([4.0, 5.0, 6.0]), name="cd_same"),
        "u": Signal(np.full(3, 7.0), name="u"),
        "ud": Signal(np.zeros(3), name="ud"),
        "out": Signal(np.zeros(21), name="out"),
    }
    model.add_op(Reset(s["y"]))
    model.add_op(DotInc(s["eye"], s["x"], s["y"]))  # -> Copy(x, y)
    model.add_op(Reset(s["z"]))
    model.add_op(ElementwiseInc(s["ones"], s["y"], s["z"]))  # -> Copy(y, z)
    model.add_op(Reset(s["r"], 2.0))  # r starts at 0: kept
    model.add_op(Reset(s["r0"], 0.0))  # r0 starts at 0: removed
    model.add_op(Copy(s["c"], s["cd"]))  # cd starts elsewhere: kept
    model.add_op(Copy(s["c"], s["cd_same"]))  # cd_same starts at c: removed
    model.add_op(Copy(s["u"], s["ud"]))  # uniform: -> Reset(ud, 7)
    for i, name in enumerate(["y", "z", "r", "r0", "cd", "cd_same", "ud"]):
        model.add_op(Copy(s[name], s["out"], dst_slice=slice(3 * i, 3 * i + 3)))
    return model, s


HAND_OUT = [1, -2, 3, 1, -2, 3, 2, 2, 2, 0, 0, 0, 4, 5, 6, 4, 5, 6, 7, 7, 7]


def test_hand_made_rewrites():
    model, s = hand_model()
    ops = remove_identity_muls(model.operators, model)
    assert count(ops, DotInc) == 0 and count(ops, ElementwiseInc) == 0
    assert count(ops, Copy, inc=True) == 2
    ops = remove_reset_incs(ops, model)
    assert count(ops, Copy, inc=True) == 0
    assert count(ops, Reset) == 2  # the Resets to 2 and of r0 are not zero+inc
    ops = remove_constant_copies(ops, model)
    (ud_reset,) = [op for op in ops if type(op) is Reset and op.dst is s["ud"]]
    assert ud_reset.value == 7.0
    assert not any(type(op) is Copy and op.dst is s["cd_same"] for op in ops)
    assert any(type(op) is Copy and op.dst is s["cd"] for op in ops)
    ops = remove_unmodified_resets(ops, model)
    assert {op.dst.name for op in ops if type(op) is Reset} == {"r", "ud"}
    ops, changed = simplify(model.operators, model)
    assert len(ops) == len(model.operators) - 4
    assert changed == {
        "remove_unmodified_resets": 1,
        "remove_zero_incs": 0,
        "remove_identity_muls": 2,
        "remove_reset_incs": 4,
        "remove_constant_copies": 2,
    }
    # the given operators and signals are never changed
    assert count(model.operators, DotInc) == 1 and count(model.operators, Reset) == 4


@pytest.mark.parametrize("planner", [None, noop_planner])
@pytest.mark.parametrize("simplifications", [None, []])
def test_hand_made_model_output(simplifications, planner):
    model, s = hand_model()
    # ``out`` is set afresh every step, so it lives within a step only; its sum
    # over the steps is state, kept between steps
    total = Signal(np.zeros(21), name="total")
    model.add_op(Copy(s["out"], total, inc=True))
    with nengo.Network() as net:
        nengo_jax.configure_settings(simplifications=simplifications, planner=planner)
    model.toplevel = net
    # (merging replaces the hand-made signals it merges, as in nengo.Simulator)
    names = ["out"] if planner is None else list(s)
    with nengo_jax.Simulator(None, model=model, progress_bar=False) as sim:
        # before the first step every kept signal shows its initial value,
        # including those that only removed operators used
        for name in names:
            if s[name] in sim.signals:
                np.testing.assert_array_equal(
                    sim.signals[s[name]], s[name].initial_value
                )
            else:
                with pytest.raises(SimulationError, match="computed anew every step"):
                    sim.signals[s[name]]
        assert s["out"] not in sim.signals
        sim.run_steps(2)
        np.testing.assert_array_equal(sim.signals[total], 2 * np.array(HAND_OUT))
        if planner is not None:
            # signals that no operator writes are parameters
            for name in ["eye", "x", "ones", "c", "u"]:
                np.testing.assert_array_equal(
                    sim.signals[s[name]], s[name].initial_value
                )


def test_initial_values_never_change():
    """A Reset to another value than the start is kept, named or not."""
    model = Model(dt=0.001)
    named, private = Signal(np.zeros(2), name="named"), Signal(np.zeros(2))
    model.sig[object()]["in"] = named
    model.add_op(Reset(named, 2.0))
    model.add_op(Reset(private, 2.0))
    ops, changed = simplify(model.operators, model)
    assert count(ops, Reset) == 2
    assert sum(changed.values()) == 0


def test_remove_reset_incs_counts_and_output():
    with nengo.Network(seed=4) as net:
        net.config[nengo.Ensemble].neuron_type = RATE
        stim = nengo.Node(lambda t: [np.sin(30 * t), 0.5])
        relay = nengo.Node(size_in=2)  # one input: Reset + Copy(inc) -> Copy
        both = nengo.Node(size_in=2)  # two inputs: left alone
        ens = nengo.Ensemble(20, 2)
        nengo.Connection(stim, relay, synapse=None)
        nengo.Connection(relay, both, synapse=None)
        nengo.Connection(stim, both, synapse=0.005)
        nengo.Connection(both, ens)
        nengo.Connection(ens, ens, synapse=0.05)
        net.p = nengo.Probe(both)
        net.p_ens = nengo.Probe(ens, synapse=0.01)
    model = built(net)
    ops = remove_reset_incs(model.operators, model)
    # the relay's input and the input of the filtered probe on ``ens``
    assert count(model.operators, Reset) - count(ops, Reset) == 2
    assert count(ops, Copy, inc=False) - count(model.operators, Copy, inc=False) == 2
    assert len(model.operators) - len(ops) == 2
    check_same_output(net, [remove_reset_incs])


def test_default_simplifications_and_names():
    assert default_simplifications == [
        remove_unmodified_resets,
        remove_zero_incs,
        remove_identity_muls,
        remove_reset_incs,
        remove_constant_copies,
    ]
    assert noop_order_signals([], n_passes=3) == ([], [])


def test_optimizer_report_and_log(caplog):
    net = unconnected_inputs_net()
    with caplog.at_level(logging.INFO, logger="nengo_jax.simulator.simulator"):
        _, merged = run_ours(net)
    assert "after simplification" in caplog.text
    _, unmerged = run_ours(net, planner=noop_planner)
    _, plain = run_ours(net, simplifications=[], planner=noop_planner)
    assert plain.operators == plain.simplified == plain.merged
    assert unmerged.operators == merged.operators == plain.operators
    assert unmerged.simplified == merged.simplified < plain.simplified
    assert merged.merged < unmerged.merged == unmerged.simplified
    assert merged.merging and not unmerged.merging
    for report in (merged, unmerged, plain):
        assert sum(report.groups.values()) == report.merged
    with pytest.raises(TypeError):
        merged.groups["Copy"] = 0


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"planner": "tree"}, "planner must be a function"),
        ({"sorter": 3}, "sorter must be a function"),
        ({"simplifications": remove_zero_incs}, "must be a list of functions"),
    ],
)
def test_unsupported_settings(setting, match):
    with nengo.Network() as net:
        nengo_jax.configure_settings(**setting)
        nengo.Node([0])
    with pytest.raises(ConfigError, match=match):
        nengo_jax.Simulator(net, progress_bar=False)


def test_noop_order_signals_is_accepted():
    net = unconnected_inputs_net()
    with net:
        nengo_jax.configure_settings(sorter=noop_order_signals)
    ours, _ = run_ours(net)
    ref = run_nengo(net)
    for probe in net.all_probes:
        assert_allclose(ours[probe], ref[probe])
    plan = [[op] for op in built(net).operators]
    signals, same = noop_order_signals(plan)
    assert same == plan and len(signals) == len({s.base for s in signals})


# -- seeded random networks --------------------------------------------------------


def random_network(seed):
    """Ensembles, Nodes, slices, sparse and convolution transforms, PES, recurrence.

    Includes inputs nothing drives and unit gains, so every simplification has
    something to do.
    """
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(lambda t: np.sin([7 * t, 11 * t, 13 * t]), label="stim")
        idle = nengo.Node(size_in=2, label="idle")
        ens = []
        for i in range(5):
            d = int(rng.randint(1, 4))
            n = int(rng.randint(8, 20))
            kwargs = {}
            if i == 2:
                kwargs = {"gain": np.ones(n), "bias": rng.uniform(0, 1, n)}
            neuron_type = [nengo.LIFRate(), nengo.RectifiedLinear()][i % 2]
            ens.append(nengo.Ensemble(n, d, neuron_type=neuron_type, **kwargs))
        relay = nengo.Node(size_in=3, label="relay")
        nengo.Connection(stim, relay, synapse=None)
        k = ens[0].dimensions
        nengo.Connection(relay[:k], ens[0], synapse=0.005)
        # feedforward with slices and dense transforms
        for pre, post in zip(ens[:-1], ens[1:], strict=True):
            k = min(pre.dimensions, post.dimensions)
            transform = rng.uniform(-1, 1, (k, k)) if rng.rand() < 0.5 else None
            nengo.Connection(pre[:k], post[post.dimensions - k :], transform=transform)
        # a neuron-to-neuron sparse connection into the unit-gain ensemble
        pre, post = ens[1], ens[2]
        indices = np.array([[i % post.n_neurons, i % pre.n_neurons] for i in range(6)])
        nengo.Connection(
            pre.neurons,
            post.neurons,
            transform=nengo.Sparse(
                (post.n_neurons, pre.n_neurons), indices=indices, init=0.05
            ),
        )
        nengo.Connection(idle[: min(2, ens[3].dimensions)], ens[3][:2], synapse=None)
        # recurrence
        nengo.Connection(ens[4], ens[4], synapse=0.05, transform=0.5)
        # a convolution of a 4x4 image from a Node
        image = nengo.Node(lambda t: np.linspace(-1, 1, 16) * np.cos(9 * t))
        conv_out = nengo.Node(size_in=8, label="conv")
        nengo.Connection(
            image,
            conv_out,
            transform=nengo.Convolution(
                2, (4, 4, 1), kernel_size=(3, 3), init=nengo.dists.Uniform(-1, 1)
            ),
            synapse=None,
        )
        # PES learning from ens[0] into a new ensemble, error = post - stim[0]
        learner = nengo.Ensemble(15, 1, neuron_type=nengo.RectifiedLinear())
        conn = nengo.Connection(
            ens[0],
            learner,
            function=lambda x: [0],
            learning_rule_type=nengo.PES(learning_rate=1e-3),
        )
        error = nengo.Node(size_in=1)
        nengo.Connection(learner, error)
        nengo.Connection(stim[0], error, transform=-1)
        nengo.Connection(error, conn.learning_rule)
        for e in ens:
            nengo.Probe(e, synapse=0.01)
        nengo.Probe(conv_out)
        nengo.Probe(learner, synapse=0.01)
        nengo.Probe(ens[2].neurons)
        nengo.Probe(conn, "weights")
    return net


@pytest.mark.parametrize("seed", [0, 1])
def test_random_networks_all_combinations(seed):
    net = random_network(seed)
    ref, plain = run_ours(net, simplifications=[], planner=noop_planner)
    assert plain.operators == plain.merged
    nengo_ref = run_nengo(net)
    for probe in net.all_probes:
        assert_allclose(ref[probe], nengo_ref[probe], atol=1e-4)
    simplified = set()
    for simplifications in (default_simplifications, []):
        for planner in (None, noop_planner):
            out, report = run_ours(net, simplifications, planner)
            simplified.add(report.simplified)
            for probe in net.all_probes:
                assert_allclose(out[probe], ref[probe])
    assert min(simplified) < plain.operators


def test_no_simplifications_by_default():
    """None (the default) simplifies nothing (seeds must follow Nengo's order)."""
    net = unconnected_inputs_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        report = sim.optimizer_report
    assert report.simplified == report.operators
