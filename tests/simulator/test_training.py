"""The Keras calls: compile, fit, evaluate, predict, and the training modes."""

import logging

import jax
import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import BuildError, SimulationError, ValidationError

import nengo_jax
from nengo_jax.neurons import SoftLIFRate
from nengo_jax.testing import assert_allclose
from tests.helpers import MB, ramp_net


def xy(n=32, steps=1, seed=1):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, size=(n, steps, 1))
    return x, x**2


def values_of(sim, sig):
    return np.array(sim.signals[sig])


def test_fit_lowers_loss_and_trains_parameters():
    net = ramp_net()
    x, y = xy()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sig = sim.model.sig
        before = {
            name: values_of(sim, s)
            for name, s in [
                ("encoders", sig[net.ens]["encoders"]),
                ("bias", sig[net.ens.neurons]["bias"]),
                ("decoders", sig[net.c_out]["weights"]),
                ("input weights", sig[net.c_in]["weights"]),
            ]
        }
        sim.compile(keras.optimizers.Adam(1e-4), loss={net.p: "mse"})
        history = sim.fit({net.inp: x}, {net.p: y}, epochs=10, verbose=0)
        last = sim.evaluate({net.inp: x}, {net.p: y}, verbose=0)
        # evaluate gives the total and the per-probe loss
        assert set(last) == {"loss", "p_loss"}
        assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
        for name, value in before.items():
            now = values_of(
                sim,
                dict(
                    encoders=sig[net.ens]["encoders"],
                    bias=sig[net.ens.neurons]["bias"],
                    decoders=sig[net.c_out]["weights"],
                ).get(name, sig[net.c_in]["weights"]),
            )
            assert not np.allclose(now, value), f"{name} did not train"
        # the time did not advance (stateful=False)
        assert sim.n_steps == 0


def test_keras_steps_compile_once_per_call_kind(caplog):
    """A new optimizer's variables, metrics reset every epoch, and values set
    from Python are uncommitted arrays, which JAX compiles for apart from the
    committed ones the steps return: every call still compiles its step once."""
    net = ramp_net()
    x, y = xy(n=2 * MB)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(1e-3), loss={net.p: "mse"})
        with jax.log_compiles(True), caplog.at_level(logging.WARNING):
            for stateful in (False, True):
                sim.fit({net.inp: x}, {net.p: y}, epochs=3, verbose=0)
                sim.evaluate({net.inp: x}, {net.p: y}, verbose=0)
                sim.predict({net.inp: x}, stateful=stateful)
    compiled = [
        r.getMessage().split()[1]
        for r in caplog.records
        if r.getMessage().startswith("Compiling jit(")
    ]
    for step in ("train_step", "test_step", "predict_step"):
        assert compiled.count(f"jit({step})") == 1, compiled


