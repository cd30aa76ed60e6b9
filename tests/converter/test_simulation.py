"""`verify`, training a converted network and copying its weights back into Keras."""

import inspect

import jax
import keras
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.converter import LayerConverter
from nengo_jax.testing import assert_allclose
from tests.helpers import convert, randomize, seq


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


def test_verify_tolerances_are_nengo_dl_s():
    # NengoDL 3.6: verify(training=False, inputs=None, atol=1e-8, rtol=1e-5),
    # rtol relative to the Nengo output; a bias changed by 3e-6 under
    # outputs of about 3 passes
    defaults = inspect.signature(nengo_jax.Converter.verify).parameters
    assert (defaults["atol"].default, defaults["rtol"].default) == (1e-8, 1e-5)
    model = seq((3,), keras.layers.Dense(2, kernel_initializer="ones"))
    converter = nengo_jax.Converter(model)
    ones = np.ones((2, 3))
    bias = model.layers[0].bias
    bias.assign([3e-6, 0.0])
    assert converter.verify(inputs=ones)
    bias.assign([1e-4, 0.0])
    with pytest.raises(ValidationError, match=r"differs from the Keras model's by"):
        converter.verify(inputs=ones)
    assert converter.verify(inputs=ones, rtol=1e-4)


class WeightedScale(keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def scale_model():
    inp = keras.Input((3,))
    out = WeightedScale()(keras.layers.Dense(3, activation="relu")(inp))
    return keras.Model(inp, out)


def test_verify_training_counts_parameters():
    # NengoDL 3.6, with this converter: verify() passes either way;
    # verify(training=True) raises "Number of trainable parameters in Nengo
    # network (12) does not match number of trainable parameters in Keras
    # model (15)" unless the connection holding w trains
    model = scale_model()
    for trainable in (True, False):

        class ConvertWeightedScale(LayerConverter):
            has_weights = True
            train = trainable

            def convert(self, node_id):
                output = self.add_nengo_obj(node_id)
                weights = np.asarray(self.layer.w)
                self.add_connection(
                    node_id, output, transform=weights, trainable=self.train
                )
                return output

        nengo_jax.Converter.register(WeightedScale)(ConvertWeightedScale)
        try:
            converter = nengo_jax.Converter(model, allow_fallback=False)
        finally:
            del nengo_jax.Converter.converters[WeightedScale]
        assert converter.verify()
        if trainable:
            assert converter.verify(training=True)
        else:
            with pytest.raises(ValidationError, match=r"has 12 trainable .* model 15"):
                converter.verify(training=True)


def test_verify_training_trains_both():
    # NengoDL 3.6: a converter that trains a bias where the layer trains a
    # weight passes verify() but not verify(training=True)
    class ConvertWithBias(LayerConverter):
        has_weights = True

        def convert(self, node_id):
            output = self.add_nengo_obj(node_id, biases=np.zeros(3))
            self.add_connection(node_id, output)
            return output

    model = randomize(scale_model())
    model.layers[-1].w.assign(np.ones(3))
    nengo_jax.Converter.register(WeightedScale)(ConvertWithBias)
    try:
        converter = nengo_jax.Converter(model, allow_fallback=False)
    finally:
        del nengo_jax.Converter.converters[WeightedScale]
    assert converter.verify()
    before = [np.array(w.value) for w in model.weights]
    with pytest.raises(ValidationError, match="after training both"):
        converter.verify(training=True)
    # (unlike NengoDL, which trains the Keras model in place)
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, np.asarray(new.value))
    # a faithful conversion still matches after training
    assert nengo_jax.Converter(model).verify(training=True)
