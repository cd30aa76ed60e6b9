"""The built-in converters of layers over spatial axes: convolution, pooling,
padding, cropping and upsampling, channels last or first.

============================================  =========================================
Keras layer                                   Nengo objects
============================================  =========================================
Conv1D, Conv2D, Conv3D                        trainable `nengo.Convolution` (strides,
                                              "valid"/"same", groups, either
                                              ``data_format``) and a bias per channel
AveragePooling1D/2D/3D,                       a fixed `nengo.transforms.Sparse` average
GlobalAveragePooling1D/2D/3D; MaxPooling      (padding excluded, as Keras does)
and GlobalMaxPooling with ``max_to_avg_pool``
ZeroPadding1D/2D/3D, Cropping1D/2D/3D,        fixed connections between slices
UpSampling1D/2D/3D (nearest)
============================================  =========================================
"""

from __future__ import annotations

import itertools

import keras
import nengo
import numpy as np

from nengo_jax.converter.base import LayerConverter
from nengo_jax.converter.converter import Converter
from nengo_jax.converter.layers import ConvertIndexMap, bias_value


def channels_last(layer) -> bool:
    """Whether ``layer`` has its channels on the last axis (Keras's default)."""
    return getattr(layer, "data_format", None) in (None, "channels_last")


def spatial_axes(shape, last=True) -> tuple:
    """The spatial axes of one example of ``shape`` (channels last or first)."""
    return tuple(range(len(shape) - 1)) if last else tuple(range(1, len(shape)))


# -- convolution -----------------------------------------------------------------------


class ConvertConv(LayerConverter):
    """Conv1D/2D/3D: a trainable `nengo.Convolution`, a bias per channel."""

    has_weights = True

    def unsupported(self):
        layer = self.layer
        if any(d != 1 for d in layer.dilation_rate):
            return f"dilation_rate={layer.dilation_rate} is not supported"
        if layer.padding not in ("valid", "same"):
            return f"padding={layer.padding!r} is not supported"
        return None

    def convert_inputs(self, inputs):
        layer = self.layer
        last = channels_last(layer)
        kernel = self.weight("kernel")
        post, out = self.add_activation(layer.activation)
        transform = nengo.Convolution(
            layer.filters,
            self.input_shapes[0],
            kernel_size=tuple(layer.kernel_size),
            strides=tuple(layer.strides),
            padding=layer.padding,
            channels_last=last,
            init=kernel,
            groups=layer.groups,
        )
        conn = self.connect(inputs[0], post, transform, trainable=True)
        self.converter.track_weight(layer.kernel, conn)
        if layer.use_bias:
            positions = self.output_size // layer.filters
            bias = self.add_bias(
                post, self.weight("bias"), repeat=positions, channels_last=last
            )
            self.converter.track_weight(layer.bias, bias, bias_value)
        return out


for _cls in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D):
    Converter.register(_cls)(ConvertConv)


# -- pooling ---------------------------------------------------------------------------


