"""Builders for convolutions: ConvInc and ConvTransposeInc.

Nengo computes these in NumPy as 2-D correlations over sliding windows
(`nengo.builder.transforms.conv2d` and ``conv2d_gradx``). Here both become one
`jax.lax.conv_general_dilated` call with explicit padding chosen to reproduce
Nengo's "same" and "valid" padding exactly, for any number of spatial
dimensions (Nengo's reference simulator stops at two). Without feature groups
the call is `nengo_jax.maths.conv.conv`, whose gradients stay fast inside the
simulation loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from jax import lax
from nengo.builder.transforms import ConvInc, ConvTransposeInc
from nengo.exceptions import BuildError

from nengo_jax.maths.conv import conv
from nengo_jax.program.registry import BuildContext, OpBuilder, register


def forward_padding(
    in_size: int, out_size: int, kernel: int, stride: int, padding: str
) -> tuple[int, int]:
    """Zero padding ``(before, after)`` of a `.Convolution` along one axis.

    As Nengo's ``calc_pad``: "same" pads by the amount that the strided windows
    overhang the input, with the smaller half first; "valid" never pads.
    """
    if padding == "valid":
        return 0, 0
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


def transpose_padding(
    in_size: int, out_size: int, kernel: int, stride: int, padding: str
) -> tuple[int, int]:
    """Padding ``(before, after)`` of the stride-dilated input of a transposed conv.

    ``in_size`` is the transform's input (the forward convolution's output) and
    ``out_size`` its output. Correlating the dilated input, padded like this,
    with the spatially flipped kernel is the exact transpose of the forward
    `.Convolution` from ``out_size`` to ``in_size``: it matches Nengo's
    ``conv2d_gradx`` for every valid ``output_shape`` (``after`` may be negative,
    which crops).
    """
    before_fwd, _ = forward_padding(out_size, in_size, kernel, stride, padding)
    before = kernel - 1 - before_fwd
    dilated = (in_size - 1) * stride + 1
    return before, out_size + kernel - 1 - dilated - before


@dataclass(frozen=True)
class ConvPlan:
    """Static arguments of one `jax.lax.conv_general_dilated` call."""

    in_shape: tuple  # of X without the batch axis, in the transform's layout
    strides: tuple
    padding: tuple  # (before, after) per spatial axis
    lhs_dilation: tuple
    flip: bool  # flip the kernel's spatial axes (transposed convolution)
    groups: int
    dimension_numbers: lax.ConvDimensionNumbers


def conv_plan(op) -> ConvPlan:
    """Plan the convolution of a `.ConvInc` or `.ConvTransposeInc`."""
    conv = op.conv
    d = conv.dimensions
    spatial = tuple(range(1, d + 1)) if conv.channels_last else tuple(range(2, d + 2))
    channel = d + 1 if conv.channels_last else 1
    # X and Y share one layout: (batch, channel, spatial...) by axis number
    io_spec = (0, channel) + spatial
    # the kernel is ``kernel_size + (in_channels // groups, out_channels)``
    kernel_spec = (d + 1, d) + tuple(range(d))
    numbers = lax.ConvDimensionNumbers(io_spec, kernel_spec, io_spec)

    ins = conv.input_shape.spatial_shape
    outs = conv.output_shape.spatial_shape
    geometry = zip(ins, outs, conv.kernel_size, conv.strides, strict=True)
    if op.is_transpose:
        padding = tuple(
            transpose_padding(i, o, k, s, conv.padding) for i, o, k, s in geometry
        )
        strides, lhs_dilation = (1,) * d, tuple(conv.strides)
    else:
        padding = tuple(
            forward_padding(i, o, k, s, conv.padding) for i, o, k, s in geometry
        )
        strides, lhs_dilation = tuple(conv.strides), (1,) * d
    return ConvPlan(
        in_shape=tuple(conv.input_shape.shape),
        strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        flip=op.is_transpose,
        groups=1 if op.is_transpose else conv.groups,
        dimension_numbers=numbers,
    )


def check_conv(op) -> None:
    """Raise a `.BuildError` if the signals of ``op`` do not fit its transform."""
    conv = op.conv
    sizes = {"X": (op.X, conv.size_in), "Y": (op.Y, conv.size_out)}
    for name, (sig, size) in sizes.items():
        if sig.size != size:
            raise BuildError(
                f"{op}: signal {name} of {conv} must have {size} elements; "
                f"got shape {sig.shape}"
            )
    if op.W.shape != tuple(conv.kernel_shape):
        raise BuildError(
            f"{op}: the kernel W of {conv} must have shape {conv.kernel_shape}; "
            f"got {op.W.shape}"
        )


class GeneralConvIncBuilder(OpBuilder):
    """Implements ``Y[...] += conv(X, W)`` for ``X`` and ``Y`` flattened.

    ``X`` is reshaped to ``conv.input_shape`` and the result flattened from
    ``conv.output_shape`` (either channel layout). ``W`` has the shape
    ``kernel_size + (in_channels // groups, out_channels)``; a ``W`` with a
    batch axis (written by a learning rule) convolves each batch item with its
    own kernel.
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        check_conv(op)
        self.plan = conv_plan(op)

    def convolve(self, x, w):
        """``x`` (with a batch axis) convolved with ``w`` (without one)."""
        plan = self.plan
        if plan.flip:
            w = w[tuple(slice(None, None, -1) for _ in plan.strides)]
        if plan.groups == 1:
            return conv(
                x,
                w,
                plan.strides,
                plan.padding,
                plan.lhs_dilation,
                plan.dimension_numbers,
                precision=self.ctx.precision,
            )
        return lax.conv_general_dilated(
            x,
            w,
            window_strides=plan.strides,
            padding=plan.padding,
            lhs_dilation=plan.lhs_dilation,
            dimension_numbers=plan.dimension_numbers,
            feature_group_count=plan.groups,
            precision=self.ctx.precision,
        )

    def step(self, env):
        op, B = self.op, env.minibatch_size
        x = env.read_batched(op.X).reshape((B,) + self.plan.in_shape)
        w = env.read(op.W)
        if env.is_batched(op.W):
            y = jax.vmap(lambda x, w: self.convolve(x[None], w)[0])(x, w)
        else:
            y = self.convolve(x, w)
        env.inc(op.Y, y.reshape((B,) + op.Y.shape))


@register(ConvInc)
class ConvIncBuilder(GeneralConvIncBuilder):
    """Implements ``Y[...] += conv(X, W)``, Nengo's `.Convolution` (a correlation).

    With ``groups > 1``, output channel ``k`` sees only the input channels of
    group ``k // (out_channels // groups)``.
    """


@register(ConvTransposeInc)
class ConvTransposeIncBuilder(GeneralConvIncBuilder):
    """Implements ``Y[...] += conv_transpose(X, W)``, Nengo's `.ConvolutionTranspose`.

    The transpose of the `.Convolution` with the same kernel, strides and
    padding that maps ``conv.output_shape`` to ``conv.input_shape``: the input
    dilated by the strides, correlated with the spatially flipped kernel.
    """
