"""Per-object settings from the networks' config: ``trainable``, ``keep_history``.

By default (as in NengoDL) training changes connection weights (decoders or
neuron-to-neuron weights), ensemble encoders, neuron biases, and the trainable
weights of Keras layers in TensorNodes. Signals that an
operator writes (e.g. weights under an online learning rule) are simulation
state, never trained. ``configure_settings(trainable=...)`` adds a
``trainable`` parameter to the configurable objects of a network; an explicit
value is looked up from the object's own network up to the top-level one, the
instance before its class in each network. ``None`` means "no opinion".
"""

from __future__ import annotations

import nengo
from nengo.ensemble import Neurons

from nengo_jax.tensor_node import TensorNode, is_layer

#: The classes that get a ``trainable`` config parameter.
TRAINABLE_CLASSES = (nengo.Ensemble, nengo.Connection, Neurons, TensorNode)


def networks_of(network) -> dict:
    """Each object of ``network`` -> its chain of networks, top-level first."""
    chains = {}

    def visit(net, chain):
        chain = chain + [net]
        for obj in net.ensembles + net.connections + net.probes + net.nodes:
            chains[obj] = chain
            if isinstance(obj, nengo.Ensemble):
                chains[obj.neurons] = chain
        for subnet in net.networks:
            visit(subnet, chain)

    visit(network, [])
    return chains


def explicit_value(obj, chain, name="trainable"):
    """The config value ``name`` set for ``obj`` in the lowest network setting one.

    Returns None if no network in ``chain`` says anything about ``obj``.
    """
    for net in reversed(chain):
        params = net.config.params
        instance = params.get(obj)
        if instance is not None and name in instance._clsparams._extra_params:
            if instance in instance._clsparams.get_param(name):
                value = getattr(instance, name)
                if value is not None:
                    return value
        for cls in type(obj).__mro__:
            clsparams = params.get(cls)
            if clsparams is not None and name in clsparams._extra_params:
                value = getattr(clsparams, name)
                if value is not None:
                    return value
                break
    return None


def keep_history(network) -> dict:
    """Probe -> whether it keeps every step (the ``keep_history`` config)."""
    if network is None:
        return {}
    return {
        obj: explicit_value(obj, chain, "keep_history") is not False
        for obj, chain in networks_of(network).items()
        if isinstance(obj, nengo.Probe)
    }


def trainable_signals(model, network) -> list:
    """The signals of ``model`` that training may change (before state is excluded).

    Parameters
    ----------
    model : nengo.builder.Model
        The built model (after any signal merging, so signals are current views).
    network : nengo.Network
        The top-level network ``model`` was built from.
    """
    if network is None:
        return []
    chains = networks_of(network)
    signals = []

    def decide(obj, default=True):
        value = explicit_value(obj, chains.get(obj, [network]))
        return default if value is None else bool(value)

    for obj in chains:
        if obj not in model.sig:
            continue
        sigs = model.sig[obj]
        if isinstance(obj, nengo.Connection):
            if sigs.get("weights") is not None and decide(obj):
                signals.append(sigs["weights"])
        elif isinstance(obj, nengo.Ensemble):
            # Direct ensembles have no neurons: their encoders are unused
            direct = isinstance(obj.neuron_type, nengo.Direct)
            if sigs.get("encoders") is not None and not direct and decide(obj):
                signals.append(sigs["encoders"])
        elif isinstance(obj, TensorNode) and is_layer(obj.tensor_func):
            for i, var in enumerate(obj.tensor_func.weights):
                if var.trainable and decide(obj):
                    signals.append(sigs[f"weight{i}"])
        elif isinstance(obj, Neurons):
            # the neurons' own setting first, then their ensemble's
            bias = sigs.get("bias")
            if bias is not None and decide(obj, default=decide(obj.ensemble)):
                signals.append(bias)
    return signals
