"""TensorNode and Layer: JAX code and Keras layers inside Nengo networks."""

import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulationError, ValidationError

import nengo_jax
from nengo_jax.testing import assert_allclose

MB = 3


def test_seed_tutorial_tensor_node_matches_node():
    """Seed 003: exp of a decoded value, as a NumPy Node and as a TensorNode."""
    with nengo.Network(seed=0) as net:
        inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3))
        sin = nengo.Ensemble(20, 1)
        nengo.Connection(inpt, sin)
        exp_np = nengo.Node(lambda t, x: np.exp(x), size_in=1)
        nengo.Connection(sin, exp_np)
        np_probe = nengo.Probe(exp_np, synapse=0.01)
        exp_tf = nengo_jax.TensorNode(lambda t, x: jnp.exp(x), size_in=1)
        nengo.Connection(sin, exp_tf)
        tf_probe = nengo.Probe(exp_tf, synapse=0.01)
    assert exp_tf.shape_in == (1,) and exp_tf.shape_out == (1,)
    with nengo_jax.Simulator(net, seed=0, progress_bar=False) as sim:
        sim.run(0.5)
        assert_allclose(sim.data[tf_probe], sim.data[np_probe])
        assert np.ptp(sim.data[tf_probe]) > 0.1
    with nengo.Simulator(net, progress_bar=False) as sim:
        with pytest.raises(SimulationError, match="runs only in nengo_jax.Simulator"):
            sim.step()


@pytest.mark.parametrize("minibatch_size", [None, MB])
def test_call_forms_and_shapes(minibatch_size):
    B = minibatch_size or 1
    x = np.arange(B * 6, dtype=float).reshape(B, 1, 6) / 10
    x = np.broadcast_to(x, (B, 4, 6))
    with nengo.Network() as net:
        inp = nengo.Node(np.zeros(6))
        t_only = nengo_jax.TensorNode(lambda t: jnp.full((B, 2), t), shape_out=(2,))
        t_and_x = nengo_jax.TensorNode(lambda t, x: x.sum(axis=2) + t, shape_in=(2, 3))
        x_only = nengo_jax.TensorNode(
            lambda x: jnp.swapaxes(x, 1, 2), shape_in=(2, 3), pass_time=False
        )
        for node in (t_and_x, x_only):
            nengo.Connection(inp, node, synapse=None)
        probes = [nengo.Probe(n) for n in (t_only, t_and_x, x_only)]
    assert t_only.shape_out == (2,)
    assert t_and_x.shape_out == (2,) and t_and_x.size_in == 6
    assert x_only.shape_out == (3, 2) and x_only.size_out == 6
    with nengo_jax.Simulator(
        net, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        sim.run_steps(4, data={inp: x} if minibatch_size else None)
        t = sim.trange()
        out = [sim.data[p] if minibatch_size else sim.data[p][None] for p in probes]
    xin = x if minibatch_size else np.zeros((1, 4, 6))
    assert_allclose(out[0], np.broadcast_to(t[None, :, None], (B, 4, 2)))
    assert_allclose(out[1], xin.reshape(B, 4, 2, 3).sum(-1) + t[None, :, None])
    assert_allclose(out[2], np.swapaxes(xin.reshape(B, 4, 2, 3), 2, 3).reshape(B, 4, 6))


def dense_net(nengo_trainable=None):
    """inp -> Ensemble -> TensorNode(Dense(1)), with the Nengo parts' trainable
    config set to ``nengo_trainable`` (None: not configured)."""
    with nengo.Network(seed=0) as net:
        if nengo_trainable is not None:
            nengo_jax.configure_settings(trainable=nengo_trainable)
        net.inp = nengo.Node(np.zeros(2), label="inp")
        net.ens = nengo.Ensemble(10, 2, neuron_type=nengo.RectifiedLinear())
        net.layer = keras.layers.Dense(1, kernel_initializer="zeros")
        net.node = nengo_jax.TensorNode(net.layer, shape_in=(2,), pass_time=False)
        nengo.Connection(net.inp, net.ens, synapse=None)
        net.conn = nengo.Connection(net.inp, net.node, synapse=None)
        net.p = nengo.Probe(net.node, label="p")
    return net


def test_keras_layer_weights_train(tmp_path):
    net = dense_net()
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(32, 1, 2))
    y = x @ np.array([[2.0], [-1.0]]) + 0.5
    with nengo_jax.Simulator(net, minibatch_size=8, progress_bar=False) as sim:
        names = {v.name for v in sim.keras_model.trainable_variables}
        assert any("weight0" in n for n in names) and any("weight1" in n for n in names)
        sim.compile(keras.optimizers.Adam(0.05), loss={net.p: "mse"})
        history = sim.fit({net.inp: x}, {net.p: y}, epochs=60, verbose=0)
        assert history.history["loss"][-1] < 0.01 * history.history["loss"][0]
        out = sim.predict({net.inp: x})[net.p]
        assert_allclose(out, y, atol=0.05, rtol=0)
        # as in NengoDL, the layer holds its trained weights
        kernel = np.asarray(net.layer.kernel.value)
        assert_allclose(kernel, [[2.0], [-1.0]], atol=0.05)
        assert_allclose(np.asarray(net.layer.bias.value), [0.5], atol=0.05)
        # whatever changes the parameters changes the layer
        sim.save_params(tmp_path / "trained")
        sim.reset(include_trainable=True)
        np.testing.assert_array_equal(net.layer.kernel.value, np.zeros((2, 1)))
        sim.load_params(tmp_path / "trained")
        np.testing.assert_array_equal(net.layer.kernel.value, kernel)
    # so a new Simulator of the network starts from them
    with nengo_jax.Simulator(net, minibatch_size=8, progress_bar=False) as sim:
        np.testing.assert_array_equal(sim.predict({net.inp: x})[net.p], out)


