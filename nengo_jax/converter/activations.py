"""Keras activations as Nengo neuron types.

Which neuron type computes a Keras activation (`DEFAULT_NEURONS`; ``LINEAR``
for the identity), and the converter options that change it:
``swap_activations`` (`Swaps`, applied before and after that mapping, as
NengoDL applies it) and ``scale_firing_rates``
(`firing_rate_scale`, `scaled`).

An activation can be spelled many ways: ``"relu"``, ``keras.activations.relu``,
``keras.ops.relu``, ``jax.nn.relu`` (or ``tf.nn.relu``). `family` reduces each
spelling to one name, so that a ``swap_activations`` key matches the layers
computing that activation however either of them spells it.
"""

from __future__ import annotations

import inspect
import warnings

import keras
import nengo
import numpy as np
from nengo.exceptions import ValidationError
from nengo.neurons import NeuronType

from nengo_jax.neurons import LeakyReLU


class _Linear:
    def __repr__(self):
        return "LINEAR (no neurons)"


#: `Converter.neuron_type`'s answer for a linear activation (no neurons).
LINEAR = _Linear()

#: Activation name -> the rate neuron type computing it (gain 1, bias 0).
#: Nengo's Sigmoid and Tanh compute ``f(J) / tau_ref``.
DEFAULT_NEURONS = {
    "relu": nengo.RectifiedLinear(),
    "sigmoid": nengo.Sigmoid(tau_ref=1),
    "tanh": nengo.Tanh(tau_ref=1),
}

#: Packages whose functions are recognised by name (``jax.nn.relu`` is "relu").
_LIBRARIES = {"keras", "jax", "jaxlib", "tensorflow", "tf_keras", "numpy"}

#: Other names of an activation in those packages.
_ALIASES = {"identity": "linear", "swish": "silu", "hard_swish": "hard_silu"}


def family(activation) -> str | None:
    """The name of the activation function ``activation`` (None: unknown).

    ``activation`` is a name, None (linear), or a function of Keras, JAX or
    TensorFlow: ``keras.activations.relu``, ``keras.ops.relu``,
    ``keras.ops.nn.relu``, ``jax.nn.relu`` and ``tf.nn.relu`` are all "relu".
    A neuron type is the name of the activation it computes (RectifiedLinear:
    "relu", `nengo_jax.LeakyReLU`: "leaky_relu", Sigmoid, Tanh). Other
    callables have none (they match only themselves).
    """
    if activation is None:
        return "linear"
    if isinstance(activation, NeuronType):
        for cls, name in (
            (LeakyReLU, "leaky_relu"),
            (nengo.RectifiedLinear, "relu"),
            (nengo.Sigmoid, "sigmoid"),
            (nengo.Tanh, "tanh"),
        ):
            if type(activation) is cls:
                return name
        return None
    if isinstance(activation, str):
        name = activation
    else:
        name = getattr(activation, "__name__", None)
        module = getattr(activation, "__module__", None) or ""
        if isinstance(activation, np.ufunc):
            module = "numpy"  # NumPy 1.x ufuncs have no __module__
        if not isinstance(name, str) or module.split(".")[0] not in _LIBRARIES:
            return None
    name = _ALIASES.get(name, name)
    if isinstance(activation, str) or hasattr(keras.activations, name):
        return name
    return None


def _from_name(name):
    """The Keras activation function called ``name`` (a ValidationError if none)."""
    try:
        return keras.activations.get(name)
    except ValueError:
        raise ValidationError(
            f"{name!r} (in swap_activations) is not the name of a Keras activation",
            attr="swap_activations",
        ) from None


def show(key) -> str:
    """``key`` (an activation or neuron type) for a message."""
    if isinstance(key, str | NeuronType):
        return repr(key)
    name = getattr(key, "__name__", None)
    module = getattr(key, "__module__", None)
    if isinstance(name, str) and isinstance(module, str):
        return f"{module}.{name}"
    return repr(key)