def test_frozen_parameters_do_not_move():
    net = ramp_net()
    with net:
        nengo_jax.configure_settings(trainable=False)
        net.config[net.c_out].trainable = True
    x, y = xy()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        frozen = [
            sim.model.sig[net.ens]["encoders"],
            sim.model.sig[net.ens.neurons]["bias"],
            sim.model.sig[net.c_in]["weights"],
        ]
        trained = sim.model.sig[net.c_out]["weights"]
        before = [values_of(sim, s) for s in frozen + [trained]]
        sim.compile(keras.optimizers.SGD(1e-4), loss={"p": "mse"})
        sim.fit({"inp": x}, {"p": y}, epochs=2, verbose=0)
        after = [values_of(sim, s) for s in frozen + [trained]]
    for b, a in zip(before[:-1], after[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(after[-1], before[-1])


def rate_version(neuron_type):
    return {
        nengo.LIF: nengo.LIFRate(),
        nengo.SpikingRectifiedLinear: nengo.RectifiedLinear(),
    }[type(neuron_type)]


@pytest.mark.parametrize("neuron_type", [nengo.LIF(), nengo.SpikingRectifiedLinear()])
def test_training_runs_rates_inference_runs_spikes(neuron_type):
    """In training, spiking neurons compute exactly their rate version."""
    steps = 20
    x = np.linspace(-1, 1, MB)[:, None, None] * np.ones((1, steps, 1))
    spiking, rate = ramp_net(neuron_type), ramp_net(rate_version(neuron_type))
    with nengo_jax.Simulator(spiking, minibatch_size=MB, progress_bar=False) as sim:
        model = sim.keras_model
        model.set_values(sim._params, sim._state, stateful=False)
        trained = np.asarray(model({"inp": x}, training=True)["p_ens"])
        predicted = sim.predict({spiking.inp: x})[spiking.p_ens]
        sim.run_steps(steps, data={spiking.inp: x})
        ran = sim.data[spiking.p_ens]
    with nengo_jax.Simulator(rate, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(steps, data={rate.inp: x})
        rates = sim.data[rate.p_ens]
    assert_allclose(trained, rates)
    assert_allclose(predicted, ran)
    assert not np.allclose(predicted, rates, atol=0.05)


def test_lif_smoothing_trains_through_softlif():
    steps = 5
    x = np.linspace(-1, 1, MB)[:, None, None] * np.ones((1, steps, 1))
    net = ramp_net()
    with net:
        nengo_jax.configure_settings(lif_smoothing=0.05)
    soft = ramp_net(SoftLIFRate(sigma=0.05))
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        model = sim.keras_model
        model.set_values(sim._params, sim._state, stateful=False)
        trained = np.asarray(model({"inp": x}, training=True)["p_neurons"])
    with nengo_jax.Simulator(soft, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(steps, data={soft.inp: x})
    assert_allclose(trained.reshape(MB, steps, -1), sim.data[soft.p_neurons])


def test_learning_phase_forces_rates_everywhere():
    steps = 10
    x = np.full((MB, steps, 1), 0.5)
    net, rate = ramp_net(), ramp_net(nengo.LIFRate())
    with net:
        nengo_jax.configure_settings(learning_phase=True)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        predicted = sim.predict({net.inp: x})[net.p_ens]
    with nengo_jax.Simulator(rate, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(steps, data={rate.inp: x})
    assert_allclose(predicted, sim.data[rate.p_ens])


def test_surrogate_gradients_keep_spikes_forward():
    steps = 30
    x = np.full((MB, steps, 1), 0.8)
    net = ramp_net()
    with net:
        nengo_jax.configure_settings(surrogate_gradients=True)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        model = sim.keras_model
        model.set_values(sim._params, sim._state, stateful=False)
        trained = np.asarray(model({"inp": x}, training=True)["p_ens"])
        spiking = sim.predict({net.inp: x})[net.p_ens]
        assert_allclose(trained, spiking)
        sim.compile(keras.optimizers.Adam(0.1), loss={net.p_ens: "mse"})
        key = sim._layout.view(sim.model.sig[net.ens]["encoders"]).key
        before = np.array(sim._params[key])
        sim.fit({net.inp: x}, {net.p_ens: np.zeros((MB, steps, 1))}, verbose=0)
        assert np.abs(np.asarray(sim._params[key]) - before).max() > 0.05


def test_predict_matches_run_and_stateful():
    net = ramp_net(synapse=0.01)
    steps = 15
    x = np.random.RandomState(2).uniform(-1, 1, size=(2 * MB, steps, 1))
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        out = sim.predict({net.inp: x})
        assert set(out) == {net.p, net.p_ens, net.p_neurons}
        assert out[net.p].shape == (2 * MB, steps, 1)
        for i in range(2):
            sim.run_steps(steps, data={net.inp: x[i * MB : (i + 1) * MB]})
            assert_allclose(out[net.p_ens][i * MB : (i + 1) * MB], sim.data[net.p_ens])
            sim.reset()
        # stateful: the second half continues from the first, and the time moves
        first = sim.predict_on_batch({net.inp: x[:MB]}, stateful=True)
        assert sim.n_steps == steps
        second = sim.predict_on_batch({net.inp: x[:MB]}, stateful=True)
        assert sim.n_steps == 2 * steps
        sim.reset()
        sim.run_steps(2 * steps, data={net.inp: np.concatenate([x[:MB]] * 2, axis=1)})
        assert_allclose(
            np.concatenate([first[net.p_ens], second[net.p_ens]], axis=1),
            sim.data[net.p_ens],
        )
        # probe data is untouched by predict
        assert sim.data[net.p_ens].shape == (MB, 2 * steps, 1)


def test_predict_without_inputs_runs_node_functions():
    net = ramp_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        out = sim.predict(n_steps=12)
        sim.run_steps(12)
        assert_allclose(out[net.p_ens], sim.data[net.p_ens])


def test_float64_fit():
    net = ramp_net()
    with net:
        nengo_jax.configure_settings(dtype="float64")
    x, y = xy()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.01), loss={net.p: "mse"})
        history = sim.fit({net.inp: x}, {net.p: y}, epochs=3, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert all(v.dtype == "float64" for v in sim.keras_model.trainable_variables)
        out = sim.predict({net.inp: x})
        assert out[net.p].dtype == np.float64


def test_compile_forms():
    net = ramp_net()
    x, y = xy(n=MB)
    ys = {net.p: y, net.p_ens: x, net.p_neurons: np.zeros((MB, 1, 30))}
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        results = []
        for loss in (
            "mse",
            ["mse"] * 3,
            {net.p: "mse", "p_ens": "mse", net.p_neurons: "mse"},
        ):
            sim.compile(loss=loss, loss_weights=[1.0, 2.0, 0.5])
            results.append(sim.evaluate({net.inp: x}, ys, verbose=0))
        for result in results[1:]:
            assert result == pytest.approx(results[0])
        r = results[0]
        assert r["loss"] == pytest.approx(
            r["p_loss"] + 2 * r["p_ens_loss"] + 0.5 * r["p_neurons_loss"], rel=1e-5
        )
        sim.compile(loss={net.p: "mse"}, loss_weights={net.p: 3.0}, metrics=["mae"])
        result = sim.evaluate({net.inp: x}, {net.p: y}, verbose=0)
        out = sim.predict({net.inp: x})[net.p]
        assert result["p_mae"] == pytest.approx(np.abs(out - y).mean(), rel=1e-5)
        assert result["p_loss"] == pytest.approx(((out - y) ** 2).mean(), rel=1e-5)
        assert result["loss"] == pytest.approx(3 * result["p_loss"], rel=1e-5)


def test_custom_jax_loss():
    net = ramp_net()
    x, y = xy(n=MB, steps=5)

    def last_steps(y_true, y_pred):
        return jnp.mean(jnp.square(y_pred[:, -2:] - y_true[:, -2:]))

    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(loss={net.p: last_steps})
        result = sim.evaluate({net.inp: x}, {net.p: y}, verbose=0)
        out = sim.predict({net.inp: x})[net.p]
    assert result["loss"] == pytest.approx(((out - y)[:, -2:] ** 2).mean(), rel=1e-5)


# Keras converts its learning-rate Variable with np.array (a NumPy 2 deprecation)
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_callbacks(tmp_path):
    net = ramp_net()
    x, y = xy()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.01), loss={net.p: "mse"})
        csv = tmp_path / "log.csv"
        checkpoint = tmp_path / "best.weights.h5"
        rates = []

        def schedule(epoch, lr):
            rates.append(lr)
            return 0.01 / (epoch + 1)

        history = sim.fit(
            {net.inp: x},
            {net.p: y},
            epochs=6,
            verbose=0,
            callbacks=[
                keras.callbacks.CSVLogger(str(csv)),
                keras.callbacks.ModelCheckpoint(
                    str(checkpoint), save_weights_only=True
                ),
                keras.callbacks.LearningRateScheduler(schedule),
                # "improvements" smaller than 1e9 do not count: stops after 2 epochs
                keras.callbacks.EarlyStopping(
                    monitor="loss", min_delta=1e9, patience=1
                ),
            ],
        )
        assert len(history.history["loss"]) == 2
        lines = csv.read_text().strip().splitlines()
        assert lines[0].split(",")[:2] == ["epoch", "loss"]
        assert [float(line.split(",")[1]) for line in lines[1:]] == pytest.approx(
            history.history["loss"]
        )
        assert rates[1] == pytest.approx(0.01)
        assert float(sim.keras_model.optimizer.learning_rate) == pytest.approx(0.005)
        assert checkpoint.exists()
        trained = {k: np.asarray(v) for k, v in sim._params.items()}
        sim.reset()
        sim.keras_model.load_weights(str(checkpoint))
        for var in sim.keras_model.trainable_variables:
            key = next(k for k, v in sim.keras_model.param_vars.items() if v is var)
            assert_allclose(np.asarray(var.value), trained[key])


def test_validation_data():
    net = ramp_net()
    x, y = xy()
    vx, vy = xy(n=MB, seed=5)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.01), loss={net.p: "mse"})
        history = sim.fit(
            {net.inp: x},
            {net.p: y},
            validation_data=({net.inp: vx}, {net.p: vy}),
            epochs=2,
            verbose=0,
        )
        assert "val_loss" in history.history
        assert history.history["val_loss"][-1] == pytest.approx(
            sim.evaluate({net.inp: vx}, {net.p: vy}, verbose=0)["loss"], rel=1e-5
        )


