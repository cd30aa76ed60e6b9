"""Planners, sorters and merging: every combination computes the same."""

import functools

import nengo
import numpy as np
import pytest
from nengo.builder import Model
from nengo.builder.operator import BsrDotInc, Copy, DotInc
from nengo.exceptions import BuildError
from nengo.utils.simulator import operator_dependency_graph

import nengo_jax
from nengo_jax.graph_optimizer import (
    default_simplifications,
    greedy_planner,
    noop_order_signals,
    noop_planner,
    order_signals,
    transitive_planner,
    tree_planner,
)
from nengo_jax.optimizer.mergers import MergedSimPES, MergedSimProcess, mergeable
from nengo_jax.optimizer.pipeline import check_plan

PLANNERS = {
    "tree": None,
    "tree4": functools.partial(tree_planner, max_depth=4),
    "greedy": greedy_planner,
    "transitive": transitive_planner,
}
SORTERS = {"order": None, "noop": noop_order_signals}
N_STEPS = 60


def random_net(seed):
    """A seeded random network of every kind of connection the planner merges.

    Ensembles of two neuron types, a Node input, slices, sparse and
    convolution transforms, a PES learning rule, recurrent connections and
    several connections from and into the same ensembles.
    """
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(lambda t: [np.sin(7 * t), np.cos(5 * t), t])
        types = [nengo.LIF(), nengo.RectifiedLinear()]
        ens = [
            nengo.Ensemble(
                int(rng.randint(10, 30)),
                int(rng.randint(1, 4)),
                neuron_type=types[i % 2],
            )
            for i in range(8)
        ]
        nengo.Connection(stim[:1], ens[0][0])
        nengo.Connection(
            stim, ens[1], transform=rng.uniform(-1, 1, (ens[1].dimensions, 3))
        )
        for _ in range(14):
            pre, post = rng.choice(len(ens), size=2)
            a, b = ens[pre], ens[post]
            nengo.Connection(
                a,
                b,
                transform=rng.uniform(-0.5, 0.5, (b.dimensions, a.dimensions)),
                synapse=float(rng.choice([0.005, 0.01])),
            )
        nengo.Connection(ens[2], ens[2], synapse=0.05, transform=0.5)  # recurrent
        sparse = nengo.Sparse(
            (ens[4].n_neurons, ens[3].n_neurons),
            indices=[[0, 1], [2, 3], [4, 0]],
            init=[0.2, -0.1, 0.3],
        )
        nengo.Connection(ens[3].neurons, ens[4].neurons, transform=sparse)
        conv = nengo.Convolution(
            2, (ens[5].n_neurons, 1), kernel_size=(3,), strides=(1,)
        )
        conv_out = nengo.Node(size_in=conv.size_out)
        nengo.Connection(ens[5].neurons, conv_out, transform=conv)
        learned = nengo.Connection(
            ens[6],
            ens[7],
            transform=np.full((ens[7].dimensions, ens[6].dimensions), 0.3),
            learning_rule_type=nengo.PES(),
        )
        error = nengo.Node(size_in=ens[7].dimensions)
        nengo.Connection(ens[7], error)
        nengo.Connection(stim[: ens[7].dimensions], error, transform=-1)
        nengo.Connection(error, learned.learning_rule)
        net.outs = [nengo.Probe(e, synapse=0.01) for e in ens]
        net.outs.append(nengo.Probe(conv_out))
        net.outs.append(nengo.Probe(learned, "weights"))
    return net


def run(net, **settings):
    with net:
        nengo_jax.configure_settings(**settings)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(N_STEPS)
        return [sim.data[p].copy() for p in net.outs], sim.optimizer_report