def pool_matrix(spatial, channels, pool, strides, padding, channels_last=True):
    """The sparse matrix of average pooling.

    Returns ``(indices, values, out_spatial)``: ``indices`` of shape (nnz, 2) as
    (output, input) element pairs, and the weights (1 over the number of input
    positions in the window, padding excluded, as Keras averages). Elements
    are in C order with the channels on the last axis, or the first if not
    ``channels_last``.
    """
    out_spatial, starts = [], []
    for n, p, s in zip(spatial, pool, strides, strict=True):
        if padding == "valid":
            o, before = (n - p) // s + 1, 0
        else:
            o = -(-n // s)
            before = max((o - 1) * s + p - n, 0) // 2
        out_spatial.append(o)
        starts.append((s, before, p, n))
    n_out, n_in = int(np.prod(out_spatial)), int(np.prod(spatial))
    channel = np.arange(channels)

    def flat(position, n_positions):
        if channels_last:
            return position * channels + channel
        return channel * n_positions + position

    rows, cols, values = [], [], []
    for out_pos in np.ndindex(*out_spatial):
        ranges = [
            range(max(o * s - b, 0), min(o * s - b + p, n))
            for o, (s, b, p, n) in zip(out_pos, starts, strict=True)
        ]
        window = list(itertools.product(*ranges))
        out_flat = np.ravel_multi_index(out_pos, out_spatial)
        for in_pos in window:
            in_flat = np.ravel_multi_index(in_pos, spatial)
            rows.append(flat(out_flat, n_out))
            cols.append(flat(in_flat, n_in))
            values.append(np.full(channels, 1.0 / len(window)))
    indices = np.stack([np.concatenate(rows), np.concatenate(cols)], axis=1)
    return indices, np.concatenate(values), tuple(out_spatial)


class ConvertPooling(LayerConverter):
    """Average pooling (and max pooling with ``max_to_avg_pool``)."""

    is_max = False
    is_global = False

    def unsupported(self):
        if self.is_max and not self.converter.max_to_avg_pool:
            return (
                "max pooling has no Nengo equivalent; pass max_to_avg_pool=True to "
                "convert it to average pooling"
            )
        return None

    def convert_inputs(self, inputs):
        shape = self.input_shapes[0]
        last = channels_last(self.layer)
        spatial = tuple(shape[a] for a in spatial_axes(shape, last))
        channels = shape[-1] if last else shape[0]
        if self.is_global:
            pool, strides, padding = spatial, spatial, "valid"
        else:
            pool = tuple(self.layer.pool_size)
            strides = tuple(self.layer.strides)
            padding = self.layer.padding
        indices, values, _ = pool_matrix(
            spatial, channels, pool, strides, padding, channels_last=last
        )
        out = self.add_node(self.output_size)
        transform = nengo.transforms.Sparse(
            (self.output_size, int(np.prod(shape))), indices=indices, init=values
        )
        self.connect(inputs[0], out, transform)
        return out


for _dims in ("1D", "2D", "3D"):
    for _prefix, _max, _global in [
        ("AveragePooling", False, False),
        ("MaxPooling", True, False),
        ("GlobalAveragePooling", False, True),
        ("GlobalMaxPooling", True, True),
    ]:
        _cls = getattr(keras.layers, _prefix + _dims)
        Converter.register(_cls)(
            type(
                f"Convert{_cls.__name__}",
                (ConvertPooling,),
                {"is_max": _max, "is_global": _global, "__module__": __name__},
            )
        )


# -- padding, cropping, upsampling -----------------------------------------------------


def _pairs(value, n) -> list:
    """Keras padding/cropping arguments as one (before, after) pair per axis."""
    if isinstance(value, int):
        return [(value, value)] * n
    value = list(value)
    if n == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [tuple(value)]
    return [(v, v) if isinstance(v, int) else tuple(v) for v in value]


class ConvertSpatial(ConvertIndexMap):
    """Padding, cropping and upsampling: per spatial axis, channels last or first."""

    @property
    def axes(self) -> tuple:
        return spatial_axes(self.input_shapes[0], channels_last(self.layer))


@Converter.register(keras.layers.ZeroPadding1D)
@Converter.register(keras.layers.ZeroPadding2D)
@Converter.register(keras.layers.ZeroPadding3D)
class ConvertZeroPadding(ConvertSpatial):
    def index_map(self, ids):
        pads = [(0, 0)] * ids.ndim
        for axis, pad in zip(
            self.axes, _pairs(self.layer.padding, len(self.axes)), strict=True
        ):
            pads[axis] = pad
        return np.pad(ids, pads, constant_values=-1)


@Converter.register(keras.layers.Cropping1D)
@Converter.register(keras.layers.Cropping2D)
@Converter.register(keras.layers.Cropping3D)
class ConvertCropping(ConvertSpatial):
    def index_map(self, ids):
        index = [slice(None)] * ids.ndim
        crops = _pairs(self.layer.cropping, len(self.axes))
        for axis, (a, b) in zip(self.axes, crops, strict=True):
            index[axis] = slice(a, ids.shape[axis] - b)
        return ids[tuple(index)]


@Converter.register(keras.layers.UpSampling1D)
@Converter.register(keras.layers.UpSampling2D)
@Converter.register(keras.layers.UpSampling3D)
class ConvertUpSampling(ConvertSpatial):
    def unsupported(self):
        interpolation = getattr(self.layer, "interpolation", "nearest")
        if interpolation != "nearest":
            return f"interpolation={interpolation!r} (only 'nearest' is supported)"
        return None

    def index_map(self, ids):
        size = self.layer.size
        size = (size,) * len(self.axes) if isinstance(size, int) else tuple(size)
        for axis, repeat in zip(self.axes, size, strict=True):
            ids = np.repeat(ids, repeat, axis=axis)
        return ids
