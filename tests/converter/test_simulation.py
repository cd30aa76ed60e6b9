"""Training a converted network and copying its weights back into Keras."""

import jax
import keras
import numpy as np

import nengo_jax
from nengo_jax.testing import assert_allclose
from tests.helpers import convert


def test_fit_lowers_loss_and_copies_back():
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    converter = convert(model)
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(32, 1, 16))
    y = np.stack([x[:, :, :8].mean(-1), x[:, :, 8:].mean(-1)], axis=-1)
    probe = converter.outputs[out]
    feed = {converter.inputs[inp]: x}
    with nengo_jax.Simulator(
        converter.net, minibatch_size=16, progress_bar=False
    ) as sim:
        names = [v.name for v in sim.keras_model.trainable_variables]
        assert names  # the kernels and biases
        sim.compile(keras.optimizers.Adam(0.01), loss={probe: "mse"})
        before = sim.evaluate(feed, {probe: y}, verbose=0)["loss"]
        sim.fit(feed, {probe: y}, epochs=20, verbose=0)
        after = sim.evaluate(feed, {probe: y}, verbose=0)["loss"]
        assert after < 0.5 * before
        trained = sim.predict(feed, verbose=0)[probe][:, 0]
        converter.copy_params_to_keras(sim)
    # the Keras model now computes what the trained network does (at full
    # float32 precision, as nengo_jax does: JAX's default is TF32 on GPUs)
    with jax.default_matmul_precision("highest"):
        assert_allclose(model(x.reshape(32, 4, 4, 1)), trained)
    assert nengo_jax.Converter(model).verify()
