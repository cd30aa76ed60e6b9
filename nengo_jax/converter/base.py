"""`LayerConverter`, the base of every layer converter.

A layer converter turns the calls of one Keras layer (the nodes of the Keras
graph that call it) into Nengo objects. Its API is NengoDL's: the `.Converter`
makes one per layer and calls ``convert(node_id)`` for each call, where
``node_id`` indexes the layer's calls (its inbound nodes); the converter finds
the call's inputs with ``get_input_obj``, makes its output with
``add_nengo_obj`` and connects them with ``add_connection``. The built-in
converters implement ``convert_inputs(inputs)`` instead, given the Nengo
object of each input.

The output of every converted tensor is one Nengo object (a passthrough Node,
an Ensemble's neurons or a TensorNode) whose ``size_out`` is the number of
elements of one example of the tensor, flattened in Keras's order (C order).
"""

from __future__ import annotations

import nengo
import numpy as np
from nengo.base import ObjView
from nengo.ensemble import Neurons
from nengo.exceptions import ValidationError

from nengo_jax.converter.activations import LINEAR
from nengo_jax.tensor_node import TensorNode


class UnconvertibleError(ValidationError, TypeError):
    """A layer (or activation) with no native conversion, and no fallback
    allowed: a `ValidationError` that is also the `TypeError` NengoDL raises
    (so either ``except`` catches it)."""


