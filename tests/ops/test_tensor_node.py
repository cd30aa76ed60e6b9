"""The TensorNode builder: plain Keras convolutions run as maths.conv.conv."""

import keras
import nengo
import numpy as np

import nengo_jax
from nengo_jax.testing import assert_allclose


def test_keras_conv_in_tensor_node(monkeypatch):
    """A Keras Conv2D in a TensorNode gives the layer's own output, and trains."""
    import nengo_jax.ops.tensor_node as builder

    traced = []
    keras_conv = builder.keras_conv
    monkeypatch.setattr(
        builder, "keras_conv", lambda *args: traced.append(1) or keras_conv(*args)
    )
    layer = keras.layers.Conv2D(
        4, 3, strides=2, padding="same", activation="relu", data_format="channels_first"
    )
    x = np.random.RandomState(0).uniform(-1, 1, size=(4, 1, 2 * 7 * 7))
    with nengo.Network(seed=0) as net:
        inp = nengo.Node(np.zeros(2 * 7 * 7))
        out = nengo_jax.Layer(layer)(inp, shape_in=(2, 7, 7))
        probe = nengo.Probe(out)
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        expected = np.asarray(layer(x.reshape(4, 2, 7, 7))).reshape(4, 1, -1)
        assert_allclose(sim.predict({inp: x})[probe], expected, atol=1e-6)
        assert traced  # (computed by maths.conv.conv, not by the layer's call)
        sim.compile(keras.optimizers.SGD(1.0), loss="mse")
        history = sim.fit(
            {inp: x}, {probe: np.ones_like(expected)}, epochs=10, verbose=0
        )
        assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
        # the layer holds the trained weights, and computes what the Simulator does
        trained = np.asarray(layer(x.reshape(4, 2, 7, 7))).reshape(4, 1, -1)
        assert_allclose(sim.predict({inp: x})[probe], trained, atol=1e-6)
