"""Builder for `SimTensorNode`: a TensorNode's JAX code inside the program."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
from nengo.exceptions import ValidationError

from nengo_jax.program.registry import OpBuilder, register
from nengo_jax.tensor_node import (
    SimTensorNode,
    call_tensor_func,
    is_layer,
    output_spec,
)


@register(SimTensorNode)
class SimTensorNodeBuilder(OpBuilder):
    """Implements ``output[...] = tensor_func(t, input)`` for each batch item.

    A Keras layer is called with its weights taken from the weight signals (so
    they are the Simulator's parameters, and train), and ``training`` set by
    the learning phase.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        node = op.node
        spec = output_spec(node, ctx.minibatch_size)
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
        self.variables = (
            list(node.tensor_func.weights) if is_layer(node.tensor_func) else []
        )

    def step(self, env):
        op, node = self.op, self.op.node
        B = env.minibatch_size
        t = env.read_batched(op.time).reshape(B)[0]
        x = None
        if op.input is not None:
            x = env.read_batched(op.input).reshape((B,) + tuple(node.shape_in))
        if self.variables:
            mapping = [
                (var, env.read(sig).astype(var.dtype))
                for var, sig in zip(self.variables, op.weights, strict=True)
            ]
            with keras.StatelessScope(state_mapping=mapping):
                y = call_tensor_func(node, t, x, training=env.training)
        else:
            y = call_tensor_func(node, t, x, training=env.training)
        env.write(op.output, jnp.asarray(y).reshape(B, -1))
