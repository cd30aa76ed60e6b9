"""`Converter`: a Keras 3 model as a Nengo network.

The Keras graph is walked from the model's inputs to its outputs; each call
of a layer is converted by the `.LayerConverter` registered for the layer's
class (found along its class hierarchy), nested models become subnetworks,
and anything else runs in a `.TensorNode` (``allow_fallback``).
"""

from __future__ import annotations

import inspect

import keras
import nengo
import numpy as np
from nengo.exceptions import ValidationError
from nengo.neurons import NeuronType

from nengo_jax.config import configure_settings
from nengo_jax.converter.base import LINEAR, FallbackLayer
from nengo_jax.tensor_node import TensorNode


class KerasMap:
    """A mapping keyed by Keras objects (layers, tensors), by identity.

    Keras tensors overload their operators, so they are looked up by ``id``;
    the map keeps its keys alive.
    """

    def __init__(self):
        self._items = {}

    def __getitem__(self, key):
        try:
            return self._items[id(key)][1]
        except KeyError:
            raise KeyError(f"{key!r} is not a key of this map") from None

    def __setitem__(self, key, value):
        self._items[id(key)] = (key, value)

    def __contains__(self, key):
        return id(key) in self._items

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return (key for key, _ in self._items.values())

    def get(self, key, default=None):
        return self[key] if key in self else default

    def setdefault(self, key, value):
        if key not in self:
            self[key] = value
        return self[key]

    def keys(self):
        return list(self)

    def values(self):
        return [value for _, value in self._items.values()]

    def items(self):
        return list(self._items.values())

    def __repr__(self):
        names = [getattr(k, "name", repr(k)) for k in self]
        return f"KerasMap({names})"