def test_failed_fit_leaves_layer_weights():
    net = dense_net()
    x = np.ones((8, 1, 2))
    with nengo_jax.Simulator(net, minibatch_size=8, progress_bar=False) as sim:
        sim.compile(keras.optimizers.SGD(0.1), loss={net.p: "mse"})

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            sim.fit({net.inp: x}, {net.p: x[..., :1]}, epochs=2, callbacks=[Stop()])
    np.testing.assert_array_equal(np.asarray(net.layer.kernel.value), np.zeros((2, 1)))


def trainable_names(sim):
    return {v.name for v in sim.keras_model.trainable_variables}


def test_trainable_config_leaves_layers_to_keras():
    """NengoDL: ``trainable`` covers Ensembles, Connections and Neurons; a Keras
    layer trains as its own ``trainable`` flag says."""
    net = dense_net(nengo_trainable=False)  # freeze the Nengo parts ...
    with nengo_jax.Simulator(net, minibatch_size=8, progress_bar=False) as sim:
        frozen = {k: np.array(v) for k, v in sim.keras_model.param_values().items()}
        assert trainable_names(sim) and all("weight" in n for n in trainable_names(sim))
        sim.compile(keras.optimizers.SGD(0.1), loss={net.p: "mse"})
        sim.fit({net.inp: np.ones((8, 1, 2))}, {net.p: np.ones((8, 1, 1))}, verbose=0)
        after = {k: np.array(v) for k, v in sim.keras_model.param_values().items()}
    # ... and train the layer
    assert not np.array_equal(np.asarray(net.layer.kernel.value), np.zeros((2, 1)))
    changed = {k for k in frozen if not np.array_equal(frozen[k], after[k])}
    assert changed and all("weight" in k for k in changed), changed

    net = dense_net()
    net.layer.trainable = False  # Keras's own flag freezes the layer
    with nengo_jax.Simulator(net, minibatch_size=8, progress_bar=False) as sim:
        assert trainable_names(sim) and not any(
            "weight" in n for n in trainable_names(sim)
        )
    with nengo.Network() as other:
        nengo_jax.configure_settings(trainable=None)
        node = nengo_jax.TensorNode(
            keras.layers.Dense(1), shape_in=(2,), pass_time=False
        )
        with pytest.raises(AttributeError, match="trainable"):
            other.config[node].trainable = False


