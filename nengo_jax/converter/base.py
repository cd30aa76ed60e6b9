"""`LayerConverter`, the base of every layer converter.

A layer converter turns one call of a Keras layer (a node of the Keras graph)
into Nengo objects. The output of every converted tensor is one Nengo object
(a passthrough Node, an Ensemble's neurons or a TensorNode) whose ``size_out``
is the number of elements of one example of the tensor, flattened in Keras's
order (C order, channels last).
"""

from __future__ import annotations

import nengo
import numpy as np
from nengo.base import ObjView
from nengo.ensemble import Neurons
from nengo.exceptions import ValidationError

from nengo_jax.converter.activations import LINEAR
from nengo_jax.tensor_node import TensorNode


class LayerConverter:
    """Converts one call of a Keras layer into Nengo objects.

    Subclass it and register the subclass with `.Converter.register` to convert
    a Keras layer class natively. A converter is made for each call of the
    layer in the model (a node of the Keras graph), inside the Nengo network
    the objects belong to.

    Parameters
    ----------
    layer : keras.layers.Layer or keras.Operation
        The Keras layer being converted.
    node : keras node
        The call of ``layer`` being converted (its input and output tensors).
    converter : Converter
        The converter, which holds the options and the network.

    Attributes
    ----------
    input_shapes : list of tuple
        The shape of one example of each input, without the batch axis (and
        without the time axis when ``temporal_model=True``).
    output_shapes : list of tuple
        The same for each output.
    """

    def __init__(self, layer, node, converter):
        self.layer = layer
        self.node = node
        self.converter = converter
        self.input_shapes = [converter.example_shape(t) for t in node.input_tensors]
        self.output_shapes = [converter.example_shape(t) for t in node.output_tensors]

    @property
    def output_shape(self) -> tuple:
        """(tuple) The shape of one example of the (single) output."""
        return self.output_shapes[0]

    @property
    def output_size(self) -> int:
        """(int) The number of elements of one example of the (single) output."""
        return int(np.prod(self.output_shape))

    def unsupported(self) -> str | None:
        """Why this layer cannot be converted natively, or None if it can.

        The converter falls back to a TensorNode (or, with
        ``allow_fallback=False``, raises an error quoting the reason).
        """
        return None

    def convert(self, inputs: list):
        """Add the layer's Nengo objects; return the output object.

        Parameters
        ----------
        inputs : list of NengoObject
            The Nengo object of each input tensor of the call.

        Returns
        -------
        NengoObject or list of NengoObject
            The object carrying each output tensor (a list for several outputs).
        """
        raise NotImplementedError

    def training_args(self) -> list:
        """The layer's regularizers and constraints that are set, as ``name=value``.

        They act only in training. A natively converted layer would drop them,
        so unless ``inference_only``, the converter runs such a layer in a
        `.TensorNode`, which keeps them (warning that it does so).
        """
        return _training_args(self.layer)

    # -- helpers for subclasses --------------------------------------------------------

    def axis(self, axis: int, rank: int = None) -> int | None:
        """A Keras axis of the full tensor as an axis of one example (None: none).

        Returns None for the batch (or time) axis.
        """
        lead = 2 if self.converter.temporal_model else 1
        rank = len(self.node.input_tensors[0].shape) if rank is None else rank
        axis = axis % rank - lead
        return None if axis < 0 else axis

    def weight(self, name: str) -> np.ndarray:
        """The current value of the layer's weight ``name`` as a NumPy array."""
        value = getattr(self.layer, name)
        return np.array(getattr(value, "value", value))

    def add_node(self, size: int, label: str = None) -> nengo.Node:
        """A passthrough Node of ``size`` elements (where inputs add up)."""
        return nengo.Node(size_in=size, label=label or self.layer.name)

    def connect(self, pre, post, transform=1, trainable=False) -> nengo.Connection:
        """Connect ``pre`` to ``post``.

        The connection gets the converter's ``synapse`` if ``pre`` is neurons and
        no synapse otherwise. Only ``trainable`` connections train (and only if
        the Keras layer is trainable).
        """
        base = pre.obj if isinstance(pre, ObjView) else pre
        synapse = self.converter.synapse if isinstance(base, Neurons) else None
        conn = nengo.Connection(pre, post, transform=transform, synapse=synapse)
        trainable = bool(trainable and getattr(self.layer, "trainable", True))
        self.converter.net.config[conn].trainable = trainable
        return conn

    def add_bias(self, post, bias, repeat=1, trainable=True):
        """Add ``bias`` (one value per channel) to every position of ``post``.

        The values live on a connection from the network's constant bias Node,
        so that they train. With ``repeat > 1``, ``post`` has ``repeat``
        positions of ``len(bias)`` channels each (channels last): the
        per-channel values go to a Node that a fixed connection copies to
        every position.
        """
        bias = np.asarray(bias, dtype=float)
        transform = nengo.Dense((bias.size, 1), init=bias[:, None])
        if repeat == 1:
            return self.connect(self.converter.bias_node, post, transform, trainable)
        channels = self.add_node(bias.size, label=f"{self.layer.name}.bias")
        conn = self.connect(self.converter.bias_node, channels, transform, trainable)
        self.connect(channels[np.tile(np.arange(bias.size), repeat)], post)
        return conn

    def add_activation(self, activation, size: int = None, shape: tuple = None):
        """Make the objects computing ``activation`` of a pre-activation.

        Parameters
        ----------
        activation : callable or nengo.neurons.NeuronType
            A Keras activation function or the neuron type it becomes.
        size : int
            Number of elements (default: the output size).
        shape : tuple
            Shape of one example (default: the output shape), for activations
            that need it (those computed by a TensorNode).

        Returns
        -------
        (post, output)
            ``post`` is where the pre-activation goes (connect into it);
            ``output`` carries the activation. Both are one passthrough Node
            for a linear activation, and an Ensemble's neurons for one with a
            neuron type. Otherwise ``post`` is a passthrough Node feeding a
            TensorNode ``output`` (with ``allow_fallback``).
        """
        shape = self.output_shape if shape is None else tuple(shape)
        size = int(np.prod(shape)) if size is None else size
        neuron_type = self.converter.neuron_type(activation, self.layer)
        if neuron_type is LINEAR:
            node = self.add_node(size)
            return node, node
        if neuron_type is not None:
            neurons = self.converter.add_neurons(size, neuron_type, self.layer)
            return neurons, neurons
        name = getattr(activation, "__name__", repr(activation))
        if not self.converter.allow_fallback:
            raise ValidationError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has the "
                f"activation {name!r}, which has no Nengo neuron type; pass "
                f"allow_fallback=True to compute it in a TensorNode, or map it to a "
                "neuron type in swap_activations",
                attr="allow_fallback",
            )
        node = self.add_node(size, label=f"{self.layer.name}.preactivation")
        func = _activation_func(activation)
        out = TensorNode(
            func, shape_in=shape, pass_time=False, label=f"{self.layer.name}.{name}"
        )
        self.connect(node, out)
        return node, out


def _activation_func(activation):
    def activation_func(x):
        return activation(x)

    activation_func.__name__ = getattr(activation, "__name__", "activation")
    return activation_func


def _training_args(layer) -> list:
    args = []
    for name, value in vars(layer).items():
        if value is None or name.startswith("_"):
            continue
        if not name.endswith(("_regularizer", "_constraint")):
            continue
        try:
            config = ", ".join(f"{k}={v!r}" for k, v in value.get_config().items())
            text = f"{type(value).__name__}({config})"
        except (AttributeError, NotImplementedError, TypeError):
            text = repr(value)
        args.append(f"{name}={text}")
    return args