class LayerConverter:
    """Converts the calls of a Keras layer into Nengo objects.

    Subclass it and register the subclass with `.Converter.register` to convert
    a Keras layer class natively. Implement ``convert(node_id)`` (as in
    NengoDL) or ``convert_inputs(inputs)``.

    Parameters
    ----------
    layer : keras.layers.Layer or keras.Operation
        The Keras layer being converted.
    converter : Converter
        The converter, which holds the options and the network.

    Attributes
    ----------
    has_weights : bool
        Whether the conversion holds the layer's weights (class attribute):
        such a layer, called several times, needs ``split_shared_weights``.
    unsupported_args : list
        Layer attributes that must have their default value for the layer to
        convert (class attribute): a name (default None) or a
        ``(name, default)`` pair.
    unsupported_training_args : list
        The same, for attributes that are supported only with
        ``inference_only=True``.
    node_id : int
        Which call of the layer is being converted.
    node : keras node
        That call (its input and output tensors).
    """

    has_weights = False
    unsupported_args = []
    unsupported_training_args = []

    def __init__(self, layer, converter):
        self.layer = layer
        self.converter = converter
        self.node_id = None
        self.node = None

    def set_call(self, node_id: int, node=None) -> LayerConverter:
        """Make ``node`` (default: call ``node_id`` of the layer) the current call."""
        self.node_id = node_id
        self.node = self.layer._inbound_nodes[node_id] if node is None else node
        return self

    def _node(self, node_id):
        if node_id == self.node_id and self.node is not None:
            return self.node
        return self.layer._inbound_nodes[node_id]

    # -- the current call --------------------------------------------------------------

    @property
    def input_shapes(self) -> list:
        """(list of tuple) The shape of one example of each input of the call.

        Without the batch axis (and the time axis with ``temporal_model``).
        """
        return [self.converter.example_shape(t) for t in self.node.input_tensors]

    @property
    def output_shapes(self) -> list:
        """(list of tuple) The same for each output of the call."""
        return [self.converter.example_shape(t) for t in self.node.output_tensors]

    @property
    def output_size(self) -> int:
        """(int) The number of elements of one example of the (single) output."""
        return int(np.prod(self.output_shapes[0]))

    # -- checks ------------------------------------------------------------------------

    @classmethod
    def unsupported_values(cls, layer, converter) -> list:
        """The ``unsupported_args`` of ``layer`` without their default, as text."""
        args = list(cls.unsupported_args)
        if not converter.inference_only:
            args += list(cls.unsupported_training_args)
        found = []
        for arg in args:
            name, default = arg if isinstance(arg, tuple) else (arg, None)
            value = getattr(layer, name, default)
            try:
                differs = bool(value != default)
            except (TypeError, ValueError):
                differs = value is not default
            if differs:
                found.append(f"{name}={value!r} (only {default!r} is supported)")
        return found

    @classmethod
    def convertible(cls, layer, converter) -> bool:
        """Whether ``layer`` can be converted natively (as NengoDL's).

        By default: whether each of ``unsupported_args`` (and, unless
        ``inference_only``, ``unsupported_training_args``) has its default.
        """
        return not cls.unsupported_values(layer, converter)

    def unsupported(self) -> str | None:
        """Why the current call cannot be converted natively, or None if it can.

        The converter falls back to a TensorNode (or, with
        ``allow_fallback=False``, raises an error quoting the reason).
        """
        found = self.unsupported_values(self.layer, self.converter)
        if found:
            return ", ".join(found)
        if not self.convertible(self.layer, self.converter):
            return f"{type(self).__name__}.convertible returned False"
        return None

    def training_args(self) -> list:
        """The layer's regularizers and constraints that are set, as ``name=value``.

        They act only in training. A natively converted layer would drop them,
        so unless ``inference_only``, the converter runs such a layer in a
        `.TensorNode`, which keeps them (warning that it does so).
        """
        return _training_args(self.layer)

    # -- converting --------------------------------------------------------------------

    def convert(self, node_id: int):
        """Add the Nengo objects of call ``node_id``; return its output object.

        Parameters
        ----------
        node_id : int
            Which call of the layer (an index into its inbound nodes).

        Returns
        -------
        NengoObject or list of NengoObject
            The object carrying each output tensor (a list for several outputs).
        """
        node = self._node(node_id)
        inputs = [
            self.get_input_obj(node_id, i) for i in range(len(node.input_tensors))
        ]
        return self.convert_inputs(inputs)

    def convert_inputs(self, inputs: list):
        """Add the current call's Nengo objects, given its inputs; return its output.

        Parameters
        ----------
        inputs : list of NengoObject
            The Nengo object of each input tensor of the call.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement convert(node_id) or "
            "convert_inputs(inputs)"
        )

    # -- NengoDL's helpers, by call ----------------------------------------------------

    def input_shape(self, node_id: int, full_shape: bool = False):
        """The shape of the input of call ``node_id`` (a list for several inputs).

        Without the batch (and time) axes, unless ``full_shape``.
        """
        return self._shapes(self._node(node_id).input_tensors, full_shape)

    def output_shape(self, node_id: int, full_shape: bool = False):
        """The shape of the output of call ``node_id`` (a list for several)."""
        return self._shapes(self._node(node_id).output_tensors, full_shape)

    def _shapes(self, tensors, full_shape):
        if full_shape:
            shapes = [tuple(t.shape) for t in tensors]
        else:
            shapes = [self.converter.example_shape(t) for t in tensors]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_input_obj(self, node_id: int, tensor_idx: int = 0):
        """The Nengo object carrying input ``tensor_idx`` of call ``node_id``."""
        tensor = self._node(node_id).input_tensors[tensor_idx]
        return self.converter.tensor_obj(tensor)

    def add_nengo_obj(self, node_id: int, biases=None, activation=None):
        """The Nengo object computing the output of call ``node_id``.

        Parameters
        ----------
        node_id : int
            Which call of the layer.
        biases : array_like or None
            Trainable biases added to the input of the activation: one per
            output element, or one per channel (the last axis).
        activation : callable or None
            The Keras activation (None: linear); it becomes neurons (see
            ``swap_activations``), nothing if linear, or a TensorNode.

        Returns
        -------
        nengo.Node or nengo.ensemble.Neurons or TensorNode
            Connect the pre-activation into it (``add_connection``); its output
            is the call's output.
        """
        shape = self.output_shape(node_id)
        if isinstance(shape, list):
            raise ValidationError(
                f"add_nengo_obj makes one output, but call {node_id} of layer "
                f"{self.layer.name!r} has {len(shape)}",
                attr="node_id",
            )
        label = f"{self.layer.name}.{node_id}"
        post, out = self.add_activation(activation, shape=shape, label=label)
        if biases is not None:
            self._add_biases(post, biases, shape)
        return out

    def _add_biases(self, post, biases, shape):
        biases = np.asarray(biases, dtype=float).ravel()
        size = int(np.prod(shape))
        if biases.size == size:
            return self.add_bias(post, biases)
        if shape and biases.size == shape[-1]:
            return self.add_bias(post, biases, repeat=size // shape[-1])
        raise ValidationError(
            f"Biases for layer {self.layer.name!r} must have one value per output "
            f"element ({size}) or per channel ({shape[-1] if shape else 1}); got "
            f"{biases.size}",
            attr="biases",
        )

    def add_connection(
        self, node_id: int, obj, input_idx: int = 0, trainable=False, **kwargs
    ) -> nengo.Connection:
        """Connect input ``input_idx`` of call ``node_id`` to ``obj``.

        ``kwargs`` go to `nengo.Connection` (e.g. ``transform``); the synapse is
        the converter's out of neurons, and None otherwise, unless given.
        """
        pre = self.get_input_obj(node_id, input_idx)
        return self.connect(pre, obj, trainable=trainable, **kwargs)

    @staticmethod
    def set_trainable(obj, trainable: bool) -> None:
        """Set the ``trainable`` config of ``obj`` in the network being built."""
        for net in reversed(nengo.Network.context):
            try:
                net.config[obj].trainable = trainable
            except (AttributeError, nengo.exceptions.ConfigError):
                continue
            return
        raise ValidationError(
            f"Cannot set trainable for {obj}: no network being built has the "
            "trainable config (call set_trainable while converting)",
            attr="trainable",
        )

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

    def connect(
        self, pre, post, transform=1, trainable=False, **kwargs
    ) -> nengo.Connection:
        """Connect ``pre`` to ``post``.

        The connection gets the converter's ``synapse`` if ``pre`` is neurons and
        no synapse otherwise (unless ``kwargs`` give one). Only ``trainable``
        connections train (and only if the Keras layer is trainable).
        """
        base = pre.obj if isinstance(pre, ObjView) else pre
        kwargs.setdefault(
            "synapse", self.converter.synapse if isinstance(base, Neurons) else None
        )
        conn = nengo.Connection(pre, post, transform=transform, **kwargs)
        trainable = bool(trainable and getattr(self.layer, "trainable", True))
        self.converter.net.config[conn].trainable = trainable
        return conn

    def add_bias(self, post, bias, repeat=1, trainable=True, channels_last=True):
        """Add ``bias`` (one value per channel) to every position of ``post``.

        The values live on a connection from the network's constant bias Node,
        so that they train. With ``repeat > 1``, ``post`` has ``repeat``
        positions of ``len(bias)`` channels each (channels last, or first if
        not ``channels_last``): the per-channel values go to a Node that a
        fixed connection copies to every position.
        """
        bias = np.asarray(bias, dtype=float)
        transform = nengo.Dense((bias.size, 1), init=bias[:, None])
        if repeat == 1:
            return self.connect(self.converter.bias_node, post, transform, trainable)
        channels = self.add_node(bias.size, label=f"{self.layer.name}.bias")
        conn = self.connect(self.converter.bias_node, channels, transform, trainable)
        index = np.arange(bias.size)
        index = np.tile(index, repeat) if channels_last else np.repeat(index, repeat)
        self.connect(channels[index], post)
        return conn

    def add_activation(
        self, activation, size: int = None, shape: tuple = None, label: str = None
    ):
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
        label : str
            Label of the objects (default: the layer's name).

        Returns
        -------
        (post, output)
            ``post`` is where the pre-activation goes (connect into it);
            ``output`` carries the activation. Both are one passthrough Node
            for a linear activation, and an Ensemble's neurons for one with a
            neuron type. Otherwise ``post`` is a passthrough Node feeding a
            TensorNode ``output`` (with ``allow_fallback``).
        """
        shape = self.output_shapes[0] if shape is None else tuple(shape)
        size = int(np.prod(shape)) if size is None else size
        label = label or self.layer.name
        neuron_type, activation = self.converter.resolve_activation(
            activation, self.layer
        )
        if neuron_type is LINEAR:
            node = self.add_node(size, label=label)
            return node, node
        if neuron_type is not None:
            neurons = self.converter.add_neurons(
                size, neuron_type, self.layer, label=label
            )
            return neurons, neurons
        name = getattr(activation, "__name__", repr(activation))
        if not self.converter.allow_fallback:
            raise UnconvertibleError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has the "
                f"activation {name!r}, which has no Nengo neuron type; pass "
                f"allow_fallback=True to compute it in a TensorNode, or map it to a "
                "neuron type in swap_activations",
                attr="allow_fallback",
            )
        node = self.add_node(size, label=f"{label}.preactivation")
        func = _activation_func(activation)
        out = TensorNode(func, shape_in=shape, pass_time=False, label=f"{label}.{name}")
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
