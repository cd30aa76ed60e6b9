"""The converted network in a Simulator, next to the Keras model.

`verify` runs both and compares their outputs; `copy_params_to_keras` writes
the weights trained in a Simulator back into the Keras model. They are the
implementations of the `.Converter` methods of those names.
"""

from __future__ import annotations

import keras
import nengo
import numpy as np
from nengo.exceptions import ValidationError

from nengo_jax.config import configure_settings
from nengo_jax.converter.fallback import FallbackLayer
from nengo_jax.converter.graph import model_io
from nengo_jax.simulator import Simulator
from nengo_jax.tensor_node import TensorNode


def verify(converter, training, inputs, atol, rtol) -> bool:
    """Check that ``converter.net`` computes what its Keras model does.

    See `.Converter.verify`.
    """
    model_inputs, model_outputs = model_io(converter.model)
    data = _verify_inputs(converter, inputs, model_inputs)
    batch = data[0].shape[0]
    steps = data[0].shape[1] if converter.temporal_model else 1
    trainable = [v.value for v in converter.model.trainable_variables]
    fixed = [v.value for v in converter.model.non_trainable_variables]
    expected, _ = converter.model.stateless_call(
        trainable, fixed, data if len(data) > 1 else data[0], training=training
    )
    expected = keras.tree.flatten(expected)
    net = converter.net
    if training:
        with nengo.Network(label=f"{converter.net.label} (training)") as net:
            configure_settings(learning_phase=True)
        net.networks.append(converter.net)
    feed = {
        converter.inputs[t]: np.reshape(x, (batch, steps, -1))
        for t, x in zip(model_inputs, data, strict=True)
    }
    with Simulator(net, minibatch_size=batch, progress_bar=False) as sim:
        got = sim.predict(feed, verbose=0)
    for tensor, want in zip(model_outputs, expected, strict=True):
        want = np.reshape(np.asarray(want), (batch, steps, -1))
        out = got[converter.outputs[tensor]]
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


def _verify_inputs(converter, inputs, model_inputs) -> list:
    """`verify`'s ``inputs`` as one float32 array per Keras input (default: random)."""
    if inputs is None:
        rng = np.random.RandomState(0)
        lead = (2, 5) if converter.temporal_model else (2,)
        return [
            rng.uniform(-1, 1, size=lead + converter.example_shape(t)).astype("float32")
            for t in model_inputs
        ]
    if isinstance(inputs, dict):
        inputs = [
            inputs[t]
            if t in inputs
            else inputs.get(converter.inputs[t], inputs.get(t.name))
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


def copy_params_to_keras(converter, sim) -> None:
    """Copy parameters trained in ``sim`` back into the Keras model's layers.

    See `.Converter.copy_params_to_keras`.
    """
    for var, conn, read in converter.weight_conns.values():
        value = read(sim.signals[sim.model.sig[conn]["weights"]])
        var.assign(np.reshape(value, var.shape).astype(var.dtype))
    for obj in converter.net.all_nodes:
        if isinstance(obj, TensorNode) and isinstance(obj.tensor_func, FallbackLayer):
            for i, var in enumerate(obj.tensor_func.weights):
                var.assign(sim.signals[sim.model.sig[obj][f"weight{i}"]])