def test_bad_input():
    net = ramp_net()
    x, y = xy(n=MB)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="compile"):
            sim.fit({net.inp: x}, {net.p: y})
        sim.compile(loss={net.p: "mse"})
        with pytest.raises(ValidationError, match=r"at least the Simulator's minibatc"):
            sim.fit({net.inp: x[:3]}, {net.p: y[:3]})
        with pytest.raises(ValidationError, match=r"'p'\] have a loss"):
            sim.fit({net.inp: x}, {net.p_ens: y})
        with pytest.raises(ValidationError, match=r"shape \(batch, n_steps, 1\); got"):
            sim.fit({net.inp: x}, {net.p: y[:, :, 0]})
        with pytest.raises(ValidationError, match="has inputs"):
            sim.fit({net.out: x}, {net.p: y})
        with pytest.raises(ValidationError, match="expected 4 items of 1 steps"):
            sim.fit({net.inp: x}, {net.p: np.zeros((MB, 2, 1))})
        with pytest.raises(ValidationError, match="exactly one Probe"):
            sim.evaluate({net.inp: x}, {"nope": y})
        with pytest.warns(UserWarning, match="batch_size is ignored"):
            sim.fit({net.inp: x}, {net.p: y}, batch_size=2, verbose=0)
        # after all that, the simulator still runs and matches a fresh one
        sim.reset()
        sim.run_steps(5)
        ran = sim.data[net.p_ens]
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as fresh:
        fresh.run_steps(5)
        # (not bitwise: Nengo's op merging may sum in another order in a new build)
        assert_allclose(ran, fresh.data[net.p_ens])


