"""Convolutions whose gradients XLA computes fast on the CPU inside a loop.

The gradients of `jax.lax.conv_general_dilated` are convolutions with unusual
dimension orders (batch and feature axes swapped). Outside a loop, XLA's CPU
compiler rewrites them into its fast (Eigen) layout; inside the body of a
``while`` loop (every `jax.lax.scan`, so every simulation) it does not, and
they run through a slow generic loop: training a small convolutional network
through time was 10-20x slower than the same gradients outside the loop.

`conv` computes the same convolution with a custom gradient written as
convolutions in that fast layout (batch first, channels last, kernel as
``spatial + (in, out)``), with the transposes explicit. Padding and input
dilation are done by `jax.lax.pad`, so the core is always an unpadded strided
correlation. Its values and gradients equal `jax.lax.conv_general_dilated`'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def conv(x, w, strides, padding, lhs_dilation, dimension_numbers, precision=None):
    """`jax.lax.conv_general_dilated` (one feature group), with fast gradients.

    Parameters are those of `jax.lax.conv_general_dilated`: ``padding`` is a
    ``(before, after)`` pair per spatial axis (negative values crop), and
    ``dimension_numbers`` a `jax.lax.ConvDimensionNumbers`.
    """
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    nd = len(strides)
    # to channels last: (batch, spatial..., channel), kernel (spatial..., in, out)
    x = jnp.transpose(x, (lhs_spec[0],) + tuple(lhs_spec[2:]) + (lhs_spec[1],))
    w = jnp.transpose(w, tuple(rhs_spec[2:]) + (rhs_spec[1], rhs_spec[0]))
    config = [(0, 0, 0)]
    for (before, after), dilation in zip(padding, lhs_dilation, strict=True):
        config.append((before, after, dilation - 1))
    x = lax.pad(x, jnp.zeros((), x.dtype), config + [(0, 0, 0)])
    y = _valid_conv(x, w, tuple(strides), precision)
    # back to the output's layout
    back = [0] * (nd + 2)
    back[out_spec[0]] = 0
    back[out_spec[1]] = nd + 1
    for i, axis in enumerate(out_spec[2:]):
        back[axis] = i + 1
    return jnp.transpose(y, back)


def _numbers(nd: int) -> tuple:
    spatial = "DHW"[-nd:] if nd <= 3 else None
    if spatial is None:
        raise ValueError(f"conv supports 1 to 3 spatial axes; got {nd}")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _valid_conv(x, w, strides, precision):
    """Unpadded strided correlation, channels last, kernel ``spatial + (in, out)``."""
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        "VALID",
        dimension_numbers=_numbers(len(strides)),
        precision=precision,
    )


def _valid_conv_fwd(x, w, strides, precision):
    return _valid_conv(x, w, strides, precision), (x, w)


def _valid_conv_bwd(strides, precision, residuals, g):
    x, w = residuals
    nd = len(strides)
    kernel = w.shape[:nd]
    numbers = _numbers(nd)
    spatial = tuple(range(1, nd + 1))
    # dW[k, i, o] = sum over batch and output positions p of
    # x[b, p * stride + k, i] g[b, p, o]: a correlation of x (channels as the
    # batch, batch as the channels) with g dilated by the strides
    dw = lax.conv_general_dilated(
        jnp.transpose(x, (nd + 1,) + spatial + (0,)),
        jnp.transpose(g, spatial + (0, nd + 1)),
        (1,) * nd,
        "VALID",
        rhs_dilation=strides,
        dimension_numbers=numbers,
        precision=precision,
    )
    dw = dw[(slice(None),) + tuple(slice(0, k) for k in kernel)]
    dw = jnp.transpose(dw, spatial + (0, nd + 1))
    # dX: g dilated by the strides, padded to full, correlated with the
    # flipped kernel (out -> in); the rows the strides skipped get zeros
    flipped = jnp.swapaxes(jnp.flip(w, tuple(range(nd))), -1, -2)
    pads = [
        (k - 1, k - 1 + (size - k) % s)
        for k, size, s in zip(kernel, x.shape[1:-1], strides, strict=True)
    ]
    dx = lax.conv_general_dilated(
        g,
        flipped,
        (1,) * nd,
        pads,
        lhs_dilation=strides,
        dimension_numbers=numbers,
        precision=precision,
    )
    return dx, dw


_valid_conv.defvjp(_valid_conv_fwd, _valid_conv_bwd)