#: Keras activation function -> the rate neuron type computing it (gain 1,
#: bias 0). Nengo's Sigmoid and Tanh compute ``f(J) / tau_ref``.
DEFAULT_NEURONS = {
    keras.activations.relu: nengo.RectifiedLinear(),
    keras.activations.sigmoid: nengo.Sigmoid(tau_ref=1),
    keras.activations.tanh: nengo.Tanh(tau_ref=1),
}


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
        Allow layers with weights that the model calls several times: each
        call gets its own copy of the weights, which then train independently.
        Without it (and without ``inference_only``) such a layer is an error.
    swap_activations : dict
        Maps a Keras activation (a function such as ``keras.activations.relu``,
        or its name) or the neuron type it would become (such as
        ``nengo.RectifiedLinear()``) to the neuron type to use instead, such
        as ``nengo.SpikingRectifiedLinear()``.
    scale_firing_rates : float or dict
        Multiply the input of every neuron by this value and divide its output
        by it (through the neuron type's ``amplitude``, or ``tau_ref`` for
        Sigmoid and Tanh): the same function for ReLU neurons, at a higher
        firing rate for spiking ones. A dict maps Keras layers (or their
        names) to their own values (layers not in it are not scaled).
    synapse : nengo.synapses.Synapse or float
        Synapse on every connection out of neurons (None: no filtering).
    temporal_model : bool
        The model's tensors have a time axis after the batch axis, which the
        Nengo network runs as simulation steps; every layer must compute each
        step independently (as Dense does, or TimeDistributed layers).

    Attributes
    ----------
    net : nengo.Network
        The converted network.
    inputs : KerasMap
        Keras input (tensor, or its Input layer) -> the `nengo.Node` to feed.
    outputs : KerasMap
        Keras output (tensor, or the layer making it) -> a `nengo.Probe` of it.
    layers : KerasMap
        Keras layer or tensor -> the Nengo object carrying its output (for a
        layer called several times: its first call).

    Notes
    -----
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
        self.swap_activations = _swap_pairs(swap_activations)
        self.scale_firing_rates = scale_firing_rates
        self.synapse = synapse
        self.temporal_model = temporal_model

        self.inputs = KerasMap()
        self.outputs = KerasMap()
        self.layers = KerasMap()
        self.weight_conns = {}  # id(variable) -> (variable, connection)
        self._calls = KerasMap()  # layer -> number of calls converted
        self._bias_node = None
        model_inputs, model_outputs = _model_io(model)
        with nengo.Network(label=model.name) as self.net:
            configure_settings(trainable=None)
            if inference_only:
                configure_settings(inference_only=True)
            nodes = []
            for tensor in model_inputs:
                layer = tensor._keras_history.operation
                shape = self.example_shape(tensor)
                node = nengo.Node(np.zeros(int(np.prod(shape))), label=layer.name)
                self.inputs[tensor] = self.inputs[layer] = node
                self.layers[tensor] = self.layers[layer] = node
                nodes.append(node)
            objs = self._convert_model(model, model_inputs, nodes)
            for tensor, obj in zip(model_outputs, objs, strict=True):
                layer = tensor._keras_history.operation
                probe = nengo.Probe(obj, synapse=None, label=f"{layer.name}.probe")
                self.outputs[tensor] = probe
                self.outputs.setdefault(layer, probe)

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
                def convert(self, inputs):
                    out = self.add_node(self.output_size)
                    self.connect(inputs[0], out, transform=self.layer.factor)
                    return out
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
        objs = {id(t): obj for t, obj in zip(input_tensors, input_objs, strict=True)}
        _, outputs = _model_io(model)
        for node in _nodes_in_order(input_tensors, outputs):
            ins = [objs[id(t)] for t in node.input_tensors]
            outs = self._convert_node(node, ins)
            if not isinstance(outs, list | tuple):
                outs = [outs]
            for tensor, obj in zip(node.output_tensors, outs, strict=True):
                objs[id(tensor)] = obj
                self.layers[tensor] = obj
            self.layers.setdefault(node.operation, outs[0] if len(outs) == 1 else outs)
        return [objs[id(t)] for t in outputs]

    def _convert_node(self, node, ins):
        layer = node.operation
        self._check_shared(layer)
        converter_class = self.converter_for(layer)
        if converter_class is None and isinstance(layer, keras.Model):
            with nengo.Network(label=layer.name):
                inner_inputs, _ = _model_io(layer)
                return self._convert_model(layer, inner_inputs, ins)
        reason = f"{type(layer).__name__} has no native conversion"
        if converter_class is not None:
            converter = converter_class(layer, node, self)
            unsupported = converter.unsupported()
            if unsupported is None:
                return converter.convert(ins)
            reason = unsupported
        if not self.allow_fallback:
            raise ValidationError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be converted "
                f"to native Nengo objects: {reason}. Pass allow_fallback=True to "
                "run it in a TensorNode, or register a converter with "
                "Converter.register",
                attr="allow_fallback",
            )
        return self._fallback(node, ins)

    def _check_shared(self, layer):
        calls = self._calls.get(layer, 0) + 1
        self._calls[layer] = calls
        if (
            calls > 1
            and getattr(layer, "weights", None)
            and not (self.split_shared_weights or self.inference_only)
        ):
            raise ValidationError(
                f"Layer {layer.name!r} is called {calls} times and shares its "
                "weights between the calls, which the Nengo network cannot do; pass "
                "split_shared_weights=True to give each call its own copy (the "
                "copies train independently), or inference_only=True",
                attr="split_shared_weights",
            )

    def _fallback(self, node, ins):
        layer = node.operation
        if not ins:
            raise ValidationError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no input "
                "tensors; the converter needs each layer to be fed by the model's "
                "inputs",
                attr="model",
            )
        shapes = [self.example_shape(t) for t in node.input_tensors]
        sizes = [int(np.prod(s)) for s in shapes]
        wrapper = FallbackLayer(layer, node, shapes, temporal=self.temporal_model)
        tensor_node = TensorNode(
            wrapper, shape_in=(sum(sizes),), pass_time=False, label=layer.name
        )
        self.net.config[tensor_node].trainable = bool(getattr(layer, "trainable", True))
        start = 0
        for obj, size in zip(ins, sizes, strict=True):
            post = tensor_node if len(ins) == 1 else tensor_node[start : start + size]
            synapse = self.synapse if _is_neurons(obj) else None
            conn = nengo.Connection(obj, post, synapse=synapse)
            self.net.config[conn].trainable = False
            start += size
        outs = node.output_tensors
        if len(outs) == 1:
            return tensor_node
        views, start = [], 0
        for tensor in outs:
            size = int(np.prod(self.example_shape(tensor)))
            views.append(tensor_node[start : start + size])
            start += size
        return views

    # -- neurons -----------------------------------------------------------------------

    def neuron_type(self, activation, layer=None) -> NeuronType | object | None:
        """The neuron type computing ``activation`` (after ``swap_activations``).

        Returns ``LINEAR`` for the identity (no neurons) and None for an
        activation without a neuron type.
        """
        if isinstance(activation, str):
            activation = keras.activations.get(activation)
        if activation is None or activation is keras.activations.linear:
            neuron_type = LINEAR
        elif isinstance(activation, NeuronType):
            neuron_type = activation
        else:
            neuron_type = DEFAULT_NEURONS.get(activation)
        for key, value in self.swap_activations:
            if key is activation or (
                isinstance(key, NeuronType)
                and neuron_type is not LINEAR
                and key == neuron_type
            ):
                return value
        return neuron_type

    def firing_rate_scale(self, layer) -> float:
        """The ``scale_firing_rates`` value for ``layer``."""
        scale = self.scale_firing_rates
        if scale is None:
            return 1.0
        if isinstance(scale, dict):
            for key, value in scale.items():
                if key is layer or (isinstance(key, str) and key == layer.name):
                    return float(value)
            return 1.0
        return float(scale)

    def add_neurons(
        self, size: int, neuron_type: NeuronType, layer
    ) -> nengo.ensemble.Neurons:
        """An Ensemble of ``size`` neurons computing ``neuron_type`` elementwise.

        Gains are the layer's ``scale_firing_rates`` value, biases 0; the
        Ensemble (encoders, biases) does not train.
        """
        scale = self.firing_rate_scale(layer)
        if scale != 1:
            neuron_type = _scaled(neuron_type, scale, layer)
        ens = nengo.Ensemble(
            size,
            1,
            neuron_type=neuron_type,
            gain=nengo.dists.Choice([scale]),
            bias=nengo.dists.Choice([0]),
            encoders=nengo.dists.Choice([[1]]),
            label=f"{layer.name}",
        )
        self.net.config[ens].trainable = False
        return ens.neurons

    # -- checks and training ---------------------------------------------------------

    def verify(
        self, training: bool = False, inputs=None, atol: float = 1e-5, rtol=1e-4
    ) -> bool:
        """Check that the network computes what the Keras model does.

        Runs both on ``inputs`` (the Nengo network for one step, or for the
        length of the time axis with ``temporal_model``) and raises if an
        output differs. Spiking neurons and synapses change the network's
        output; use ``training=True`` to compare rate neurons (the training
        mode of both), and ``synapse=None``.

        Parameters
        ----------
        training : bool
            Run both in training mode (Keras's ``training=True``; Nengo's
            learning phase: spiking neurons as rates). Dropout and the like
            then differ.
        inputs : array or list of array or dict
            Input data for each Keras input, with a batch axis (and a time
            axis with ``temporal_model``); default: two random examples.
        atol, rtol : float
            Tolerances of the comparison.

        Returns
        -------
        bool
            True (a mismatch raises a `nengo.exceptions.ValidationError`).
        """
        from nengo_jax.simulator import Simulator

        model_inputs, model_outputs = _model_io(self.model)
        data = self._verify_inputs(inputs, model_inputs)
        batch = data[0].shape[0]
        steps = data[0].shape[1] if self.temporal_model else 1
        trainable = [v.value for v in self.model.trainable_variables]
        fixed = [v.value for v in self.model.non_trainable_variables]
        expected, _ = self.model.stateless_call(
            trainable, fixed, data if len(data) > 1 else data[0], training=training
        )
        expected = keras.tree.flatten(expected)
        net = self.net
        if training:
            with nengo.Network(label=f"{self.net.label} (training)") as net:
                configure_settings(learning_phase=True)
            net.networks.append(self.net)
        feed = {
            self.inputs[t]: np.reshape(x, (batch, steps, -1))
            for t, x in zip(model_inputs, data, strict=True)
        }
        with Simulator(net, minibatch_size=batch, progress_bar=False) as sim:
            got = sim.predict(feed, verbose=0)
        for tensor, want in zip(model_outputs, expected, strict=True):
            want = np.reshape(np.asarray(want), (batch, steps, -1))
            out = got[self.outputs[tensor]]
            if not np.allclose(out, want, atol=atol, rtol=rtol):
                err = np.max(np.abs(out - want))
                raise ValidationError(
                    f"The converted network's output for {tensor.name} differs from "
                    f"the Keras model's by up to {err:.3g} (atol={atol}, rtol={rtol})."
                    " Spiking neurons, synapses and layers with randomness (e.g. "
                    "Dropout in training) make them differ",
                    attr="model",
                )
        return True

    def _verify_inputs(self, inputs, model_inputs) -> list:
        if inputs is None:
            rng = np.random.RandomState(0)
            lead = (2, 5) if self.temporal_model else (2,)
            return [
                rng.uniform(-1, 1, size=lead + self.example_shape(t)).astype("float32")
                for t in model_inputs
            ]
        if isinstance(inputs, dict):
            inputs = [
                inputs[t]
                if t in inputs
                else inputs.get(self.inputs[t], inputs.get(t.name))
                for t in model_inputs
            ]
        elif not isinstance(inputs, list | tuple):
            inputs = [inputs]
        if len(inputs) != len(model_inputs) or any(x is None for x in inputs):
            raise ValidationError(
                f"verify needs data for each of the model's {len(model_inputs)} inputs",
                attr="inputs",
            )
        return [np.asarray(x, dtype="float32") for x in inputs]

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
        for var, conn, read in self.weight_conns.values():
            value = read(sim.signals[sim.model.sig[conn]["weights"]])
            var.assign(np.reshape(value, var.shape).astype(var.dtype))
        for obj in self.net.all_nodes:
            if isinstance(obj, TensorNode) and isinstance(
                obj.tensor_func, FallbackLayer
            ):
                for i, var in enumerate(obj.tensor_func.weights):
                    var.assign(sim.signals[sim.model.sig[obj][f"weight{i}"]])

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


