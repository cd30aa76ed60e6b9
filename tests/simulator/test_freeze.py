"""freeze_params and get_nengo_params: trained values back to plain Nengo."""

import keras
import nengo
import numpy as np
import pytest
import scipy.sparse
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.simulator.freeze import FixedWeights
from nengo_jax.testing import assert_allclose
from tests.helpers import MB, objects, train, weights_net


def mixed_net(seed=1):
    """Every kind of connection weights: Dense, Sparse, decoders, full weights."""
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node(nengo.processes.WhiteSignal(1, 5, seed=2), label="inp")
        net.a = nengo.Ensemble(12, 2, neuron_type=nengo.LIFRate(), label="a")
        net.b = nengo.Ensemble(8, 1, neuron_type=nengo.Sigmoid(), label="b")
        net.d = nengo.Ensemble(3, 2, neuron_type=nengo.Direct(), label="d")
        nengo.Connection(net.inp, net.a[0], transform=0.5, synapse=0.005)
        pes = nengo.Connection(
            net.a, net.b, function=lambda x: [x[0]], learning_rule_type=nengo.PES()
        )
        nengo.Connection(
            net.a,
            net.b,
            function=lambda x: x[0] * x[1],
            solver=nengo.solvers.LstsqL2(weights=True),
        )
        nengo.Connection(
            net.a.neurons,
            net.b.neurons,
            transform=nengo.Sparse(
                (8, 12), indices=[[0, 1], [3, 4], [7, 11]], init=[0.1, 0.2, -0.1]
            ),
        )
        sparse = scipy.sparse.random(12, 8, density=0.2, random_state=1, format="csr")
        nengo.Connection(
            net.b.neurons, net.a.neurons, transform=nengo.Sparse((12, 8), init=sparse)
        )
        nengo.Connection(net.b, net.d[1], synapse=nengo.Alpha(0.01))
        nengo.Connection(net.a, net.d, transform=[[1, 0.5], [0, 1]])
        nengo.Connection(net.b, pes.learning_rule)
        net.p = nengo.Probe(net.d, synapse=0.01, label="p")
        nengo_jax.configure_settings(trainable=None)
        # Nengo simulates Direct ensembles without encoders: nothing to freeze
        net.config[net.d].trainable = False
    return net


def dense_data(weights):
    """The stored values of dense or sparse (Nengo or scipy) weights."""
    if isinstance(weights, nengo.transforms.SparseMatrix):
        return weights.data
    if scipy.sparse.issparse(weights):
        return weights.tocsr().data
    return np.asarray(weights)


def test_freeze_then_nengo_simulator_reproduces_training():
    net = mixed_net()
    steps = 60
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.02), loss={net.p: "mse"})
        sim.fit(n_steps=10, y={net.p: np.ones((4, 10, 2))}, epochs=2, verbose=0)
        trained = sim.get_params()
        sim.freeze_params(net)
        sim.run_steps(steps)
        ours = sim.data[net.p]
        seed = sim.seed
    with nengo.Simulator(net, seed=seed, progress_bar=False) as ref:
        ref.run_steps(steps)
        for obj in objects(net):
            for name, value in trained[obj].items():
                if name == "weights" and obj.learning_rule_type is None:
                    assert_allclose(
                        dense_data(ref.data[obj].weights), dense_data(value)
                    )
                elif name in ("scaled_encoders", "bias"):
                    assert_allclose(getattr(ref.data[obj], name), value)
    # training changed the output, and Nengo computes the trained model
    original = mixed_net()
    with nengo.Simulator(original, seed=seed, progress_bar=False) as untrained:
        untrained.run_steps(steps)
    assert not np.allclose(untrained.data[original.p], ours, atol=1e-2)
    assert_allclose(ref.data[net.p], ours, atol=1e-4)