@pytest.mark.parametrize("seed", [0, 1])
def test_every_combination_matches_noop(seed):
    net = random_net(seed)
    ref, plain = run(net, planner=noop_planner, simplifications=[])
    assert plain.merged == plain.operators
    for planner in PLANNERS.values():
        for sorter in SORTERS.values():
            for simplifications in ([], default_simplifications):
                out, report = run(
                    net,
                    planner=planner,
                    sorter=sorter,
                    simplifications=simplifications,
                )
                assert report.merged < report.simplified
                for a, b in zip(out, ref, strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_default_merges_and_matches_nengo():
    """The default plan (tree planner, order_signals) merges, and matches Nengo."""
    net = random_net(3)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(N_STEPS)
    out, report = run(net)
    assert report.merged < 0.7 * report.operators
    for a, p in zip(out, net.outs, strict=True):
        np.testing.assert_allclose(a, ref.data[p], rtol=1e-4, atol=1e-4)


def built_operators(net):
    model = Model(dt=0.001)
    model.build(net)
    dg = operator_dependency_graph(model.operators)
    from nengo_jax.optimizer.pipeline import stable_toposort

    return stable_toposort(dg), dg


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_plans_are_valid(name):
    """Each operator once, groups of one merge class, after their inputs."""
    ops, dg = built_operators(random_net(4))
    planner = PLANNERS[name] or tree_planner
    plan = planner(ops)
    check_plan(plan, ops, dg, planner)
    depends = {op: set() for op in ops}  # op -> everything it depends on
    for op in ops:  # (ops are in dependency order)
        for nxt in dg[op]:
            depends[nxt] |= depends[op] | {op}
    for group in plan:
        for a in group[1:]:
            assert mergeable(group[0], a)
            assert not any(b in depends[a] for b in group)
    assert len(plan) < len(ops)
    assert plan == planner(ops)  # deterministic


def test_tree_planner_looks_ahead():
    ops, _ = built_operators(random_net(5))
    greedy = greedy_planner(ops)
    assert tree_planner(ops, max_depth=1) == greedy
    # here, looking ahead finds a plan with fewer groups than the greedy choice
    assert len(tree_planner(ops)) < len(greedy)
    assert len(tree_planner(ops, max_depth=4)) < len(greedy)


def test_tree_planner_depth_is_checked():
    with pytest.raises(ValueError, match="max_depth"):
        tree_planner([], max_depth=0)


def test_order_signals_merges_more_than_noop_sorter():
    """Ordering views by memory joins more of them (on a circular convolution)."""
    with nengo.Network(seed=0) as net:
        cconv = nengo.networks.CircularConvolution(10, 8)
        nengo.Connection(nengo.Node([0.1] * 8), cconv.input_a)
        nengo.Connection(nengo.Node(lambda t: [np.sin(t)] * 8), cconv.input_b)
        net.outs = [nengo.Probe(cconv.output, synapse=0.01)]
    (ordered_out,), ordered = run(net, sorter=order_signals)
    (unordered_out,), unordered = run(net, sorter=noop_order_signals)
    assert ordered.merged < unordered.merged
    np.testing.assert_allclose(ordered_out, unordered_out, rtol=1e-5, atol=1e-6)


def test_bad_plan_raises():
    with nengo.Network() as net:
        nengo_jax.configure_settings(planner=lambda ops: [tuple(ops)])
        a = nengo.Ensemble(10, 1)
        nengo.Connection(nengo.Node([0.5]), a)
    with pytest.raises(BuildError, match="scheduled .* which it depends on"):
        nengo_jax.Simulator(net, progress_bar=False)
    with net:
        nengo_jax.configure_settings(planner=lambda ops: [(op,) for op in ops[1:]])
    with pytest.raises(BuildError, match="returned a plan of"):
        nengo_jax.Simulator(net, progress_bar=False)


def fan_net():
    """Many 1-D ensembles, each sending to and receiving from several others."""
    rng = np.random.RandomState(0)
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(lambda t: np.sin(10 * t))
        ens = [nengo.Ensemble(16, 1) for _ in range(12)]
        nengo.Connection(stim, ens[0])
        for pre in ens:
            for post in rng.randint(len(ens), size=3):
                nengo.Connection(
                    pre, ens[post], transform=rng.uniform(-0.4, 0.4), synapse=0.01
                )
        net.outs = [nengo.Probe(e, synapse=0.01) for e in ens]
    return net


def test_gathering_merges_fan_in_and_out():
    """Connections sharing inputs and outputs merge by gathering, exactly."""
    net = fan_net()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(N_STEPS)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(N_STEPS)
        ops = sim.step_order
        for p in net.outs:
            np.testing.assert_allclose(sim.data[p], ref.data[p], atol=2e-5)
    # the 36 decoder products merge into a few block-sparse products
    assert sum(type(op) is DotInc for op in ops) == 0
    gathered = [op for op in ops if isinstance(op, BsrDotInc)]
    # some products gather their inputs or add into a shared output row
    assert any(
        not np.array_equal(op.indices, np.arange(len(op.indices)))
        or np.any(np.diff(op.indptr) != 1)
        for op in gathered
    )
    assert any(isinstance(op, MergedSimProcess) for op in ops)
    assert any(isinstance(op, Copy) and op.dst_slice is not None for op in ops)
    assert len(ops) < 0.4 * sim.optimizer_report.operators


def test_merged_synapses_keep_nengo_seeds():
    """Merged synapses draw a seed each, so later noise matches nengo.Simulator."""
    with nengo.Network(seed=1) as net:
        noise = nengo.Node(nengo.processes.WhiteNoise(), size_out=1)
        a = nengo.Ensemble(20, 1)
        b = nengo.Ensemble(20, 1)
        for _ in range(3):
            nengo.Connection(a, b, synapse=0.01)
            nengo.Connection(b, a, synapse=0.01)
        nengo.Connection(noise, a)
        probe = nengo.Probe(noise)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(20)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(20)
        assert any(isinstance(op, MergedSimProcess) for op in sim.step_order)
        np.testing.assert_allclose(sim.data[probe], ref.data[probe], rtol=1e-6)


def pes_net(dims=6, seed=0):
    """Ensemble pairs learning through PES, each rule with its own error slice."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(np.sin(np.arange(1, dims + 1)), label="stim")
        pre = nengo.networks.EnsembleArray(20, dims)
        post = nengo.networks.EnsembleArray(20, dims)
        error = nengo.Node(size_in=dims)
        nengo.Connection(stim, pre.input)
        nengo.Connection(post.output, error)
        nengo.Connection(stim, error, transform=-1)
        for i, (a, b) in enumerate(
            zip(pre.ea_ensembles, post.ea_ensembles, strict=True)
        ):
            conn = nengo.Connection(
                a, b, function=lambda x: 0, learning_rule_type=nengo.PES(1e-3)
            )
            nengo.Connection(error[i], conn.learning_rule)
        net.probe = nengo.Probe(post.output, synapse=0.01)
    return net


def test_pes_rules_and_their_synapses_merge():
    """Every PES rule merges into one operator, the learned decoders apart from
    the fixed ones, exactly."""
    net = pes_net()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(200)
    with nengo_jax.Simulator(net, progress_bar=False, minibatch_size=2) as sim:
        sim.run_steps(200)
        ops = sim.step_order
        # no base mixes learned (state) and fixed (parameter) elements
        assert not sim._layout._split
    for item in sim.data[net.probe]:
        np.testing.assert_allclose(item, ref.data[net.probe], atol=2e-5)
    (pes,) = [op for op in ops if isinstance(op, nengo.builder.learning_rules.SimPES)]
    assert isinstance(pes, MergedSimPES) and pes.n_rules == 6
    learned = {pes.delta.base}
    products = [op for op in ops if isinstance(op, DotInc)]
    written = {s.base for op in ops for s in op.incs if op.reads[0].base in learned}
    assert written  # (the Copy adding each step's delta to the weights)
    assert [op.A.base in written for op in products].count(True) == 1
    synapses = [op for op in ops if isinstance(op, nengo.builder.processes.SimProcess)]
    assert len(synapses) <= 8  # (there are 6 + 6 + 6 + 2 + 1 before merging)


def test_reads_of_state_and_of_parameters_merge_apart():
    """A Copy of biases (parameters) and a Node's pass-through Copy (state)
    could merge into one whose source is part parameter, part state; they
    merge apart, and the results stay Nengo's."""
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(np.sin)
        arrays = [nengo.networks.EnsembleArray(10, 1) for _ in range(3)]
        nengo.Connection(stim, arrays[0].input, synapse=None)
        for i in range(3):
            nengo.Connection(arrays[i].output, arrays[(i + 1) % 3].input, synapse=0.01)
        probe = nengo.Probe(arrays[-1].output, synapse=0.01)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(100)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(100)
        assert not sim._layout._split
    np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=2e-5)


def test_synapses_concatenated_in_different_orders_gather():
    """Synapses whose inputs and outputs are concatenated in different orders
    merge by gathering, exactly."""
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(lambda t: np.sin(np.arange(4) + 5 * t))
        a = nengo.networks.EnsembleArray(20, 4)
        b = nengo.networks.EnsembleArray(20, 4)
        nengo.Connection(stim, a.input)
        for i in range(4):  # (reversed: the targets are in the other order)
            nengo.Connection(a.ea_ensembles[i], b.ea_ensembles[3 - i], synapse=0.01)
        probe = nengo.Probe(b.output, synapse=0.01)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(100)
    with nengo_jax.Simulator(net, progress_bar=False, minibatch_size=2) as sim:
        sim.run_steps(100)
        ops = sim.step_order
    gathered = [op for op in ops if getattr(op, "input_index", None) is not None]
    assert gathered and all(isinstance(op, MergedSimProcess) for op in gathered)
    for item in sim.data[probe]:
        np.testing.assert_allclose(item, ref.data[probe], atol=2e-5)
