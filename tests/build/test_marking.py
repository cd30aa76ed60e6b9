"""Which parameters are trainable: the defaults and every example of seed 001."""

import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.build.marking import trainable_signals


def trainable(net):
    """{(object, signal name)} of the trainable signals of ``net``'s build."""
    model = nengo.builder.Model()
    model.build(net)
    chosen = {id(sig) for sig in trainable_signals(model, net)}
    return {
        (obj, name)
        for obj, sigs in model.sig.items()
        for name, sig in sigs.items()
        if id(sig) in chosen
    }


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
