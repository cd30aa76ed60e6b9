"""configure_settings and the Settings the Simulator resolves from it; which
parameters are trainable: the defaults and every example of seed 001."""

import nengo
import numpy as np
import pytest
from nengo.exceptions import ConfigError, NetworkContextError, ValidationError

import nengo_jax
from nengo_jax.config import Settings
from nengo_jax.testing import assert_allclose


def test_each_call_sets_only_its_options():
    with nengo.Network() as net:
        nengo_jax.configure_settings(stateful=False)
        nengo_jax.configure_settings(keep_history=False, dtype="float64")
    settings = Settings.from_network(net)
    assert settings.stateful is False and settings.keep_history is False
    assert settings.dtype == "float64"
    assert settings.use_loop is True  # untouched options keep their defaults
    assert Settings.from_network(nengo.Network()) == Settings()


def test_errors():
    with pytest.raises(NetworkContextError, match="within a Network context"):
        nengo_jax.configure_settings(stateful=False)
    with nengo.Network():
        with pytest.raises(ConfigError, match="'bogus'.*valid settings are: trainable"):
            nengo_jax.configure_settings(bogus=1)
    with nengo.Network() as net:
        nengo_jax.configure_settings(dtype="float16")
    with pytest.raises(ValidationError, match="dtype must be 'float32' or 'float64'"):
        nengo_jax.Simulator(net, progress_bar=False)


@pytest.mark.parametrize("dtype, atol", [("float32", 2e-3), ("float64", 1e-12)])
def test_dtype_matches_nengo(dtype, atol):
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(dtype=dtype)
        stim = nengo.Node(lambda t: np.sin(10 * t))
        ens = nengo.Ensemble(20, 1)
        nengo.Connection(stim, ens)
        probe = nengo.Probe(ens, synapse=0.01)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run(0.2)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run(0.2)
        assert sim.data[probe].dtype == np.dtype(dtype)
        assert sim.signals[sim.model.step].dtype == (
            np.int64 if dtype == "float64" else np.int32
        )
    assert_allclose(sim.data[probe], ref.data[probe], dtype=dtype, atol=atol)


def test_matmul_precision_reaches_builders():
    with nengo.Network() as net:
        nengo_jax.configure_settings(matmul_precision="default")
        nengo.Node([1])
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        assert sim.settings.matmul_precision == "default"
        assert all(b.ctx.precision == "default" for b in sim._program.builders)


def trainable(net):
    """{(object, signal name)} of the trainable signals of ``net``'s build."""
    model = nengo.builder.Model()
    model.build(net)
    return set(Settings.from_network(net).resolved(model).trained)


def params_of(ens=(), conns=(), biases=()):
    return (
        {(e, "encoders") for e in ens}
        | {(c, "weights") for c in conns}
        | {(e.neurons, "bias") for e in biases}
    )


def test_defaults_train_weights_encoders_biases():
    with nengo.Network() as net:
        a = nengo.Node([0])
        b = nengo.Ensemble(10, 1)
        c = nengo.Node(size_in=1)
        ab = nengo.Connection(a, b, transform=2)
        bc = nengo.Connection(b, c)
        nengo.Connection(a, c)  # no transform: no weights to train
    assert trainable(net) == params_of([b], [ab, bc], [b])


def test_one_connection_trainable():
    """Seed 001: everything off, then one connection on."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=False)
        a = nengo.Node([0])
        b = nengo.Ensemble(10, 1)
        c = nengo.Node(size_in=1)
        nengo.Connection(a, b)
        conn = nengo.Connection(b, c)
        net.config[conn].trainable = True
    assert trainable(net) == params_of(conns=[conn])


def test_subnetwork_off():
    """Seed 001: disable training for a subnetwork."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=None)
        a = nengo.Ensemble(10, 1)
        with nengo.Network() as subnet:
            nengo_jax.configure_settings(trainable=False)
            b = nengo.Ensemble(10, 1)
            inner = nengo.Connection(b, b)
        outer = nengo.Connection(a, b)
    assert trainable(net) == params_of([a], [outer], [a])
    assert inner not in {obj for obj, _ in trainable(net)}
    assert subnet is not None


@pytest.mark.parametrize("before", [True, False])
def test_class_setting_before_or_after_creation(before):
    """Seed 001: trainable applies to objects created before or after it is set."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=None)
        if before:
            net.config[nengo.Ensemble].trainable = False
        a = nengo.Ensemble(10, 1)
        conn = nengo.Connection(a, a)
        if not before:
            net.config[nengo.Ensemble].trainable = False
    assert trainable(net) == params_of(conns=[conn])


def test_lower_subnetwork_wins():
    """Seed 001, rule 1."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=True)
        with nengo.Network():
            nengo_jax.configure_settings(trainable=False)
            a = nengo.Ensemble(10, 1)
        b = nengo.Ensemble(10, 1)
    assert trainable(net) == params_of([b], biases=[b])
    assert a not in {obj for obj, _ in trainable(net)}