def test_failed_fit_keeps_parameters():
    net = ramp_net()
    x, y = xy()

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        params = {k: np.array(v) for k, v in sim._params.items()}
        state = {k: np.array(v) for k, v in sim._state.items()}
        sim.compile(keras.optimizers.SGD(1e-4), loss={net.p: "mse"})
        with pytest.raises(RuntimeError, match="boom"):
            sim.fit({net.inp: x}, {net.p: y}, callbacks=[Boom()], verbose=0)
        for key, value in params.items():
            np.testing.assert_array_equal(np.asarray(sim._params[key]), value)
        for key, value in state.items():
            np.testing.assert_array_equal(np.asarray(sim._state[key]), value)
        sim.fit({net.inp: x}, {net.p: y}, verbose=0)


def test_fit_refuses_without_training():
    net = ramp_net()
    with net:
        nengo_jax.configure_settings(inference_only=True)
    x, y = xy(n=MB)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(loss={net.p: "mse"})
        with pytest.raises(SimulationError, match="inference_only"):
            sim.fit({net.inp: x}, {net.p: y})
    with net:
        nengo_jax.configure_settings(learning_phase=True)
    with pytest.raises(BuildError, match="learning_phase=True cannot run it"):
        nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False)


def test_fit_with_nothing_trainable_runs():
    """As in NengoDL (measured on 3.6: loss 0.0487 in both epochs)."""
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(trainable=False)
        a = nengo.Node([0.5])
        ens = nengo.Ensemble(10, 1)
        nengo.Connection(a, ens)
        p = nengo.Probe(ens)
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        before = {k: np.array(v) for k, v in sim.keras_model.param_values().items()}
        sim.compile(keras.optimizers.SGD(0.1), loss={p: "mse"})
        history = sim.fit(
            {a: np.ones((4, 3, 1))}, {p: np.zeros((4, 3, 1))}, epochs=2, verbose=0
        ).history
        assert set(history) == {"loss", "probe_loss"}
        assert_allclose(history["loss"], [0.0487, 0.0487], atol=5e-5)
        after = sim.keras_model.param_values()
        for key, value in before.items():
            np.testing.assert_array_equal(after[key], value)


