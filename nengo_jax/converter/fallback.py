"""The TensorNode fallback: a Keras layer call without a native conversion.

`FallbackLayer` runs the call (a Keras layer or operation) inside a
`.TensorNode`; `add_fallback` makes that TensorNode and its input
connections in the converter's network.
"""

from __future__ import annotations

import keras
import nengo
import numpy as np
from nengo.exceptions import ValidationError

from nengo_jax.tensor_node import TensorNode, takes_training


class FallbackLayer(keras.layers.Layer):
    """Runs one call of a Keras layer (or operation) inside a `.TensorNode`.

    The TensorNode's input is the concatenation of the call's flattened input
    tensors; the output is the concatenation of its flattened outputs. The
    wrapped layer's weights are this layer's weights, so they become Simulator
    parameters and train.

    Parameters
    ----------
    operation : keras.layers.Layer or keras.Operation
        What the Keras model calls.
    node : keras node
        The call (its arguments, with the input tensors in them).
    shapes : list of tuple
        Shape of one example of each input tensor (without batch and time axes).
    temporal : bool
        Whether the model has a time axis after the batch axis (each call of
        the TensorNode sees one step of it).
    """

    def __init__(self, operation, node, shapes, temporal=False):
        super().__init__(name=f"fallback_{operation.name}", trainable=True)
        self.operation = operation
        self.arguments = node.arguments
        self.tensors = list(node.input_tensors)
        self.shapes = [tuple(s) for s in shapes]
        self.temporal = temporal
        self.pass_training = isinstance(operation, keras.layers.Layer) and (
            takes_training(operation.call)
        )
        self.built = True

    def call(self, x, training=None):
        batch = keras.ops.shape(x)[0]
        lead = (batch, 1) if self.temporal else (batch,)
        parts, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            part = x[:, start : start + size]
            parts.append(keras.ops.reshape(part, lead + shape))
            start += size
        args, kwargs = self.arguments.fill_in(
            {id(t): part for t, part in zip(self.tensors, parts, strict=True)}
        )
        if self.pass_training and kwargs.get("training") is None:
            kwargs["training"] = training
        outputs = keras.tree.flatten(self.operation(*args, **kwargs))
        flat = [keras.ops.reshape(out, (batch, -1)) for out in outputs]
        return flat[0] if len(flat) == 1 else keras.ops.concatenate(flat, axis=1)


def add_fallback(converter, node, ins):
    """Run the Keras ``node`` (a call of a layer) in a TensorNode fed by ``ins``.

    Returns the TensorNode (or a view of it for each of several outputs).
    """
    layer = node.operation
    if not ins:
        raise ValidationError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no input "
            "tensors; the converter needs each layer to be fed by the model's "
            "inputs",
            attr="model",
        )
    shapes = [converter.example_shape(t) for t in node.input_tensors]
    sizes = [int(np.prod(s)) for s in shapes]
    wrapper = FallbackLayer(layer, node, shapes, temporal=converter.temporal_model)
    tensor_node = TensorNode(
        wrapper, shape_in=(sum(sizes),), pass_time=False, label=layer.name
    )
    # (its weights train as the layer's own ``trainable`` flags say)
    start = 0
    for obj, size in zip(ins, sizes, strict=True):
        post = tensor_node if len(ins) == 1 else tensor_node[start : start + size]
        synapse = converter.synapse if is_neurons(obj) else None
        conn = nengo.Connection(obj, post, synapse=synapse)
        converter.net.config[conn].trainable = False
        start += size
    outs = node.output_tensors
    if len(outs) == 1:
        return tensor_node
    views, start = [], 0
    for tensor in outs:
        size = int(np.prod(converter.example_shape(tensor)))
        views.append(tensor_node[start : start + size])
        start += size
    return views


def is_neurons(obj) -> bool:
    """Whether ``obj`` is an Ensemble's neurons (or a slice of them)."""
    obj = obj.obj if isinstance(obj, nengo.base.ObjView) else obj
    return isinstance(obj, nengo.ensemble.Neurons)