def test_layer_gets_learning_phase():
    """Dropout drops in training (fit) and passes everything in inference."""
    with nengo.Network() as net:
        inp = nengo.Node(np.ones(100))
        node = nengo_jax.TensorNode(
            keras.layers.Dropout(0.5, seed=1), shape_in=(100,), pass_time=False
        )
        nengo.Connection(inp, node, synapse=None)
        p = nengo.Probe(node)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(1)
        np.testing.assert_array_equal(sim.data[p], np.ones((1, 100)))
        model = sim.keras_model
        model.set_values(sim._params, sim._state, stateful=False)
        trained = np.asarray(
            model({"n_steps": np.zeros((1, 1))}, training=True)[sim.get_name(p)]
        )
        assert np.sum(trained == 0) > 20 and np.allclose(trained[trained != 0], 2)


def test_layer_sugar():
    with nengo.Network(seed=0) as net:
        inp = nengo.Node(np.linspace(-1, 1, 4))
        relu = nengo_jax.Layer(nengo.RectifiedLinear())(
            inp, transform=2, gain=nengo.dists.Choice([1]), bias=nengo.dists.Choice([0])
        )
        doubled, conn = nengo_jax.Layer(lambda x: 3 * x)(relu, return_conn=True)
        p = nengo.Probe(doubled)
    assert isinstance(relu, nengo.ensemble.Neurons) and relu.ensemble.n_neurons == 4
    assert isinstance(doubled, nengo_jax.TensorNode)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(2)
        assert_allclose(sim.data[p][-1], 3 * np.maximum(2 * np.linspace(-1, 1, 4), 0))
        trainable = sim.keras_model.trainable_variables
        key = sim._layout.view(sim.model.sig[conn]["weights"])
        assert all(key.key not in v.name for v in trainable)


def test_layer_neurons_use_the_network_config():
    """NengoDL's spiking-MNIST recipe sets Ensemble defaults on the config and
    relies on Layer(neuron_type) using them (measured on NengoDL 3.6: gain 100,
    bias 0, output [50, 0])."""
    with nengo.Network(seed=0) as net:
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([100])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        inp = nengo.Node([0.5, -0.2])
        neurons = nengo_jax.Layer(nengo.RectifiedLinear())(inp)
        p = nengo.Probe(neurons)
    assert neurons.ensemble.n_neurons == 2 and neurons.ensemble.dimensions == 1
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(2)
        assert_allclose(sim.data[neurons.ensemble].gain, [100, 100])
        assert_allclose(sim.data[neurons.ensemble].bias, [0, 0])
        assert_allclose(sim.data[p][-1], [50, 0])


def test_errors():
    with nengo.Network():
        with pytest.raises(ValidationError, match="Must be a callable"):
            nengo_jax.TensorNode(3)
        with pytest.raises(ValidationError, match="pass_time=True"):
            nengo_jax.TensorNode(lambda x: x, pass_time=False)
        with pytest.raises(ValidationError, match="failed with"):
            nengo_jax.TensorNode(lambda t, x: x @ jnp.ones((5, 5)), shape_in=(3,))
    with nengo.Network() as net:
        wrong = nengo_jax.TensorNode(lambda t: jnp.ones((1, 4)), shape_out=(3,))
        nengo.Probe(wrong)
    with pytest.raises(ValidationError, match=r"\(1, 3\); got \(1, 4\)"):
        nengo_jax.Simulator(net, progress_bar=False)
    with nengo.Network() as net:
        ints = nengo_jax.TensorNode(lambda t: jnp.ones((1, 2), jnp.int32))
        nengo.Probe(ints)
    with pytest.raises(ValidationError, match="floating point"):
        nengo_jax.Simulator(net, progress_bar=False)


