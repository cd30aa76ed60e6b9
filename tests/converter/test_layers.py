"""The built-in layer converters (`nengo_jax.converter.layers`).

The oracle is Keras: every converted network must compute the Keras model's
output (``verify`` runs both; rate neurons, no synapses, one step).
"""

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.converter.spatial import pool_matrix
from nengo_jax.testing import assert_allclose
from tests.helpers import (
    convert,
    converted,
    predict,
    randomize,
    seq,
    tensor_nodes,
)

NATIVE = {
    "dense": lambda: seq((5,), keras.layers.Dense(4)),
    "dense-no-bias": lambda: seq((5,), keras.layers.Dense(4, use_bias=False)),
    "dense-relu": lambda: seq((5,), keras.layers.Dense(4, activation="relu")),
    "dense-sigmoid": lambda: seq((5,), keras.layers.Dense(4, activation="sigmoid")),
    "dense-tanh": lambda: seq((5,), keras.layers.Dense(4, activation="tanh")),
    "dense-rank2": lambda: seq((3, 5), keras.layers.Dense(4, activation="relu")),
    "dense-rank3": lambda: seq((2, 3, 5), keras.layers.Dense(4)),
    "activation-relu": lambda: seq((6,), keras.layers.Activation("relu")),
    "activation-sigmoid": lambda: seq((6,), keras.layers.Activation("sigmoid")),
    "activation-tanh": lambda: seq((6,), keras.layers.Activation("tanh")),
    "activation-linear": lambda: seq(
        (6,), keras.layers.Dense(3), keras.layers.Activation("linear")
    ),
    "relu": lambda: seq((2, 3), keras.layers.ReLU()),
    "relu-slope": lambda: seq((6,), keras.layers.ReLU(negative_slope=0.2)),
    "leaky-relu": lambda: seq((6,), keras.layers.LeakyReLU(negative_slope=0.1)),
    "flatten": lambda: seq((2, 3, 2), keras.layers.Flatten(), keras.layers.Dense(2)),
    "reshape": lambda: seq((6,), keras.layers.Reshape((3, 2)), keras.layers.Dense(2)),
    "permute": lambda: seq((2, 3, 4), keras.layers.Permute((3, 1, 2))),
    "conv1d": lambda: seq((7, 2), keras.layers.Conv1D(3, 3, activation="relu")),
    "conv1d-same-strided": lambda: seq(
        (7, 2), keras.layers.Conv1D(3, 3, strides=2, padding="same")
    ),
    "conv2d": lambda: seq((6, 5, 2), keras.layers.Conv2D(3, (3, 2))),
    "conv2d-same-strided": lambda: seq(
        (6, 5, 2), keras.layers.Conv2D(3, 3, strides=2, padding="same")
    ),
    "conv2d-groups": lambda: seq((5, 5, 4), keras.layers.Conv2D(6, 3, groups=2)),
    "avgpool1d": lambda: seq((7, 2), keras.layers.AveragePooling1D(2)),
    "avgpool1d-same": lambda: seq(
        (7, 2), keras.layers.AveragePooling1D(3, strides=2, padding="same")
    ),
    "avgpool2d": lambda: seq((6, 5, 2), keras.layers.AveragePooling2D((2, 2))),
    "avgpool2d-same": lambda: seq(
        (5, 5, 2), keras.layers.AveragePooling2D(3, strides=2, padding="same")
    ),
    "global-avgpool1d": lambda: seq((5, 3), keras.layers.GlobalAveragePooling1D()),
    "global-avgpool2d": lambda: seq(
        (4, 3, 2), keras.layers.GlobalAveragePooling2D(keepdims=True)
    ),
    "zeropad1d": lambda: seq((4, 2), keras.layers.ZeroPadding1D((1, 2))),
    "zeropad2d": lambda: seq((3, 4, 2), keras.layers.ZeroPadding2D(((1, 0), (2, 1)))),
    "cropping2d": lambda: seq((5, 4, 2), keras.layers.Cropping2D(((1, 2), (0, 1)))),
    "upsampling1d": lambda: seq((3, 2), keras.layers.UpSampling1D(2)),
    "upsampling2d": lambda: seq((3, 2, 2), keras.layers.UpSampling2D((2, 3))),
    # (NengoDL 3.6 converts each of these natively, and its verify passes)
    "avgpool3d": lambda: seq((4, 5, 4, 2), keras.layers.AveragePooling3D(2)),
    "global-avgpool3d": lambda: seq(
        (4, 5, 4, 2), keras.layers.GlobalAveragePooling3D()
    ),
    "upsampling3d": lambda: seq((2, 3, 2, 2), keras.layers.UpSampling3D((2, 1, 2))),
    "conv2d-cf": lambda: seq(
        (3, 5, 4), keras.layers.Conv2D(2, 3, data_format="channels_first")
    ),
    "avgpool1d-cf": lambda: seq(
        (3, 5), keras.layers.AveragePooling1D(2, data_format="channels_first")
    ),
    "avgpool2d-cf": lambda: seq(
        (3, 5, 4), keras.layers.AveragePooling2D(2, data_format="channels_first")
    ),
    "global-avgpool1d-cf": lambda: seq(
        (3, 5), keras.layers.GlobalAveragePooling1D(data_format="channels_first")
    ),
    "global-avgpool2d-cf": lambda: seq(
        (3, 5, 4), keras.layers.GlobalAveragePooling2D(data_format="channels_first")
    ),
    "upsampling2d-cf": lambda: seq(
        (3, 5, 4), keras.layers.UpSampling2D((2, 3), data_format="channels_first")
    ),
    "upsampling3d-cf": lambda: seq(
        (2, 3, 2, 2),
        keras.layers.UpSampling3D((2, 1, 2), data_format="channels_first"),
    ),
    "zeropad2d-cf": lambda: seq(
        (3, 5, 4), keras.layers.ZeroPadding2D(1, data_format="channels_first")
    ),
    # (beyond NengoDL: its channels_first Conv3D fails to run, and it refuses
    # "same" 3-D average pooling)
    "conv1d-cf-same": lambda: seq(
        (3, 7),
        keras.layers.Conv1D(4, 3, padding="same", data_format="channels_first"),
    ),
    "avgpool3d-same": lambda: seq(
        (3, 5, 4, 2), keras.layers.AveragePooling3D(2, padding="same")
    ),
    "global-avgpool3d-cf-keepdims": lambda: seq(
        (2, 3, 2, 4),
        keras.layers.GlobalAveragePooling3D(
            data_format="channels_first", keepdims=True
        ),
    ),
    "cropping3d-cf": lambda: seq(
        (2, 4, 3, 5),
        keras.layers.Cropping3D(((1, 0), (0, 1), (2, 1)), data_format="channels_first"),
    ),
}


