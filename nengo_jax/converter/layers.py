"""The built-in layer converters: which Keras layer classes become what.

============================================  =========================================
Keras layer                                   Nengo objects
============================================  =========================================
Dense                                         trainable `nengo.Dense` transform (a 1x1
                                              `nengo.Convolution` on inputs of rank 2-3)
                                              and a trainable bias from the bias Node;
                                              the activation as below
Activation (relu, sigmoid, tanh, linear),     an Ensemble's neurons: RectifiedLinear,
ReLU, LeakyReLU                               Sigmoid/Tanh (``tau_ref=1``),
                                              `nengo_jax.LeakyReLU`; linear: nothing
Add, Subtract, Average                        fixed connections into a Node
Concatenate, Flatten, Reshape, Permute,       fixed connections between slices (or
Identity                                      nothing, where the order of the elements
                                              does not change)
BatchNormalization (``inference_only``)       a fixed scale and shift
Dropout, GaussianNoise, GaussianDropout,      nothing (``inference_only``)
AlphaDropout
TimeDistributed (``temporal_model``)          its layer's conversion
============================================  =========================================

Convolution, pooling, padding, cropping and upsampling are in `.spatial`.
Everything else (and the cases each converter's ``unsupported`` names) runs
in a `.TensorNode`.
"""

from __future__ import annotations

import keras
import nengo
import numpy as np

from nengo_jax.converter.activations import LINEAR
from nengo_jax.converter.base import LayerConverter
from nengo_jax.converter.converter import Converter
from nengo_jax.neurons import LeakyReLU

# -- weights ---------------------------------------------------------------------------


@Converter.register(keras.layers.Dense)
class ConvertDense(LayerConverter):
    """Dense: a trainable transform, a bias, and the layer's activation."""

    has_weights = True

    def unsupported(self):
        rank = len(self.input_shapes[0])
        if rank > 3:
            return f"Dense on inputs of rank {rank} (per example) is not supported"
        if getattr(self.layer, "quantization_mode", None):
            return "quantized Dense layers are not supported"
        if getattr(self.layer, "lora_enabled", False):
            return "Dense layers with LoRA are not supported"
        return None

    def convert_inputs(self, inputs):
        layer, shape = self.layer, self.input_shapes[0]
        kernel = self.weight("kernel")
        post, out = self.add_activation(layer.activation)
        if len(shape) == 1:
            transform = nengo.Dense(kernel.T.shape, init=kernel.T)

            def read(weights):
                return weights.T

        else:
            # the same weights at every position: a 1x1 convolution
            transform = nengo.Convolution(
                kernel.shape[1],
                shape,
                kernel_size=(1,) * (len(shape) - 1),
                strides=(1,) * (len(shape) - 1),
                init=kernel.reshape((1,) * (len(shape) - 1) + kernel.shape),
            )

            def read(weights):
                return weights.reshape(kernel.shape)

        conn = self.connect(inputs[0], post, transform, trainable=True)
        self.converter.track_weight(layer.kernel, conn, read)
        if layer.use_bias:
            positions = int(np.prod(shape[:-1]))
            bias = self.add_bias(post, self.weight("bias"), repeat=positions)
            self.converter.track_weight(layer.bias, bias, bias_value)
        return out


def bias_value(weights):
    """A bias variable's value from the weights of its connection from the bias Node."""
    return weights[:, 0]


# -- activations -----------------------------------------------------------------------


class ConvertActivationLayer(LayerConverter):
    """An activation layer: its input goes to neurons (identity if linear)."""

    def activation(self):
        return self.layer.activation

    def convert_inputs(self, inputs):
        activation = self.activation()
        if self.converter.neuron_type(activation, self.layer) is LINEAR:
            return inputs[0]
        post, out = self.add_activation(activation)
        self.connect(inputs[0], post)
        return out


@Converter.register(keras.layers.Activation)
class ConvertActivation(ConvertActivationLayer):
    """Activation: neurons for relu, sigmoid and tanh; nothing for linear."""


@Converter.register(keras.layers.ReLU)
class ConvertReLU(ConvertActivationLayer):
    """ReLU: RectifiedLinear neurons (LeakyReLU with a negative slope)."""

    def unsupported(self):
        layer = self.layer
        if layer.max_value is not None or layer.threshold != 0:
            return "ReLU with max_value or threshold is not supported"
        return None

    def activation(self):
        slope = float(self.layer.negative_slope)
        if slope == 0:
            return nengo.RectifiedLinear()
        return LeakyReLU(negative_slope=slope)


@Converter.register(keras.layers.LeakyReLU)
class ConvertLeakyReLU(ConvertActivationLayer):
    """LeakyReLU: `nengo_jax.LeakyReLU` neurons."""

    def activation(self):
        return LeakyReLU(negative_slope=float(self.layer.negative_slope))


# -- merging ---------------------------------------------------------------------------


class ConvertMerge(LayerConverter):
    """Add, Subtract, Average: inputs of one shape summed with fixed weights."""

    def weights(self, n):
        raise NotImplementedError

    def unsupported(self):
        if any(shape != self.output_shapes[0] for shape in self.input_shapes):
            return (
                f"inputs of shapes {self.input_shapes} need broadcasting, which is "
                "not supported"
            )
        return None

    def convert_inputs(self, inputs):
        out = self.add_node(self.output_size)
        for x, weight in zip(inputs, self.weights(len(inputs)), strict=True):
            self.connect(x, out, transform=weight)
        return out


@Converter.register(keras.layers.Add)
class ConvertAdd(ConvertMerge):
    def weights(self, n):
        return [1.0] * n


@Converter.register(keras.layers.Subtract)
class ConvertSubtract(ConvertMerge):
    def weights(self, n):
        return [1.0, -1.0]