def default_neuron_type(activation) -> NeuronType | object | None:
    """The neuron type computing ``activation`` (before ``swap_activations``).

    Returns ``LINEAR`` for the identity (no neurons) and None for an activation
    without a neuron type.
    """
    if isinstance(activation, NeuronType):
        return activation
    name = family(activation)
    if name == "linear":
        return LINEAR
    return DEFAULT_NEURONS.get(name)


class Swaps:
    """The ``swap_activations`` option, applied as NengoDL applies it.

    An activation goes through three stages: keys that are activations (in
    any spelling `family` knows, or any other callable, matched by identity)
    replace it by their value (an activation or a neuron type); the result
    becomes its default neuron type (`default_neuron_type`); keys that are
    neuron types replace that neuron type by their value. A value that is an
    activation without a neuron type is computed in a TensorNode. `resolve`
    notes the keys that matched; `warn_unused` warns about the others.
    """

    def __init__(self, swap):
        if swap is None:
            swap = {}
        if not isinstance(swap, dict):
            raise ValidationError(
                f"swap_activations must be a dict of activation -> activation or "
                f"neuron type; got {type(swap).__name__}",
                attr="swap_activations",
            )
        #: (key as given, its `family` or None, its value)
        self.pairs = []
        #: indices of the pairs that matched an activation
        self.used = set()
        seen = {}
        for key, value in swap.items():
            if isinstance(key, str):
                _from_name(key)
            self._check_value(key, value)
            name = None if isinstance(key, NeuronType) else family(key)
            if isinstance(key, NeuronType):
                ident = ("neurons", key)
            elif name is not None:
                ident = ("family", name)
            else:
                ident = ("object", key)
            earlier = seen.setdefault(ident, (key, value))
            if not _same_value(earlier[1], value):
                raise ValidationError(
                    f"the keys {show(earlier[0])} and {show(key)} are the same "
                    "activation, with different values",
                    attr="swap_activations",
                )
            self.pairs.append((key, name, value))

    @staticmethod
    def _check_value(key, value):
        if isinstance(value, NeuronType) or value is None or callable(value):
            return
        if isinstance(value, str):
            _from_name(value)
            return
        raise ValidationError(
            f"the value of {show(key)} must be a Keras activation or a Nengo neuron "
            f"type; got {show(value)}",
            attr="swap_activations",
        )

    def _swap(self, match):
        """``(found, value)`` of the keys for which ``match(key, name)``.

        Notes every such key (they are spellings of one key, with one value).
        """
        found = [i for i, (key, name, _) in enumerate(self.pairs) if match(key, name)]
        self.used.update(found)
        return (True, self.pairs[found[0]][2]) if found else (False, None)

    def resolve(self, activation) -> tuple:
        """``activation`` after the swaps, as ``(neuron_type, function)``.

        ``neuron_type`` is a neuron type, ``LINEAR`` for the identity (no
        neurons), or None for an activation without a neuron type, which a
        TensorNode computes with ``function``.
        """
        # (a neuron type that a layer computes, such as ReLU's, is the
        # activation of its `family` here)
        fam = family(activation)

        def match_activation(key, name):
            if isinstance(key, NeuronType):
                return False
            return name == fam if name is not None else key is activation

        found, value = self._swap(match_activation)
        if found:
            activation = value
        neuron_type = default_neuron_type(activation)
        if isinstance(neuron_type, NeuronType):
            found, value = self._swap(
                lambda key, _: isinstance(key, NeuronType) and key == neuron_type
            )
            if found:
                activation = value
                neuron_type = default_neuron_type(value)
        if isinstance(activation, str):
            activation = _from_name(activation)
        return neuron_type, activation

    def warn_unused(self) -> None:
        """Warn about each key that matched no activation of the model."""
        for i, (key, _, value) in enumerate(self.pairs):
            if i not in self.used:
                warnings.warn(
                    f"swap_activations key {show(key)} (-> {show(value)}) matches no "
                    "activation in the model; nothing was swapped for it",
                    UserWarning,
                    stacklevel=3,
                )


def _same_value(a, b) -> bool:
    if isinstance(a, NeuronType) or isinstance(b, NeuronType):
        return a == b
    fa, fb = family(a), family(b)
    return fa == fb if fa is not None and fb is not None else a is b


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