@pytest.mark.parametrize("name", list(NATIVE))
def test_native_layers_match_keras(name):
    converter = convert(NATIVE[name]())
    assert not tensor_nodes(converter)


CONV3D = {
    # (NengoDL 3.6 converts these natively, and its verify passes)
    "conv3d": lambda: seq(
        (4, 5, 4, 2), keras.layers.Conv3D(2, (2, 3, 2), activation="relu")
    ),
    "conv3d-same-strided": lambda: seq(
        (4, 5, 4, 2), keras.layers.Conv3D(2, 3, strides=2, padding="same")
    ),
    # (NengoDL converts this one, but its network fails to run)
    "conv3d-cf": lambda: seq(
        (3, 3, 4, 2), keras.layers.Conv3D(2, 2, data_format="channels_first")
    ),
}


@pytest.mark.parametrize("name", list(CONV3D))
def test_conv3d_is_a_nengo_convolution(name, monkeypatch):
    # (fail_fast would run Nengo's own make_step, which refuses 3-D)
    monkeypatch.setitem(nengo.rc["nengo.Simulator"], "fail_fast", "False")
    converter = convert(CONV3D[name]())
    assert not tensor_nodes(converter)
    (conv,) = [c for c in converter.net.all_connections if c.pre_obj.label != "bias"][
        :1
    ]
    assert isinstance(conv.transform, nengo.Convolution)
    assert conv.transform.dimensions == 3