def test_python_node_blocks_gradient_but_trains_around_it():
    """A Python function has no gradient: parameters before it get none."""
    with nengo.Network(seed=0) as net:
        inp = nengo.Node([0.5])
        a = nengo.Ensemble(20, 1)
        fn = nengo.Node(lambda t, x: 2 * x, size_in=1)
        b = nengo.Ensemble(20, 1)
        out = nengo.Node(size_in=1)
        nengo.Connection(inp, a, synapse=None)
        nengo.Connection(a, fn, synapse=None)
        nengo.Connection(fn, b, synapse=None)
        after = nengo.Connection(b, out, synapse=None)
        p = nengo.Probe(out)
        net.config  # noqa: B018
    x = np.random.RandomState(0).uniform(-1, 1, size=(MB, 1, 1))
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        enc = sim._layout.view(sim.model.sig[a]["encoders"]).key
        dec = sim._layout.view(sim.model.sig[after]["weights"]).key
        before = {k: np.array(sim._params[k]) for k in (enc, dec)}
        sim.compile(keras.optimizers.SGD(1e-4), loss={p: "mse"})
        sim.fit({inp: x}, {p: x}, verbose=0)
        np.testing.assert_array_equal(np.asarray(sim._params[enc]), before[enc])
        assert not np.allclose(np.asarray(sim._params[dec]), before[dec])