def test_shape_inference_takes_any_leading_axis():
    """NengoDL calls a function with a batch of one (t = 0, x zeros) and takes
    everything after the output's first axis as shape_out, whatever that axis
    is; the batch is checked when the Simulator is built (measured on NengoDL
    3.6: ``lambda t: ones((5, 4))`` gets shape_out (4,) and runs at
    minibatch_size 5, and fails at 1)."""
    seen = []

    def doubled(t, x):
        seen.append(x.shape)
        return jnp.concatenate([x, x], axis=1)

    with nengo.Network() as net:
        node = nengo_jax.TensorNode(doubled, shape_in=(3,))
        fixed = nengo_jax.TensorNode(lambda t: jnp.full((5, 4), t))
        p = nengo.Probe(fixed)
    with nengo.Network():
        deep = nengo_jax.TensorNode(lambda t: jnp.ones((1, 4, 2)))
    assert seen == [(1, 3)] and node.shape_out == (6,)
    assert fixed.shape_out == (4,) and deep.shape_out == (4, 2)
    with nengo_jax.Simulator(net, minibatch_size=5, progress_bar=False) as sim:
        sim.run_steps(2)
        assert_allclose(sim.data[p], np.broadcast_to(sim.trange()[:, None], (5, 2, 4)))
    with pytest.raises(ValidationError, match=r"\(1, 4\); got \(5, 4\)"):
        nengo_jax.Simulator(net, progress_bar=False)
    with nengo.Network():
        with pytest.raises(ValidationError, match="leading batch axis.*scalar"):
            nengo_jax.TensorNode(lambda t: jnp.ones(()))


class FixedShape(keras.layers.Layer):
    """A layer whose compute_output_shape leaves the batch None."""

    def call(self, x):
        return x[:, :2]

    def compute_output_shape(self, input_shape):
        return (None, 2)


class NoShape(FixedShape):
    def compute_output_shape(self, input_shape):
        raise NotImplementedError("no shape")


def test_layer_output_shape_with_a_none_batch():
    """NengoDL asks a layer's compute_output_shape (given (1,) + shape_in) and
    accepts a None batch; when that fails, it asks for shape_out."""
    with nengo.Network() as net:
        inp = nengo.Node(np.arange(6.0))
        node = nengo_jax.TensorNode(FixedShape(), shape_in=(6,), pass_time=False)
        nengo.Connection(inp, node, synapse=None)
        p = nengo.Probe(node)
        with pytest.raises(ValidationError, match="no shape.*shape_out="):
            nengo_jax.TensorNode(NoShape(), shape_in=(6,), pass_time=False)
        given = nengo_jax.TensorNode(
            NoShape(), shape_in=(6,), shape_out=(2,), pass_time=False
        )
        nengo.Connection(inp, given, synapse=None)
    assert node.shape_out == (2,) and given.shape_out == (2,)
    with nengo_jax.Simulator(net, minibatch_size=3, progress_bar=False) as sim:
        sim.run_steps(1)
        assert_allclose(sim.data[p], np.broadcast_to([0.0, 1.0], (3, 1, 2)))