@Converter.register(keras.layers.Average)
class ConvertAverage(ConvertMerge):
    def weights(self, n):
        return [1.0 / n] * n


# -- moving elements -------------------------------------------------------------------


class ConvertIndexMap(LayerConverter):
    """A layer that moves, copies or zeroes elements (no arithmetic).

    Subclasses give ``index_map``: NumPy applied to arrays of element indices
    (-1 for zeros). Fixed connections then copy each input's elements to their
    places; a layer that keeps the order of one input adds nothing.
    """

    def index_map(self, *ids):
        raise NotImplementedError

    def convert_inputs(self, inputs):
        ids, start = [], 0
        for shape in self.input_shapes:
            size = int(np.prod(shape))
            ids.append(np.arange(start, start + size).reshape(shape))
            start += size
        out_ids = np.asarray(self.index_map(*ids)).ravel()
        if len(inputs) == 1 and np.array_equal(out_ids, np.arange(start)):
            return inputs[0]
        out = self.add_node(out_ids.size)
        start = 0
        for x, shape in zip(inputs, self.input_shapes, strict=True):
            size = int(np.prod(shape))
            dst = np.flatnonzero((out_ids >= start) & (out_ids < start + size))
            src = out_ids[dst] - start
            if dst.size == out_ids.size and np.array_equal(src, np.arange(size)):
                self.connect(x, out)
            elif dst.size > 0:
                self.connect(x[src], out[dst])
            start += size
        return out


@Converter.register(keras.layers.Flatten)
class ConvertFlatten(ConvertIndexMap):
    def index_map(self, ids):
        if (
            getattr(self.layer, "data_format", None) == "channels_first"
            and ids.ndim > 1
        ):
            ids = np.moveaxis(ids, 0, -1)
        return ids.ravel()


@Converter.register(keras.layers.Reshape)
@Converter.register(keras.layers.Identity)
class ConvertReshape(ConvertIndexMap):
    def index_map(self, ids):
        return ids


@Converter.register(keras.layers.Permute)
class ConvertPermute(ConvertIndexMap):
    def unsupported(self):
        if self.converter.temporal_model:
            return "Permute in a temporal model is not supported"
        return None

    def index_map(self, ids):
        return np.transpose(ids, [d - 1 for d in self.layer.dims])


@Converter.register(keras.layers.Concatenate)
class ConvertConcatenate(ConvertIndexMap):
    def unsupported(self):
        if self.axis(self.layer.axis) is None:
            return "concatenation along the batch or time axis is not supported"
        return None

    def index_map(self, *ids):
        return np.concatenate(ids, axis=self.axis(self.layer.axis))


# -- inference-only layers -------------------------------------------------------------


@Converter.register(keras.layers.BatchNormalization)
class ConvertBatchNormalization(LayerConverter):
    """BatchNormalization with its moving statistics: a fixed scale and shift."""

    has_weights = True

    def unsupported(self):
        if not self.converter.inference_only:
            return (
                "BatchNormalization uses batch statistics in training; pass "
                "inference_only=True to convert it to a fixed scale and shift"
            )
        return None

    def convert_inputs(self, inputs):
        layer, shape = self.layer, self.input_shapes[0]
        axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
        axes = [self.axis(a) for a in axes]
        mean = self.weight("moving_mean")
        var = self.weight("moving_variance")
        gamma = self.weight("gamma") if layer.scale else np.ones_like(mean)
        beta = self.weight("beta") if layer.center else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + layer.epsilon)
        shift = beta - mean * scale
        bshape = [shape[i] if i in axes else 1 for i in range(len(shape))]
        scale = np.broadcast_to(scale.reshape(bshape), shape).ravel()
        shift = np.broadcast_to(shift.reshape(bshape), shape).ravel()
        out = self.add_node(self.output_size)
        self.connect(inputs[0], out, transform=scale)
        self.connect(
            self.converter.bias_node,
            out,
            transform=nengo.Dense((shift.size, 1), init=shift[:, None]),
        )
        return out


@Converter.register(keras.layers.Dropout)
@Converter.register(keras.layers.GaussianNoise)
@Converter.register(keras.layers.GaussianDropout)
@Converter.register(keras.layers.AlphaDropout)
class ConvertDropout(LayerConverter):
    """Dropout and noise layers: the identity when the model is not trained."""

    def unsupported(self):
        if not self.converter.inference_only:
            return (
                "it acts only in training; pass inference_only=True to drop it (the "
                "TensorNode applies it in training)"
            )
        return None

    def convert_inputs(self, inputs):
        return inputs[0]


@Converter.register(keras.layers.TimeDistributed)
class ConvertTimeDistributed(LayerConverter):
    """TimeDistributed in a temporal model: the conversion of its layer."""

    def inner(self):
        converter_class = self.converter.converter_for(self.layer.layer)
        if converter_class is None:
            return None
        inner = converter_class(self.layer.layer, self.converter)
        return inner.set_call(self.node_id, self.node)

    def unsupported(self):
        if not self.converter.temporal_model:
            return "TimeDistributed is converted only with temporal_model=True"
        inner = self.inner()
        if inner is None:
            return f"{type(self.layer.layer).__name__} has no native conversion"
        if type(inner).convert_inputs is LayerConverter.convert_inputs:
            return (
                f"the converter of {type(self.layer.layer).__name__} converts the "
                "layer's own calls (convert(node_id)), not a TimeDistributed call"
            )
        return inner.unsupported()

    @property
    def has_weights(self):
        return self.inner().has_weights

    def training_args(self):
        return self.inner().training_args() + super().training_args()

    def convert_inputs(self, inputs):
        return self.inner().convert_inputs(inputs)