def test_keep_history():
    """keep_history=False (globally or per probe) keeps only the last step."""
    steps = 12
    x = np.random.RandomState(3).uniform(-1, 1, size=(MB, steps, 1))
    net = ramp_net(synapse=0.01)
    with net:
        nengo_jax.configure_settings(keep_history=True)
        net.config[net.p_ens].keep_history = False
    ref = ramp_net(synapse=0.01)
    with nengo_jax.Simulator(ref, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(steps, data={ref.inp: x})
        full = {name: sim.data[getattr(ref, name)] for name in ("p", "p_ens")}
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        out = sim.predict({net.inp: x})
        assert out[net.p_ens].shape == (MB, 1, 1)
        assert_allclose(out[net.p_ens], full["p_ens"][:, -1:])
        assert_allclose(out[net.p], full["p"])
        sim.run_steps(steps, data={net.inp: x})
        assert sim.data[net.p_ens].shape == (MB, 1, 1)
        assert_allclose(sim.data[net.p_ens], full["p_ens"][:, -1:])
        # targets of a last-step probe have one step
        out = sim.predict({net.inp: x})  # (from the state the run left)
        sim.compile(loss={net.p_ens: "mse"})
        result = sim.evaluate(
            {net.inp: x}, {net.p_ens: np.zeros((MB, 1, 1))}, verbose=0
        )
        assert result["loss"] == pytest.approx(np.mean(out[net.p_ens] ** 2), rel=1e-5)
        with pytest.raises(ValidationError, match="keeps only the last step"):
            sim.evaluate({net.inp: x}, {net.p_ens: np.zeros((MB, steps, 1))})
    with ramp_net() as net2:
        nengo_jax.configure_settings(keep_history=False)
    with nengo_jax.Simulator(net2, progress_bar=False) as sim:
        sim.run_steps(7)
        assert sim.data[net2.p].shape == (1, 1)


def test_keep_history_keeps_the_last_step_of_each_run():
    """As NengoDL 3.6: runs of 20 and 30 steps and a step() keep 3 rows, the
    probed time at steps 20, 50 and 51; a reset clears them."""
    with nengo.Network() as net:
        nengo_jax.configure_settings(keep_history=False)
        node = nengo.Node(lambda t: [t] * 3)
        probe = nengo.Probe(node)
    for minibatch, shape in ((None, (3, 3)), (2, (2, 3, 3))):
        with nengo_jax.Simulator(
            net, minibatch_size=minibatch, progress_bar=False
        ) as sim:
            sim.run_steps(20)
            sim.run_steps(30)
            sim.step()
            assert sim.data[probe].shape == shape
            values = np.asarray(sim.data[probe]).reshape(-1, 3)[:, 0]
            assert_allclose(values, np.tile([0.02, 0.05, 0.051], len(values) // 3))
            sim.reset()
            assert sim.data[probe].size == 0


def test_stateful_setting_off():
    """stateful=False: every call starts from the initial state."""
    net = ramp_net(synapse=0.01)
    with net:
        nengo_jax.configure_settings(stateful=False)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(10)
        first = sim.data[net.p_ens].copy()
        sim.run_steps(10)
        np.testing.assert_array_equal(sim.data[net.p_ens][10:], first)
        with pytest.warns(UserWarning, match="stateful=True is ignored"):
            out = sim.predict(n_steps=10, stateful=True)
        assert_allclose(out[net.p_ens][0], first)


def test_use_loop_off():
    """use_loop=False: exactly unroll_simulation steps per call, no loop."""
    net = ramp_net(synapse=0.01)
    with net:
        nengo_jax.configure_settings(use_loop=False)
    with nengo_jax.Simulator(net, unroll_simulation=5, progress_bar=False) as sim:
        sim.run_steps(5)
        sim.run_steps(5)
        unrolled = sim.data[net.p_ens]
        with pytest.raises(ValidationError, match="exactly unroll_simulation=5"):
            sim.run_steps(3)
        with pytest.raises(ValidationError, match="exactly unroll_simulation=5"):
            sim.predict(n_steps=4)
    with nengo_jax.Simulator(ramp_net(synapse=0.01), progress_bar=False) as sim:
        sim.run_steps(10)
        assert_allclose(unrolled, sim.data[sim.model.probes[1]])


def test_trained_parameters_readable_after_close():
    net = ramp_net()
    x, y = xy()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(1e-3), loss={net.p: "mse"})
        sim.fit({net.inp: x}, {net.p: y}, epochs=2, verbose=0)
        trained = sim.data[net.ens].encoders.copy()
    assert not np.allclose(trained, sim.model.params[net.ens].encoders)
    np.testing.assert_array_equal(sim.data[net.ens].encoders, trained)


def three_outputs():
    with nengo.Network(seed=0) as net:
        net.inp = nengo.Node(np.zeros(2))
        out = nengo.Node(size_in=3)
        nengo.Connection(net.inp, out, transform=np.ones((3, 2)), synapse=None)
        net.p = nengo.Probe(out)
    rng = np.random.RandomState(0)
    return net, rng.uniform(size=(4, 5, 2)), rng


def test_sparse_and_broadcast_targets():
    """Targets Keras broadcasts against an output are accepted, as in NengoDL
    (values measured on NengoDL 3.6 with the same network and data): integer
    labels (batch, n_steps, 1) for a sparse loss, and for mse one element per
    step or one step for all."""
    net, x, rng = three_outputs()
    labels = rng.randint(0, 3, size=(4, 5, 1))
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(
            loss={net.p: keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            metrics={net.p: keras.metrics.sparse_categorical_accuracy},
        )
        result = sim.evaluate({net.inp: x}, {net.p: labels}, verbose=0)
        assert_allclose(result["loss"], np.log(3), atol=1e-5)  # NengoDL: 1.09861
        assert_allclose(result["probe_sparse_categorical_accuracy"], 0.35)
        # one label for all steps is every step's label (NengoDL refuses it)
        one = sim.evaluate({net.inp: x}, {net.p: labels[:, :1]}, verbose=0)
        tiled = np.repeat(labels[:, :1], 5, axis=1)
        assert one == sim.evaluate({net.inp: x}, {net.p: tiled}, verbose=0)

        sim.compile(loss={net.p: "mse"})  # (and no metrics left from before)
        result = sim.evaluate({net.inp: x}, {net.p: rng.uniform(size=(4, 1, 3))})
        assert set(result) == {"loss", "probe_loss"}  # as NengoDL names it
        assert_allclose(result["loss"], 0.82347, atol=1e-5)  # NengoDL: 0.82347
        result = sim.evaluate({net.inp: x}, {net.p: rng.uniform(size=(4, 5, 1))})
        assert_allclose(result["loss"], 0.75996, atol=1e-5)  # NengoDL: 0.75996
        for bad, match in (
            (labels[:, 0], r"must have shape \(batch, n_steps, 3\) or \(batch, n_s"),
            (labels[..., [0, 0]], r"must have shape \(batch, n_steps, 3\)"),
            (labels[:, :3], r"has 4 items of 3 steps; expected 4 items of 5 steps"),
        ):
            with pytest.raises(ValidationError, match=match):
                sim.evaluate({net.inp: x}, {net.p: bad})
        history = sim.fit({net.inp: x}, {net.p: labels[:, :1, [0, 0, 0]]}, verbose=0)
        assert np.isfinite(history.history["loss"]).all()


def test_names_are_nengo_dl_names():
    """Names of Nodes and Probes in the Keras model (predict's and history's
    keys, get_name), as NengoDL 3.6 gives them for the same network."""
    labels = ["a-b.c/d", "x:y", "1abc", "Ünï", "a b", "_x", "node", "node", None]
    with nengo.Network(seed=0) as net:
        nodes = [nengo.Node(np.zeros(1), label=label) for label in labels]
        probe_labels = ["p-1", "p.2", "p:3", None, "Probe", "probe", None, "x y"]
        probes = [
            nengo.Probe(node, label=label)
            for node, label in zip(nodes, probe_labels + ["p[0]"], strict=True)
        ]
        nengo.Node(size_in=1)  # (takes no input data: no name)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        assert [sim.get_name(n) for n in nodes] == [
            "a-b.c/d", "x_y", "1abc", "n", "a_b", "_x", "node", "node_1", "node_2"
        ]  # fmt: skip
        assert [sim.get_name(p) for p in probes] == [
            "p-1", "p.2", "p_3", "probe", "Probe_1", "probe_2", "probe_3", "x_y_1",
            "p0",
        ]  # fmt: skip
        with pytest.raises(ValidationError, match="has no name in the Keras model"):
            sim.get_name(net.nodes[-1])


def test_tensor_node_layer_regularizers_and_constraints():
    """A Keras layer's weight regularizers and constraints act in training."""

    def net_with(trainable=True, **kwargs):
        with nengo.Network() as net:
            net.inp = nengo.Node(np.zeros(2))
            dense = keras.layers.Dense(
                2, use_bias=False, kernel_initializer="ones", **kwargs
            )
            dense.trainable = trainable  # (Keras's flag: see test_tensor_node.py)
            net.node = nengo_jax.TensorNode(dense, shape_in=(2,), pass_time=False)
            nengo.Connection(net.inp, net.node, synapse=None)
            net.p = nengo.Probe(net.node)
        return net

    x = np.ones((MB, 1, 2))
    for kwargs, trainable, loss in [
        ({}, True, 4.0),  # (2 - 0)**2
        (dict(kernel_regularizer=keras.regularizers.L1(0.5)), True, 4.0 + 2.0),
        (dict(kernel_regularizer=keras.regularizers.L1(0.5)), False, 4.0),
    ]:
        net = net_with(trainable, **kwargs)
        with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
            sim.compile(keras.optimizers.SGD(0.0), loss={net.p: "mse"})
            y = np.zeros((MB, 1, 2))
            result = sim.evaluate({net.inp: x}, {net.p: y}, verbose=0)
        assert result["loss"] == pytest.approx(loss), (kwargs, trainable)
    # targets below zero pull the kernel below zero, unless constrained
    for constraint, low in [(None, -0.5), (keras.constraints.NonNeg(), 0.0)]:
        net = net_with(kernel_constraint=constraint)
        with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
            sim.compile(keras.optimizers.SGD(0.5), loss={net.p: "mse"})
            sim.fit({net.inp: x}, {net.p: np.full((MB, 1, 2), -4.0)}, verbose=0)
            kernel = values_of(sim, sim.model.sig[net.node]["weight0"])
        assert (kernel.min() < low) if constraint is None else kernel.min() == low
