"""Builder for `SimTensorNode`: a TensorNode's JAX code inside the program."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax import lax
from nengo.exceptions import ValidationError

from nengo_jax.maths.conv import conv
from nengo_jax.program.registry import OpBuilder, register
from nengo_jax.tensor_node import (
    SimTensorNode,
    UpdateRecorder,
    call_tensor_func,
    is_layer,
    is_seed_state,
    trace_tensor_func,
)


@register(SimTensorNode)
class SimTensorNodeBuilder(OpBuilder):
    """Implements ``output[...] = tensor_func(t, input)`` for each batch item.

    The function runs statelessly, in a `keras.StatelessScope`: a Keras layer's
    weights are taken from the weight signals (so they are the Simulator's
    parameters, and train), and ``training`` is set by the learning phase. The
    `keras.random.SeedGenerator` states it draws from (a ``Dropout`` layer's,
    or one passed as ``seed=`` to ``keras.random``) are new keys each step,
    from the Simulator's PRNG key, so random numbers differ between steps and
    are reproducible with the Simulator's ``seed``.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        node = op.node
        # NengoDL calls a layer first with the learning phase (or False)
        training = bool(ctx.learning_phase)
        spec, updated = trace_tensor_func(node, ctx.minibatch_size, training)
        expected = (ctx.minibatch_size,) + tuple(node.shape_out)
        if tuple(spec.shape) != expected:
            raise ValidationError(
                f"{node}: tensor_func must return shape (minibatch_size="
                f"{ctx.minibatch_size},) + shape_out={tuple(node.shape_out)}, i.e. "
                f"{expected}; got {tuple(spec.shape)}",
                attr="tensor_func",
                obj=node,
            )
        if not np.issubdtype(np.dtype(spec.dtype), np.floating):
            raise ValidationError(
                f"{node}: tensor_func must return floating point values; got "
                f"dtype {np.dtype(spec.dtype)}",
                attr="tensor_func",
                obj=node,
            )
        func = node.tensor_func
        self.variables = list(func.weights) if is_layer(func) else []
        # the seeds it draws from: a layer's own (e.g. Dropout's, drawn only in
        # training), and any other it drew from when traced
        self.seeds = []
        found = list(func.variables) if is_layer(func) else []
        for var in found + updated:
            if is_seed_state(var) and not any(var is s for s in self.seeds):
                self.seeds.append(var)
        # a plain Keras convolution runs as `maths.conv.conv` (its gradients
        # are slow in the loop as Keras computes them)
        plain = is_plain_conv(func) and op.input is not None and not node.pass_time
        self.conv = func if plain else None
        try:
            index = ctx.model.operators.index(op)
        except ValueError:
            index = 0
        self.salt = zlib.crc32(f"SimTensorNode {index}".encode())

    @classmethod
    def fresh_writes(cls, op):
        return ((op.output, None),)

    def step(self, env):
        op, node = self.op, self.op.node
        B = env.minibatch_size
        t = env.read_batched(op.time).reshape(B)[0]
        x = None
        if op.input is not None:
            x = env.read_batched(op.input).reshape((B,) + tuple(node.shape_in))
        mapping = [
            (var, env.read(sig).astype(var.dtype))
            for var, sig in zip(self.variables, op.weights, strict=True)
        ]
        if self.seeds:
            key = env.rng_key(self.salt)
            mapping += [
                (var, key_bits(jax.random.fold_in(key, i)).astype(var.dtype))
                for i, var in enumerate(self.seeds)
            ]
        with UpdateRecorder(state_mapping=mapping) as scope:
            if self.conv is not None and x.dtype == self.conv.compute_dtype:
                y = keras_conv(self.conv, x)
            else:
                y = call_tensor_func(node, t, x, training=env.training)
        dropped = [var.path for var in scope.updated if not is_seed_state(var)]
        if dropped:
            self.ctx.warn_once(
                ("tensor_node_updates", node),
                f"{node}: tensor_func assigns the Keras variables "
                f"{sorted(set(dropped))} (e.g. a BatchNormalization layer's "
                "moving statistics, in training); nengo_jax does not keep these "
                "updates",
            )
        env.write(op.output, jnp.asarray(y).reshape(B, -1))


def key_bits(key):
    """The two 32-bit words of a PRNG key (a raw key already is them)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def is_plain_conv(func) -> bool:
    """Whether ``func`` is a Keras ``Conv1D``/``Conv2D``/``Conv3D`` that
    `keras_conv` computes (no groups, no dilation, "valid" or "same")."""
    return (
        type(func) in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
        and func.groups == 1
        and all(d == 1 for d in func.dilation_rate)
        and func.padding in ("valid", "same")
    )


def keras_conv(layer, x):
    """What the Keras convolution ``layer`` computes for ``x`` (its kernel and
    bias as the current `keras.StatelessScope` maps them), with the
    convolution done by `nengo_jax.maths.conv.conv`."""
    kernel = layer.kernel.value
    nd = kernel.ndim - 2
    last = layer.data_format == "channels_last"
    spatial = tuple(range(1, nd + 1)) if last else tuple(range(2, nd + 2))
    channel = nd + 1 if last else 1
    io = (0, channel) + spatial
    numbers = lax.ConvDimensionNumbers(io, (nd + 1, nd) + tuple(range(nd)), io)
    sizes = [x.shape[axis] for axis in spatial]
    padding = lax.padtype_to_pads(
        sizes, kernel.shape[:nd], layer.strides, layer.padding.upper()
    )
    y = conv(x, kernel, layer.strides, padding, (1,) * nd, numbers)
    if layer.use_bias:
        shape = [1] * (nd + 2)
        shape[channel] = layer.filters
        y = y + jnp.reshape(layer.bias.value, shape)
    return y if layer.activation is None else layer.activation(y)