def _swap_pairs(swap) -> list:
    if swap is None:
        return []
    if not isinstance(swap, dict):
        raise ValidationError(
            f"swap_activations must be a dict of activation -> neuron type; got "
            f"{type(swap).__name__}",
            attr="swap_activations",
        )
    pairs = []
    for key, value in swap.items():
        if isinstance(key, str):
            key = keras.activations.get(key)
        if not isinstance(value, NeuronType):
            raise ValidationError(
                f"swap_activations[{key!r}] must be a Nengo neuron type; got {value!r}",
                attr="swap_activations",
            )
        pairs.append((key, value))
    return pairs


def _scaled(neuron_type, scale, layer):
    """``neuron_type`` with its output divided by ``scale``."""
    params = inspect.signature(type(neuron_type).__init__).parameters
    values = {
        name: getattr(neuron_type, name)
        for name in params
        if hasattr(neuron_type, name)
    }
    if "amplitude" in values:
        values["amplitude"] = values["amplitude"] / scale
    elif isinstance(neuron_type, nengo.Sigmoid | nengo.Tanh):
        values["tau_ref"] = values["tau_ref"] * scale
    else:
        raise ValidationError(
            f"scale_firing_rates for layer {layer.name!r} needs a neuron type with "
            f"an amplitude; {neuron_type} has none",
            attr="scale_firing_rates",
        )
    return type(neuron_type)(**values)


def _is_neurons(obj) -> bool:
    obj = obj.obj if isinstance(obj, nengo.base.ObjView) else obj
    return isinstance(obj, nengo.ensemble.Neurons)


def _model_io(model):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValidationError(
            f"Model {model.name!r} has no defined inputs and outputs; build it on "
            "keras.Input (e.g. keras.Sequential([keras.Input(shape), ...]))",
            attr="model",
        )
    return list(inputs), list(outputs)


def _nodes_in_order(inputs, outputs) -> list:
    """The Keras nodes (layer calls) from ``inputs`` to ``outputs``, in order."""
    known = {id(t) for t in inputs}
    order, seen = [], set()
    stack = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in known:
            continue
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if expanded:
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
            for t in node.output_tensors:
                known.add(id(t))
            continue
        if not node.input_tensors and node.is_input:
            raise ValidationError(
                f"The model's outputs depend on {tensor.name}, which is not one "
                "of its inputs",
                attr="model",
            )
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(node.input_tensors))
    return order
