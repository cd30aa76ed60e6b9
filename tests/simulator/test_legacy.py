"""NengoDL 2's ``train`` and ``loss`` (seeds 002 and 003), and the objectives."""

import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax import losses, obj
from nengo_jax.testing import assert_allclose
from tests.callbacks.events import event_files, histograms, read_events

MB = 4


def rate_net(seed=0):
    """A rate network (training and inference compute the same thing)."""
    with nengo.Network(seed=seed) as net:
        net.inp = nengo.Node([0.0], label="inp")
        net.ens = nengo.Ensemble(20, 1, neuron_type=nengo.LIFRate(), label="ens")
        net.out = nengo.Node(size_in=1, label="out")
        net.conn_in = nengo.Connection(net.inp, net.ens, synapse=None)
        net.conn = nengo.Connection(net.ens, net.out, synapse=0.005)
        net.p = nengo.Probe(net.out, label="p")
        net.p2 = nengo.Probe(net.ens, label="p2")
    return net


def data(net, n=2 * MB, steps=5, seed=0):
    x = np.random.RandomState(seed).uniform(-1, 1, size=(n, steps, 1))
    return {net.inp: x, net.p: x**2}


def params(sim, net):
    """The trainable parameters, by object (array keys may differ between builds)."""
    sig = sim.model.sig
    return {
        name: np.array(sim.signals[s])
        for name, s in [
            ("encoders", sig[net.ens]["encoders"]),
            ("bias", sig[net.ens.neurons]["bias"]),
            ("decoders", sig[net.conn]["weights"]),
        ]
    }


def test_train_and_loss():
    net = rate_net()
    d = data(net)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        before = sim.loss(d, objective={net.p: obj.mse})
        sim.train(d, keras.optimizers.Adam(1e-4), n_epochs=20)
        after = sim.loss(d)  # default objective: mse on every probe with targets
        assert after < 0.7 * before
        out = sim.predict({net.inp: d[net.inp]})[net.p]
        assert after == pytest.approx(np.mean((out - d[net.p]) ** 2), rel=1e-5)


def one_step(objective, d, opt=None, **kwargs):
    net = rate_net()
    d = {getattr(net, k): v for k, v in d.items()}
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.train(d, opt or keras.optimizers.SGD(1e-3), objective=objective, **kwargs)
        return params(sim, net)


def test_objective_forms():
    net = rate_net()
    x = data(net)[net.inp][:MB]
    t = x**2
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        out = sim.predict({net.inp: x})
    # None: the targets are the gradient of the loss with respect to the outputs
    error = 2 * (out[net.p] - t)
    by_gradient = one_step({"p": None}, {"inp": x, "p": error})
    by_loss = one_step({"p": lambda o, tt: jnp.sum((o - tt) ** 2)}, {"inp": x, "p": t})
    for key, value in by_loss.items():
        assert_allclose(by_gradient[key], value)
    # several probes in one objective == the sum of separate objectives
    joint = one_step(
        {("p", "p2"): lambda o, tt: obj.mse(o[0], tt[0]) + 2 * obj.mse(o[1], tt[1])},
        {"inp": x, "p": t, "p2": x},
    )
    separate = one_step(
        {"p": obj.mse, "p2": lambda o, tt: 2 * obj.mse(o, tt)},
        {"inp": x, "p": t, "p2": x},
    )
    for key, value in joint.items():
        assert_allclose(separate[key], value)
    # an objective of the outputs alone, and the objective given for all probes
    alone = one_step(lambda o: jnp.mean(o**2), {"inp": x, "p": t})
    with_targets = one_step(lambda o, tt: jnp.mean(o**2), {"inp": x, "p": t})
    for key, value in alone.items():
        assert_allclose(with_targets[key], value)
    assert not all(np.allclose(alone[k], by_loss[k]) for k in alone)


def test_truncation_equal_to_length_is_full_bptt():
    net = rate_net()
    d = data(net, steps=6)
    full = one_step(None, {"inp": d[net.inp], "p": d[net.p]}, shuffle=False)
    truncated = one_step(
        None, {"inp": d[net.inp], "p": d[net.p]}, shuffle=False, truncation=6
    )
    for key, value in full.items():
        assert_allclose(truncated[key], value)
    # shorter pieces compute something else, and still learn
    shorter = one_step(
        None, {"inp": d[net.inp], "p": d[net.p]}, shuffle=False, truncation=2
    )
    assert not all(np.allclose(shorter[k], full[k]) for k in full)


def test_truncation_lowers_loss_and_keeps_state():
    net = rate_net()
    d = data(net, steps=8)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        state = {k: np.array(v) for k, v in sim._state.items()}
        before = sim.loss(d)
        sim.train(d, keras.optimizers.Adam(1e-4), n_epochs=15, truncation=3)
        assert sim.loss(d) < 0.7 * before
        for key, value in state.items():
            np.testing.assert_array_equal(np.asarray(sim._state[key]), value)
        assert sim.n_steps == 0


def test_summaries(tmp_path):
    net = rate_net()
    d = data(net)
    with nengo_jax.Simulator(
        net, minibatch_size=MB, progress_bar=False, tensorboard=tmp_path
    ) as sim:
        sim.train(
            d,
            keras.optimizers.Adam(1e-3),
            n_epochs=2,
            summaries=["loss", net.conn, net.ens, net.ens.neurons],
        )
        last = {
            "encoders": np.array(sim.signals[sim.model.sig[net.ens]["encoders"]]),
        }
    events = [
        e for f in event_files(tmp_path / "run_0" / "train") for e in read_events(f)
    ]
    hists = histograms(events)
    assert len(hists) == 3
    (enc,) = [h for tag, h in hists.items() if tag.endswith("encoders")]
    assert [step for step, _ in enc] == [0, 1]
    assert enc[-1][1].sum == pytest.approx(last["encoders"].sum(), rel=1e-5)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="tensorboard=log_dir"):
            sim.train(d, "sgd", summaries=[net.conn])


def test_nan_mse_and_regularize():
    t = np.array([[1.0, np.nan], [3.0, 4.0]])
    p = np.array([[2.0, 100.0], [3.0, 2.0]])
    # NaN targets are zero error but count in the mean (as in NengoDL).
    assert float(losses.nan_mse(t, p)) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert float(obj.mse(p, t)) == pytest.approx((1 + 0 + 0 + 4) / 4)
    y = np.array([[[3.0, 4.0]], [[0.0, 1.0]]])
    assert float(losses.Regularize()(np.zeros_like(y), y)) == pytest.approx(3.0)
    assert float(losses.Regularize(order=1)(np.zeros_like(y), y)) == pytest.approx(4.0)
    with pytest.raises(ValidationError, match="positive number"):
        losses.Regularize(order=0)


def test_train_bad_data():
    net = rate_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="dict of Node or Probe"):
            sim.train([1, 2], "sgd")
        with pytest.raises(ValidationError, match="positive number of steps"):
            sim.train(data(net), "sgd", truncation=0)