def test_instance_over_class():
    """Seed 001, rule 2."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=None)
        a = nengo.Ensemble(10, 1)
        b = nengo.Ensemble(10, 1)
        net.config[a].trainable = True
        net.config[nengo.Ensemble].trainable = False
    assert trainable(net) == params_of([a], biases=[a])
    assert b not in {obj for obj, _ in trainable(net)}


def test_ensemble_covers_biases_unless_neurons_set():
    """Seed 001: Ensemble controls encoders and biases; Neurons the biases alone."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=False)
        net.config[nengo.Ensemble].trainable = True
        a = nengo.Ensemble(10, 1)
        b = nengo.Ensemble(10, 1)
    assert trainable(net) == params_of([a, b], biases=[a, b])

    net.config[nengo.ensemble.Neurons].trainable = False
    net.config[b.neurons].trainable = True
    assert trainable(net) == params_of([a, b], biases=[b])

    net.config[nengo.Ensemble].trainable = False
    assert trainable(net) == params_of(biases=[b])


def test_learning_rule_targets_are_not_trained():
    """Weights an online learning rule changes are state, never parameters."""
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1)
        b = nengo.Node(size_in=1)
        conn = nengo.Connection(a, b, learning_rule_type=nengo.PES())
        other = nengo.Connection(a, b)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        model = sim.keras_model
        weights = sim._layout.view(sim.model.sig[conn]["weights"]).key
        assert weights in model.state_vars
        assert not model.state_vars[weights].trainable
        other_key = sim._layout.view(sim.model.sig[other]["weights"]).key
        assert model.param_vars[other_key].trainable


def test_merged_parameters_are_masked():
    """Trainable and frozen signals merged into one array get an element mask."""
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(trainable=None)
        a = nengo.Ensemble(10, 1)
        b = nengo.Ensemble(12, 1)
        net.config[b].trainable = False
        nengo.Connection(a, b)
        nengo.Probe(b)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        masks = sim.keras_model.masks
        layout = sim._layout
        for ens, expected in ((a, True), (b, False)):
            for sig in (
                sim.model.sig[ens]["encoders"],
                sim.model.sig[ens.neurons]["bias"],
            ):
                view = layout.view(sig)
                key = view.param_key or view.key
                mask = masks.get(key, False)
                if mask is True or mask is False:
                    assert mask == expected, (ens, sig)
                else:
                    local = np.arange(view.start, view.stop)
                    assert np.all(mask.reshape(-1)[local] == expected), (ens, sig)


def test_bad_trainable_value():
    with nengo.Network():
        with pytest.raises(ValidationError, match="True, False or None"):
            nengo_jax.configure_settings(trainable="yes")


def test_config_after_build_changes_nothing():
    """Settings are resolved once: later config changes do not change what
    trains or what probes keep."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(trainable=None, keep_history=True)
        a = nengo.Ensemble(10, 1)
        conn = nengo.Connection(a, a)
        probe = nengo.Probe(a)
    with (
        nengo_jax.Simulator(net, progress_bar=False) as ref,
        nengo_jax.Simulator(net, progress_bar=False) as sim,
    ):
        expected = ref.keras_model.masks
        before = sim.settings
        net.config[conn].trainable = False
        net.config[probe].keep_history = False
        masks = sim.keras_model.masks  # (made after the change)
        assert sim.settings == before and (conn, "weights") in before.trained
        assert not before.last_only
        assert masks.keys() == expected.keys()
        for key, mask in masks.items():
            assert np.array_equal(mask, expected[key]), key
        sim.run_steps(3)
        assert sim.data[probe].shape[0] == 3
    assert trainable(net) == params_of([a], biases=[a])  # a new build sees it


def test_options_set_in_a_subnetwork_apply_to_the_network():
    """NengoDL applies every option but ``trainable`` to the outermost network
    being built (measured on NengoDL 3.6: float64 and keep_history=False for
    the probes inside and outside the subnetwork)."""
    with nengo.Network(seed=0) as net:
        a = nengo.Node([0.5])
        with nengo.Network():
            nengo_jax.configure_settings(
                dtype="float64", keep_history=False, trainable=False
            )
            b = nengo.Ensemble(5, 1)
            pb = nengo.Probe(b)
        nengo.Connection(a, b)
        c = nengo.Ensemble(5, 1)
        pa = nengo.Probe(a)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3)
        for p in (pa, pb):
            assert sim.data[p].dtype == np.float64 and sim.data[p].shape == (1, 1)
        # trainable stays the subnetwork's: its ensemble is frozen, the outer
        # one is not
        assert set(sim.settings.trained) == {(c, "encoders"), (c.neurons, "bias")}