class Recorder(keras.layers.Layer):
    """Records the ``training`` value of each call (each trace, here)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def call(self, x, training=None):
        self.seen.append(training)
        return x

    def take(self):
        seen, self.seen = set(self.seen), []
        return seen


@pytest.mark.parametrize("learning_phase", [None, True, False])
def test_layer_training_values(learning_phase):
    """The ``training`` of each call, as NengoDL passes it: False when the
    shape is inferred, the learning phase (or False) when the Simulator is
    built, then True in fit and False elsewhere unless ``learning_phase`` says
    otherwise. (Keras also traces the model once, in inference, when fit
    starts.)"""
    layer = Recorder()
    with nengo.Network() as net:
        if learning_phase is not None:
            nengo_jax.configure_settings(learning_phase=learning_phase)
        inp = nengo.Node([1.0])
        node = nengo_jax.TensorNode(layer, shape_in=(1,), pass_time=False)
        nengo.Connection(inp, node, synapse=None)
        p = nengo.Probe(node)
    assert layer.take() == {False}
    phase = bool(learning_phase)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        assert layer.take() == {phase}
        sim.run_steps(1)
        sim.predict(n_steps=1, verbose=0)
        assert layer.take() == {phase}
        sim.compile(keras.optimizers.SGD(0.0), loss={p: "mse"})
        data = ({inp: np.ones((1, 1, 1))}, {p: np.zeros((1, 1, 1))})
        sim.fit(*data, verbose=0)
        seen = layer.take()
        assert True in seen if learning_phase is None else seen == {phase}
        sim.evaluate(*data, verbose=0)
        assert layer.take() <= {phase}


def dropout_net(layer, **settings):
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(**settings)
        net.inp = nengo.Node(np.ones(100))
        node = nengo_jax.TensorNode(layer, shape_in=(100,), pass_time=False)
        nengo.Connection(net.inp, node, synapse=None)
        net.p = nengo.Probe(node)
    return net


def test_dropout_in_fit_and_not_in_predict():
    """Measured on NengoDL 3.6 (Dropout(0.5), inputs of ones, zero targets,
    SGD(0)): fit's losses are about 2 (half the values are 2, half 0) and differ
    between epochs (2.013, 2.007, 2.097: new masks each step); evaluate's is
    1.0; predict returns the input."""
    net = dropout_net(keras.layers.Dropout(0.5))
    with nengo_jax.Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        sim.compile(keras.optimizers.SGD(0.0), loss={net.p: "mse"})
        x, y = {net.inp: np.ones((4, 3, 100))}, {net.p: np.zeros((4, 3, 100))}
        losses = sim.fit(x, y, epochs=3, verbose=0).history["loss"]
        assert_allclose(losses, [2, 2, 2], atol=0.25, rtol=0)
        assert len(set(losses)) == 3
        assert sim.evaluate(x, y, verbose=0)["loss"] == pytest.approx(1.0)
        np.testing.assert_array_equal(sim.predict(x)[net.p], np.ones((4, 3, 100)))


def run_random(make, seed, reset=False):
    net = dropout_net(make(), learning_phase=True)
    with nengo_jax.Simulator(
        net, minibatch_size=2, seed=seed, progress_bar=False
    ) as sim:
        sim.run_steps(3)
        first = sim.data[net.p].copy()
        if reset:
            sim.reset()
            sim.run_steps(3)
            return first, sim.data[net.p].copy()
    return first


seed_gen = keras.random.SeedGenerator(3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.Dropout(0.5),
        lambda: keras.layers.GaussianNoise(1.0, seed=1),
        lambda: lambda x: x + keras.random.normal(x.shape, seed=seed_gen),
    ],
    ids=["dropout", "noise", "function"],
)
def test_random_numbers(make):
    """Random numbers in a TensorNode, as NengoDL 3.6 draws them (measured with
    learning_phase=True, minibatch_size 2, 3 steps): new ones each step and for
    each batch item; the same for a Simulator of the same seed (also for a new
    network), others for another seed, even where the layer has its own seed."""
    state = np.array(seed_gen.state.value)
    out, after_reset = run_random(make, seed=0, reset=True)
    assert not np.array_equal(out[:, 0], out[:, 1])
    assert not np.array_equal(out[0], out[1])
    if "Dropout" in repr(make()):
        assert set(np.unique(out)) == {0.0, 2.0}
    else:
        assert 0.5 < np.std(out) < 1.5
    np.testing.assert_array_equal(run_random(make, seed=0), out)
    assert not np.array_equal(run_random(make, seed=1), out)
    # a deliberate difference: as in Nengo, a reset Simulator repeats its run
    np.testing.assert_array_equal(after_reset, out)
    # nothing traced is left in the seed generator
    np.testing.assert_array_equal(seed_gen.state.value, state)


def test_layer_updates_are_not_kept():
    """NengoDL keeps a BatchNormalization layer's moving statistics from fit;
    nengo_jax warns that it does not."""
    layer = keras.layers.BatchNormalization()
    net = dropout_net(layer)
    with nengo_jax.Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        sim.compile(keras.optimizers.SGD(0.0), loss={net.p: "mse"})
        x = {net.inp: np.random.RandomState(0).normal(5, 2, size=(4, 1, 100))}
        with pytest.warns(UserWarning, match="moving_mean.*does not keep"):
            sim.fit(x, {net.p: np.zeros((4, 1, 100))}, verbose=0)
    np.testing.assert_array_equal(layer.moving_mean.value, np.zeros(100))


def test_layer_str():
    """``str`` of a Layer as NengoDL 3.6 prints it."""
    assert str(nengo_jax.Layer(keras.layers.Dense(3, name="mydense"))) == (
        "Layer(mydense)"
    )
    assert str(nengo_jax.Layer(nengo.LIF())) == "Layer(LIF())"
    assert str(nengo_jax.Layer(nengo.RectifiedLinear(amplitude=2))) == (
        "Layer(RectifiedLinear(amplitude=2))"
    )
    assert str(nengo_jax.Layer(np.sin)) == "Layer(sin)"
    assert str(nengo_jax.Layer(lambda x: x)) == "Layer(<lambda>)"