def test_freeze_single_objects_and_spiking_network():
    net = weights_net(nengo.LIF())
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        train(sim, net)
        sim.freeze_params([net.ens, net.c_out])  # not c_in
        sim.freeze_params(net.c_in)
        sim.run_steps(300)
        ours = sim.data[net.p][0]
    assert not net.ens.normalize_encoders
    assert isinstance(net.c_in.transform, nengo.Dense)
    assert isinstance(net.c_out.solver, nengo.solvers.NoSolver)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(300)
    assert_allclose(ref.data[net.p], ours, atol=1e-4)


def test_get_nengo_params_builds_equivalent_objects():
    net = weights_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        train(sim, net, epochs=2)
        ens_params = sim.get_nengo_params(net.ens)
        listed = sim.get_nengo_params([net.ens, net.c_in, net.c_out])
        by_label = sim.get_nengo_params([net.ens], as_dict=True)
        with pytest.raises(ValidationError, match="unique label"):
            sim.get_nengo_params(net, as_dict=True)
        with pytest.raises(ValidationError, match="Expected a Network"):
            sim.get_nengo_params(net.inp)
        sim.run_steps(50)
        ours = sim.data[net.p][0]
    assert isinstance(ens_params, dict) and isinstance(listed, list)
    assert set(by_label) == {"ens"}
    assert set(ens_params) == {
        "encoders",
        "normalize_encoders",
        "gain",
        "bias",
        "max_rates",
        "intercepts",
    }
    assert set(listed[2]) == {"eval_points", "function", "solver", "transform"}

    # a new network made of the same kinds of objects with these parameters
    with nengo.Network(seed=5) as new:
        inp = nengo.Node(np.sin)
        ens = nengo.Ensemble(20, 1, neuron_type=nengo.LIFRate(), **listed[0])
        out = nengo.Node(size_in=1)
        nengo.Connection(inp, ens, synapse=None, **listed[1])
        nengo.Connection(ens, out, synapse=0.005, **listed[2])
        p = nengo.Probe(out)
    with nengo.Simulator(new, progress_bar=False) as ref:
        ref.run_steps(50)
    assert_allclose(ref.data[p], ours, atol=1e-4)


def test_fixed_weights_solver_is_not_compositional():
    solver = FixedWeights(np.ones((3, 2)))
    assert solver.weights and not solver.compositional
    values, info = solver(None, None)
    np.testing.assert_array_equal(values, np.ones((3, 2)))
    assert info == {}


def test_direct_ensemble_encoders_do_not_train():
    """Direct ensembles have no neurons: their encoders are never trained."""
    with nengo.Network(seed=0) as net:
        inp = nengo.Node([0.5])
        d = nengo.Ensemble(1, 1, neuron_type=nengo.Direct())
        nengo.Connection(inp, d)
        p = nengo.Probe(d)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.compile(keras.optimizers.SGD(0.5), loss={p: "mse"})
        before = np.array(sim.data[d].encoders)
        sim.fit(n_steps=2, y={p: np.ones((1, 2, 1))}, verbose=0)  # (nothing trains)
        np.testing.assert_array_equal(sim.data[d].encoders, before)
        sim.freeze_params(net)
        assert sim.get_nengo_params(d) == {}


# -- resets -----------------------------------------------------------------------


def test_objects_without_parameters_are_refused_as_nengo_dl_refuses_them():
    """NengoDL (3.6) raises TypeError for a Node or Probe and ValueError for
    other bad objects; ours are ValidationErrors that are also those."""
    net = weights_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        for bad in (net.inp, net.p, "ens", None):
            with pytest.raises(TypeError, match="Expected a Network, Ensemble, Co"):
                sim.freeze_params(bad)
            with pytest.raises(ValueError, match="Expected a Network, Ensemble, Con"):
                sim.get_nengo_params(bad)
        with pytest.raises(ValueError, match="not part of the network"):
            sim.freeze_params(nengo.Ensemble(5, 1, add_to_container=False))
