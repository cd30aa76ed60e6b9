"""Helpers of the converter tests: models, conversion checked by ``verify``."""

import keras
import numpy as np

import nengo_jax


def seq(shape, *layers):
    return keras.Sequential([keras.Input(shape), *layers])


def randomize(model, seed=0):
    """Random non-zero weights (Keras initializes biases to zero)."""
    rng = np.random.RandomState(seed)
    for var in model.weights:
        value = rng.uniform(-1, 1, size=var.shape)
        if "variance" in var.path:
            value = np.abs(value) + 0.5
        var.assign(value.astype(var.dtype))
    return model


def convert(model, **kwargs):
    converter = nengo_jax.Converter(randomize(model), **kwargs)
    assert converter.verify()
    return converter


def objects(converter, cls):
    net = converter.net
    everything = net.all_nodes + net.all_ensembles + net.all_connections
    return [obj for obj in everything if isinstance(obj, cls)]


def tensor_nodes(converter):
    return objects(converter, nengo_jax.TensorNode)


def predict(converter, x, n_steps=1, **sim_args):
    inp = converter.model.inputs[0]
    out = converter.model.outputs[0]
    with nengo_jax.Simulator(
        converter.net, minibatch_size=len(x), progress_bar=False, **sim_args
    ) as sim:
        data = np.repeat(np.reshape(x, (len(x), 1, -1)), n_steps, axis=1)
        result = sim.predict({converter.inputs[inp]: data}, verbose=0)
    return result[converter.outputs[out]][:, -1], result[converter.outputs[out]]


class Square(keras.layers.Layer):
    def call(self, x):
        return x**2

    def compute_output_shape(self, input_shape):
        return input_shape
