"""The converted network in a Simulator, next to the Keras model.

`verify` runs both and compares their outputs; `copy_params_to_keras` writes
the weights trained in a Simulator back into the Keras model. They are the
implementations of the `.Converter` methods of those names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
from nengo.exceptions import ValidationError

from nengo_jax.converter.fallback import FallbackLayer
from nengo_jax.converter.graph import model_io
from nengo_jax.simulator import Simulator
from nengo_jax.tensor_node import TensorNode


def verify(converter, training, inputs, atol, rtol) -> bool:
    """Check that ``converter.net`` computes what its Keras model does.

    See `.Converter.verify`.
    """
    model = converter.model
    model_inputs, model_outputs = model_io(model)
    data = _verify_inputs(converter, inputs, model_inputs)
    batch = data[0].shape[0]
    steps = data[0].shape[1] if converter.temporal_model else 1
    x = data if len(data) > 1 else data[0]
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    feed = {
        converter.inputs[t]: np.reshape(d, (batch, steps, -1))
        for t, d in zip(model_inputs, data, strict=True)
    }
    probes = [converter.outputs[t] for t in model_outputs]
    with Simulator(converter.net, minibatch_size=batch, progress_bar=False) as sim:
        if training:
            _check_parameter_count(model, sim)
            trainable, fixed = _train_keras(model, trainable, fixed, x)
            sim.compile(
                keras.optimizers.SGD(VERIFY_LEARNING_RATE),
                loss={p: "mse" for p in probes},
            )
            targets = {p: np.ones((batch, steps, p.size_in)) for p in probes}
            sim.fit(feed, targets, epochs=VERIFY_EPOCHS, verbose=0)
        got = sim.predict(feed, verbose=0)
    expected, _ = model.stateless_call(trainable, fixed, x, training=False)
    for tensor, want, probe in zip(
        model_outputs, keras.tree.flatten(expected), probes, strict=True
    ):
        want = np.reshape(np.asarray(want), (batch, steps, -1))
        out = got[probe]
        if not np.allclose(want, out, atol=atol, rtol=rtol):
            err = np.max(np.abs(out - want))
            raise ValidationError(
                f"The converted network's output for {tensor.name} differs from "
                f"the Keras model's by up to {err:.3g} (atol={atol}, rtol={rtol})"
                + (" after training both" if training else "")
                + ". Spiking neurons, synapses and layers with randomness (e.g. "
                "Dropout in training) make them differ",
                attr="model",
            )
    return True


#: ``verify(training=True)`` trains both for this many full-batch SGD steps ...
VERIFY_EPOCHS = 3
#: ... with this learning rate (NengoDL's), on the MSE to targets of ones.
VERIFY_LEARNING_RATE = 0.1


def _check_parameter_count(model, sim):
    """An error if ``sim`` has another number of trainable values than ``model``."""
    keras_count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    keras_model = sim.keras_model
    nengo_count = 0
    for key, mask in keras_model.masks.items():
        if mask is True:
            nengo_count += int(np.size(keras_model.param_vars[key]))
        else:
            nengo_count += int(np.count_nonzero(mask))
    if nengo_count != keras_count:
        raise ValidationError(
            f"The converted network has {nengo_count} trainable parameters and the "
            f"Keras model {keras_count}, so they do not train alike. Layers that "
            "convert to fixed Nengo objects (inference_only), split shared weights "
            "or custom converters that mark their connections trainable "
            "differently change the number",
            attr="model",
        )


def _train_keras(model, trainable, fixed, x):
    """``model``'s variables after ``verify``'s training (not assigned to it)."""

    def loss(trainable, fixed):
        outputs, fixed = model.stateless_call(trainable, fixed, x, training=True)
        errors = [jnp.mean(jnp.square(y - 1)) for y in keras.tree.flatten(outputs)]
        return sum(errors), fixed

    gradient = jax.grad(loss, has_aux=True)
    for _ in range(VERIFY_EPOCHS):
        grads, fixed = gradient(trainable, fixed)
        trainable = [
            w - VERIFY_LEARNING_RATE * g for w, g in zip(trainable, grads, strict=True)
        ]
    return trainable, fixed


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
