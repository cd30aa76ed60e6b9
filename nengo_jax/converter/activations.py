"""Keras activations as Nengo neuron types.

Which neuron type computes a Keras activation (`DEFAULT_NEURONS`; ``LINEAR``
for the identity), and the converter options that change it:
``swap_activations`` (`swap_pairs`, `neuron_type_for`) and
``scale_firing_rates`` (`firing_rate_scale`, `scaled`).
"""

from __future__ import annotations

import inspect

import keras
import nengo
from nengo.exceptions import ValidationError
from nengo.neurons import NeuronType

#: `Converter.neuron_type`'s answer for a linear activation (no neurons).
LINEAR = object()

#: Keras activation function -> the rate neuron type computing it (gain 1,
#: bias 0). Nengo's Sigmoid and Tanh compute ``f(J) / tau_ref``.
DEFAULT_NEURONS = {
    keras.activations.relu: nengo.RectifiedLinear(),
    keras.activations.sigmoid: nengo.Sigmoid(tau_ref=1),
    keras.activations.tanh: nengo.Tanh(tau_ref=1),
}


def swap_pairs(swap) -> list:
    """``swap_activations`` as a list of (activation or neuron type, neuron type)."""
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


def neuron_type_for(activation, swap) -> NeuronType | object | None:
    """The neuron type computing ``activation``, after the `swap_pairs` ``swap``.

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
    for key, value in swap:
        if key is activation or (
            isinstance(key, NeuronType)
            and neuron_type is not LINEAR
            and key == neuron_type
        ):
            return value
    return neuron_type


def firing_rate_scale(scale, layer) -> float:
    """The ``scale_firing_rates`` value ``scale`` for ``layer``."""
    if scale is None:
        return 1.0
    if isinstance(scale, dict):
        for key, value in scale.items():
            if key is layer or (isinstance(key, str) and key == layer.name):
                return float(value)
        return 1.0
    return float(scale)


def scaled(neuron_type, scale, layer):
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