def test_dense_is_a_trainable_transform_and_bias():
    model = seq((5,), keras.layers.Dense(4, activation="relu"))
    converter = convert(model)
    dense = model.layers[0]
    neurons = converter.layers[dense]
    assert isinstance(neurons, nengo.ensemble.Neurons)
    assert neurons.ensemble.n_neurons == 4
    assert isinstance(neurons.ensemble.neuron_type, nengo.RectifiedLinear)
    conns = [c for c in converter.net.all_connections if c.post_obj is neurons]
    kernel, bias = sorted(conns, key=lambda c: c.pre_obj.label == "bias")
    assert isinstance(kernel.transform, nengo.Dense)
    assert_allclose(kernel.transform.init, np.asarray(dense.kernel.value).T)
    assert bias.pre_obj.label == "bias"
    assert_allclose(bias.transform.init[:, 0], np.asarray(dense.bias.value))
    config = converter.net.config
    assert config[kernel].trainable and config[bias].trainable
    assert config[neurons.ensemble].trainable is False
    dense.trainable = False
    converter = nengo_jax.Converter(model)
    conns = converted(converter, nengo.Connection)
    assert not any(converter.net.config[c].trainable for c in conns)


def merge_model(layer, n=2, shape=(3, 2)):
    inputs = [keras.Input(shape) for _ in range(n)]
    hidden = [keras.layers.Dense(2)(x) for x in inputs]
    return keras.Model(inputs, layer(hidden))


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Add,
        keras.layers.Average,
        keras.layers.Subtract,
        keras.layers.Concatenate,
        lambda: keras.layers.Concatenate(axis=1),
    ],
)
def test_merge_layers(layer):
    model = merge_model(layer(), n=2)
    converter = convert(model)
    assert not tensor_nodes(converter)
    assert len(converter.inputs) == 2  # each input once, as NengoDL counts them


def test_three_way_average():
    converter = convert(merge_model(keras.layers.Average(), n=3))
    assert not tensor_nodes(converter)


def test_pool_matrix_averages_valid_elements():
    indices, values, out = pool_matrix((3,), 1, (2,), (2,), "same")
    assert out == (2,)
    matrix = np.zeros((2, 3))
    matrix[indices[:, 0], indices[:, 1]] = values
    assert_allclose(matrix, [[0.5, 0.5, 0], [0, 0, 1]])


def test_max_pooling():
    model = randomize(seq((4, 4, 2), keras.layers.MaxPooling2D(2)))
    # by default it runs in a TensorNode, which computes the max
    converter = convert(model)
    assert len(tensor_nodes(converter)) == 1
    with pytest.raises(ValidationError, match="max_to_avg_pool=True"):
        nengo_jax.Converter(model, allow_fallback=False)
    # max_to_avg_pool: the average of the window
    converter = nengo_jax.Converter(model, max_to_avg_pool=True)
    assert not tensor_nodes(converter)
    avg = seq((4, 4, 2), keras.layers.AveragePooling2D(2))
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 4, 4, 2))
    with pytest.raises(ValidationError, match="differs"):
        converter.verify(inputs=x)  # the max differs from the mean
    assert_allclose(
        predict(converter, x)[0], np.asarray(avg(x)).reshape(2, -1), atol=1e-6
    )


def test_global_max_pooling_with_max_to_avg_pool():
    model = randomize(seq((5, 3), keras.layers.GlobalMaxPooling1D()))
    converter = nengo_jax.Converter(model, max_to_avg_pool=True)
    x = np.random.RandomState(1).uniform(-1, 1, size=(2, 5, 3))
    assert_allclose(predict(converter, x)[0], x.mean(axis=1), atol=1e-6)


def test_batch_normalization():
    model = seq(
        (3, 2),
        keras.layers.BatchNormalization(),
        keras.layers.BatchNormalization(axis=1, center=False),
    )
    converter = convert(model, inference_only=True)
    assert not tensor_nodes(converter)
    # in a trainable network it uses batch statistics: a TensorNode
    converter = convert(model)
    assert len(tensor_nodes(converter)) == 2
    with pytest.raises(ValidationError, match="inference_only=True"):
        nengo_jax.Converter(model, allow_fallback=False)


def test_dropout_is_identity_in_inference():
    model = seq((4,), keras.layers.Dense(3), keras.layers.Dropout(0.5))
    assert not tensor_nodes(convert(model, inference_only=True))
    assert len(tensor_nodes(convert(model))) == 1
