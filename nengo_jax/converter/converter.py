"""`Converter`: a Keras 3 model as a Nengo network.

The Keras graph is walked from the model's inputs to its outputs; each call
of a layer is converted by the `.LayerConverter` registered for the layer's
class (found along its class hierarchy), nested models become subnetworks,
and anything else runs in a `.TensorNode` (``allow_fallback``).

This module holds the `Converter` class: its options, the registry of layer
converters, the walk over the graph and the services layer converters use.
Reading the Keras graph is in `.graph`, activations and neuron types in
`.activations`, the TensorNode fallback in `.fallback`, and `verify` and
`copy_params_to_keras` in `.simulation`.
"""

from __future__ import annotations

import warnings

import keras
import nengo
import numpy as np
from nengo.exceptions import ValidationError
from nengo.neurons import NeuronType

from nengo_jax.config import configure_settings
from nengo_jax.converter import activations, simulation
from nengo_jax.converter.base import UnconvertibleError
from nengo_jax.converter.fallback import add_fallback, is_neurons
from nengo_jax.converter.graph import KerasMap, model_io, nodes_in_order


class Converter:
    """Convert a Keras 3 model into a Nengo network.

    Layers with a native conversion (see ``Converter.converters`` and
    `nengo_jax.converter.layers`) become Nengo objects: Dense and convolution
    kernels and biases become trainable connection weights, activations
    become Ensembles' neurons (one neuron per element, gain 1, bias 0), and
    reshaping, pooling, padding and merging become fixed connections. Nested
    models become subnetworks. Anything else runs in a `.TensorNode`.

    Parameters
    ----------
    model : keras.Model
        A built Sequential or Functional model (with ``keras.Input``).
    allow_fallback : bool
        Run layers without a native conversion in TensorNodes; if False, such a
        layer raises an error naming it and why.
    inference_only : bool
        The network will not be trained: BatchNormalization becomes a fixed
        scale and shift and Dropout the identity (otherwise both run in
        TensorNodes, which know the learning phase), layers called several
        times keep one copy of their weights per call, and the network gets
        ``configure_settings(inference_only=True)``.
    max_to_avg_pool : bool
        Convert max pooling to average pooling (Nengo has no max); otherwise
        max pooling runs in a TensorNode.
    split_shared_weights : bool
        Allow natively converted layers with weights that the model calls
        several times: each call gets its own copy of the weights, which then
        train independently. Without it (and without ``inference_only``) such
        a layer is an error. (A layer running in TensorNodes runs in one per
        call, with a warning that their weights train independently.)
    swap_activations : dict
        Maps an activation to the activation or neuron type to use instead,
        as NengoDL does: first a key that is an activation replaces the
        model's activation (by an activation, such as ``"relu"``, or a neuron
        type, such as ``nengo.SpikingRectifiedLinear()``), then the activation
        becomes its neuron type (relu, sigmoid, tanh; linear: no neurons;
        others run in a TensorNode), then a key that is a neuron type (such as
        ``nengo.RectifiedLinear()``) replaces that neuron type. An activation
        key matches however either side spells it (``"relu"``,
        ``keras.activations.relu``, ``keras.ops.relu``, ``keras.ops.nn.relu``,
        ``jax.nn.relu``, or ``tf.nn.relu``), as the ``activation`` of Dense and
        convolution layers and as an activation layer (``Activation``,
        ``ReLU``, ``LeakyReLU``). A key that matches no activation of the
        model gets a warning.
    scale_firing_rates : float or dict
        Multiply the input of every neuron by this value and divide its output
        by it (through the neuron type's ``amplitude``, or ``tau_ref`` for
        Sigmoid and Tanh): the same function for ReLU neurons, at a higher
        firing rate for spiking ones. A dict maps Keras layers (or their
        names) to their own values (layers not in it are not scaled).
    synapse : nengo.synapses.Synapse or float
        Synapse on every connection out of neurons, and on the probes of
        outputs that are neurons (None: no filtering).
    temporal_model : bool
        The model's tensors have a time axis after the batch axis, which the
        Nengo network runs as simulation steps; every layer must compute each
        step independently (as Dense does, or TimeDistributed layers).

    Attributes
    ----------
    net : nengo.Network
        The converted network.
    inputs : KerasMap
        Keras input tensor -> the `nengo.Node` to feed (one entry per input;
        its Input layer is a key too).
    outputs : KerasMap
        Keras output tensor -> a `nengo.Probe` of it (the layer making it is a
        key too, unless it makes several outputs).
    layers : KerasMap
        Keras tensor -> the Nengo object carrying it (a layer is a key too,
        unless it is called several times).

    Notes
    -----
    Regularizers and constraints (``kernel_regularizer``, ``bias_constraint``,
    ``activity_regularizer``...) act only in training, and a native conversion
    would drop them: unless ``inference_only``, a layer that has any runs in a
    `.TensorNode` instead, with a warning naming them (an error without
    ``allow_fallback``). The TensorNode applies weight regularizers (added to
    the training loss) and constraints (after each update) in training, but
    not activity regularizers. With ``inference_only`` such layers convert
    natively, without them.

    Biases come from a Node with the constant output 1 (labelled ``"bias"``),
    which is an input Node of the network too: give the Simulator's Keras
    calls their data as dicts keyed by ``converter.inputs[keras_input]`` and
    ``converter.outputs[keras_output]``.

    Spiking neurons need several steps per example: repeat each input over
    ``n_steps`` steps and read the output at the last. Training (``sim.fit``)
    runs them as rates, so one step is enough there. The weights live in the
    Simulator; `copy_params_to_keras` writes trained values back into the
    Keras model (to convert it again, e.g. with spiking neurons).

    Examples
    --------
    .. code-block:: python

        converter = nengo_jax.Converter(
            model,
            swap_activations={nengo.RectifiedLinear(): nengo.SpikingRectifiedLinear()},
            scale_firing_rates=100,
            synapse=0.01,
        )
        with nengo_jax.Simulator(converter.net, minibatch_size=32) as sim:
            out = sim.predict({converter.inputs[model.input]: x})
            y = out[converter.outputs[model.output]][:, -1]
    """

    #: Keras layer class -> `.LayerConverter` subclass (see `register`).
    converters = {}

    def __init__(
        self,
        model,
        allow_fallback=True,
        inference_only=False,
        max_to_avg_pool=False,
        split_shared_weights=False,
        swap_activations=None,
        scale_firing_rates=None,
        synapse=None,
        temporal_model=False,
    ):
        if not isinstance(model, keras.Model):
            raise ValidationError(
                f"Expected a keras.Model (Sequential or Functional); got "
                f"{type(model).__name__}",
                attr="model",
            )
        self.model = model
        self.allow_fallback = allow_fallback
        self.inference_only = inference_only
        self.max_to_avg_pool = max_to_avg_pool
        self.split_shared_weights = split_shared_weights
        self.swap_activations = swap_activations
        self._swaps = activations.Swaps(swap_activations)
        self.scale_firing_rates = scale_firing_rates
        self.synapse = synapse
        self.temporal_model = temporal_model

        self.inputs = KerasMap()
        self.outputs = KerasMap()
        self.layers = KerasMap()
        self.weight_conns = {}  # id(variable) -> (variable, connection)
        self._calls = {}  # id(layer) -> number of calls converted
        self._layer_converters = {}  # id(layer) -> (layer, LayerConverter or None)
        self._objs = KerasMap()  # every converted tensor -> its Nengo object
        self._bias_node = None
        model_inputs, model_outputs = model_io(model)
        with nengo.Network(label=model.name) as self.net:
            configure_settings(trainable=None)
            if inference_only:
                configure_settings(inference_only=True)
            nodes = []
            for tensor in model_inputs:
                layer = tensor._keras_history.operation
                shape = self.example_shape(tensor)
                node = nengo.Node(np.zeros(int(np.prod(shape))), label=layer.name)
                self.inputs[tensor] = self.layers[tensor] = node
                nodes.append(node)
            objs = self._convert_model(model, model_inputs, nodes)
            for tensor, obj in zip(model_outputs, objs, strict=True):
                layer = tensor._keras_history.operation
                # neuron outputs are filtered like every connection out of neurons
                synapse = self.synapse if is_neurons(obj) else None
                probe = nengo.Probe(obj, synapse=synapse, label=f"{layer.name}.probe")
                self.outputs[tensor] = probe
        self._swaps.warn_unused()

    # -- registry ------------------------------------------------------------------

    @classmethod
    def register(cls, keras_layer):
        """Decorate a `.LayerConverter` subclass to convert ``keras_layer``.

        The converter applies to subclasses of ``keras_layer`` too (unless they
        have their own), and replaces any earlier one for the class.

        Examples
        --------
        .. code-block:: python

            @nengo_jax.Converter.register(MyScale)
            class ConvertMyScale(nengo_jax.converter.LayerConverter):
                def convert(self, node_id):
                    output = self.add_nengo_obj(node_id)
                    self.add_connection(node_id, output, transform=self.layer.factor)
                    return output
        """

        def register_converter(converter_class):
            cls.converters[keras_layer] = converter_class
            return converter_class

        return register_converter

    @classmethod
    def converter_for(cls, layer):
        """The `.LayerConverter` class for ``layer`` (None: none registered)."""
        for klass in type(layer).__mro__:
            if klass in cls.converters:
                return cls.converters[klass]
        return None

    def get_converter(self, layer):
        """The `.LayerConverter` of ``layer`` (None: none registered).

        One per layer, made on first use, as NengoDL's.
        """
        if id(layer) not in self._layer_converters:
            converter_class = self.converter_for(layer)
            instance = None if converter_class is None else converter_class(layer, self)
            self._layer_converters[id(layer)] = (layer, instance)
        return self._layer_converters[id(layer)][1]

    def tensor_obj(self, tensor):
        """The Nengo object carrying the converted Keras ``tensor``."""
        return self._objs[tensor]

    # -- conversion ------------------------------------------------------------------

    def example_shape(self, tensor) -> tuple:
        """The shape of one example of a Keras tensor (no batch or time axis)."""
        lead = 2 if self.temporal_model else 1
        shape = tuple(tensor.shape)
        if len(shape) < lead:
            raise ValidationError(
                f"Tensor {tensor.name} has shape {shape}, which has no "
                + ("batch and time axes" if self.temporal_model else "batch axis"),
                attr="model",
            )
        shape = shape[lead:]
        if any(s is None for s in shape):
            raise ValidationError(
                f"Tensor {tensor.name} has an unknown size in its shape "
                f"{tuple(tensor.shape)}; give the model's inputs a full shape "
                "(keras.Input(shape=...))",
                attr="model",
            )
        return shape

    @property
    def bias_node(self) -> nengo.Node:
        """(nengo.Node) A Node with the constant output 1, which carries biases."""
        if self._bias_node is None:
            with self.net:
                self._bias_node = nengo.Node(np.ones(1), label="bias")
        return self._bias_node

    def _convert_model(self, model, input_tensors, input_objs) -> list:
        for tensor, obj in zip(input_tensors, input_objs, strict=True):
            self._objs[tensor] = obj
        _, outputs = model_io(model)
        for node in nodes_in_order(input_tensors, outputs):
            ins = [self._objs[t] for t in node.input_tensors]
            outs = self._convert_node(node, ins)
            if not isinstance(outs, list | tuple):
                outs = [outs]
            for tensor, obj in zip(node.output_tensors, outs, strict=True):
                self._objs[tensor] = self.layers[tensor] = obj
        return [self._objs[t] for t in outputs]

    def _convert_node(self, node, ins):
        layer = node.operation
        self._calls[id(layer)] = self._calls.get(id(layer), 0) + 1
        layer_converter = self.get_converter(layer)
        if layer_converter is None and isinstance(layer, keras.Model):
            with nengo.Network(label=layer.name):
                inner_inputs, _ = model_io(layer)
                return self._convert_model(layer, inner_inputs, ins)
        reason = f"{type(layer).__name__} has no native conversion"
        if layer_converter is not None:
            node_id = node.output_tensors[0]._keras_history.node_index
            layer_converter.set_call(node_id, node)
            unsupported = layer_converter.unsupported()
            training_args = []
            if unsupported is None and not self.inference_only:
                training_args = layer_converter.training_args()
            if unsupported is None and not training_args:
                self._check_shared(layer, layer_converter.has_weights)
                return layer_converter.convert(node_id)
            reason = unsupported
            if unsupported is None:
                reason = (
                    f"it has {', '.join(training_args)}, which the native "
                    "conversion would drop (they act only in training; with "
                    "inference_only=True the layer converts natively without them)"
                )
                if self.allow_fallback:
                    self._warn_training_args(layer, training_args)
        if not self.allow_fallback:
            raise UnconvertibleError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be converted "
                f"to native Nengo objects: {reason}. Pass allow_fallback=True to "
                "run it in a TensorNode, or register a converter with "
                "Converter.register",
                attr="allow_fallback",
            )
        self._warn_shared_fallback(layer)
        return add_fallback(self, node, ins)

    @staticmethod
    def _warn_training_args(layer, training_args):
        kept = [a for a in training_args if not a.startswith("activity_")]
        dropped = [a for a in training_args if a.startswith("activity_")]
        message = (
            f"Layer {layer.name!r} ({type(layer).__name__}) has "
            f"{', '.join(training_args)}, which a native conversion would drop; "
            "it runs in a TensorNode instead"
        )
        if kept:
            message += f", which applies {', '.join(a.split('=')[0] for a in kept)} "
            message += "in training"
        if dropped:
            message += (
                f" ({', '.join(a.split('=')[0] for a in dropped)} is not applied in "
                "training)"
            )
        message += (
            ". Pass inference_only=True to convert the layer natively without them"
        )
        warnings.warn(message, UserWarning, stacklevel=5)

    def _check_shared(self, layer, has_weights):
        calls = self._calls[id(layer)]
        if (
            calls > 1
            and has_weights
            and not (self.split_shared_weights or self.inference_only)
        ):
            raise ValidationError(
                f"Layer {layer.name!r} is called {calls} times and shares its "
                "weights between the calls, which the Nengo network cannot do; pass "
                "split_shared_weights=True to give each call its own copy (the "
                "copies train independently), or inference_only=True",
                attr="split_shared_weights",
            )

    def _warn_shared_fallback(self, layer):
        calls = self._calls[id(layer)]
        if (
            calls == 2
            and getattr(layer, "weights", None)
            and not (self.split_shared_weights or self.inference_only)
        ):
            warnings.warn(
                f"Layer {layer.name!r} ({type(layer).__name__}) is called several "
                "times and runs in one TensorNode per call; in training, each "
                "TensorNode's copy of its weights trains independently "
                "(split_shared_weights=True silences this warning)",
                UserWarning,
                stacklevel=5,
            )

    # -- neurons -----------------------------------------------------------------------

    def neuron_type(self, activation, layer=None) -> NeuronType | object | None:
        """The neuron type computing ``activation`` (after ``swap_activations``).

        Returns ``LINEAR`` for the identity (no neurons) and None for an
        activation without a neuron type.
        """
        return self.resolve_activation(activation, layer)[0]

    def resolve_activation(self, activation, layer=None) -> tuple:
        """``activation`` after ``swap_activations``: ``(neuron_type, function)``.

        ``neuron_type`` is a neuron type, ``LINEAR`` for the identity (no
        neurons), or None for an activation without a neuron type, which a
        TensorNode computes with ``function``.
        """
        return self._swaps.resolve(activation)

    def firing_rate_scale(self, layer) -> float:
        """The ``scale_firing_rates`` value for ``layer``."""
        return activations.firing_rate_scale(self.scale_firing_rates, layer)

    def add_neurons(
        self, size: int, neuron_type: NeuronType, layer, label: str = None
    ) -> nengo.ensemble.Neurons:
        """An Ensemble of ``size`` neurons computing ``neuron_type`` elementwise.

        Gains are the layer's ``scale_firing_rates`` value, biases 0; the
        Ensemble (encoders, biases) does not train.
        """
        scale = self.firing_rate_scale(layer)
        if scale != 1:
            neuron_type = activations.scaled(neuron_type, scale, layer)
        ens = nengo.Ensemble(
            size,
            1,
            neuron_type=neuron_type,
            gain=nengo.dists.Choice([scale]),
            bias=nengo.dists.Choice([0]),
            encoders=nengo.dists.Choice([[1]]),
            label=label or layer.name,
        )
        self.net.config[ens].trainable = False
        return ens.neurons

    # -- checks and training ---------------------------------------------------------

    def verify(
        self, training: bool = False, inputs=None, atol: float = 1e-8, rtol=1e-5
    ) -> bool:
        """Check that the network computes what the Keras model does.

        Runs both on ``inputs`` (the Nengo network for one step, or for the
        length of the time axis with ``temporal_model``) and raises if an
        output differs. Spiking neurons and synapses change the network's
        output (use rate neurons and ``synapse=None``).

        Parameters
        ----------
        training : bool
            Also check training, as NengoDL does: the two must have the same
            number of trainable parameters, and after training both (three
            full-batch steps of SGD with learning rate 0.1 on the mean squared
            error to targets of ones) their outputs must still match. The Keras
            model's weights are left as they were.
        inputs : array or list of array or dict
            Input data for each Keras input, with a batch axis (and a time
            axis with ``temporal_model``); default: two random examples.
        atol, rtol : float
            Tolerances of the comparison (as `numpy.allclose`, ``rtol``
            relative to the Nengo network's output).

        Returns
        -------
        bool
            True (a mismatch raises a `nengo.exceptions.ValidationError`, a
            ``ValueError``).
        """
        return simulation.verify(self, training, inputs, atol, rtol)

    def copy_params_to_keras(self, sim) -> None:
        """Copy parameters trained in ``sim`` back into the Keras model's layers.

        Covers the weights of natively converted layers (Dense and convolution
        kernels and biases) and of layers in TensorNodes. A new `Converter` of
        the updated model (e.g. with spiking neurons) then starts from them.

        Parameters
        ----------
        sim : nengo_jax.Simulator
            A simulator of this converter's ``net`` (or a network containing it).
        """
        simulation.copy_params_to_keras(self, sim)

    def track_weight(self, variable, conn: nengo.Connection, read=None) -> None:
        """Note that ``conn``'s weights hold the Keras ``variable``.

        ``read`` turns the weights back into the variable's value (default: as
        they are); `copy_params_to_keras` uses it.
        """
        self.weight_conns[id(variable)] = (
            variable,
            conn,
            read or (lambda value: value),
        )
