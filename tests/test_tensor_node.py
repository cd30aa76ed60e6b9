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
