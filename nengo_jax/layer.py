"""`Layer`: Keras-style functional sugar that adds a TensorNode or neurons."""

from __future__ import annotations

import keras
import nengo
import numpy as np

from nengo_jax.config import add_object_setting
from nengo_jax.tensor_node import TensorNode


class Layer:
    """Keras-style functional sugar: ``Layer(func)(input, ...)`` adds a layer.

    Parameters
    ----------
    layer_func : callable, keras.layers.Layer or nengo.neurons.NeuronType
        A neuron type makes the neurons of a one-dimensional Ensemble with one
        neuron per input element, built like any Ensemble of the network: its
        gains and biases come from ``layer_args`` or the network's config
        defaults (e.g. ``max_rates``, ``intercepts``), as in NengoDL. Anything
        else makes a `TensorNode` taking ``x`` alone.
    """

    def __init__(self, layer_func):
        self.layer_func = layer_func

    def __str__(self):
        # NengoDL's names: a Keras layer's name, a neuron type as Nengo prints
        # it, a function's __name__
        func = self.layer_func
        if isinstance(func, keras.layers.Layer):
            name = func.name
        elif isinstance(func, nengo.neurons.NeuronType):
            name = str(func)
        else:
            name = getattr(func, "__name__", func)
        return f"Layer({name})"

    def __call__(
        self,
        input,
        transform=1,
        shape_in=None,
        synapse=None,
        return_conn=False,
        **layer_args,
    ):
        """Add the layer, fed by ``input``; returns its output object.

        Parameters
        ----------
        input : NengoObject
            What feeds the layer (a Node, Ensemble, Neurons or a slice of one).
        transform
            Transform of the connection from ``input`` (which is not trainable).
        shape_in : tuple of int
            Shape of a TensorNode's input (default: ``(input.size_out,)``).
        synapse
            Synapse of the connection from ``input``.
        return_conn : bool
            Also return the connection.
        layer_args
            Passed on to `nengo.Ensemble` or `TensorNode`.
        """
        size = input.size_out if shape_in is None else int(np.prod(shape_in))
        if np.ndim(transform) == 2:
            size = np.shape(transform)[0]
        if isinstance(self.layer_func, nengo.neurons.NeuronType):
            ens = nengo.Ensemble(size, 1, neuron_type=self.layer_func, **layer_args)
            obj = ens.neurons
        else:
            obj = TensorNode(
                self.layer_func,
                shape_in=(size,) if shape_in is None else shape_in,
                pass_time=False,
                **layer_args,
            )
        conn = nengo.Connection(input, obj, transform=transform, synapse=synapse)
        config = nengo.Network.context[-1].config
        add_object_setting(config, nengo.Connection, "trainable", None)
        config[conn].trainable = False
        return (obj, conn) if return_conn else obj
