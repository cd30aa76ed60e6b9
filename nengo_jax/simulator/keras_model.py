"""The Keras model behind a Simulator's Keras calls (``fit``, ``predict``...).

Keras (on its JAX backend) runs the training loop, optimizers, losses, metrics
and callbacks; this model only maps Keras calls onto the simulation program. Its
variables hold the simulator's parameters (trainable where the ``trainable``
config says so) and its state (non-trainable), so that Keras passes them into
its compiled steps as arguments and nothing is baked in as a constant.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import keras
import numpy as np

from nengo_jax.program.host import compute_streams, host_call
from nengo_jax.program.program import RNG_KEY
from nengo_jax.simulator.inputs import STEPS_INPUT
from nengo_jax.simulator.runtime import copies


def variable_name(key: str) -> str:
    """A Keras variable name for an array key (Keras forbids ``/``)."""
    return re.sub(r"[^\w.\-\[\]#]", "_", key)


class SimulatorModel(keras.Model):
    """A Keras model that simulates the network for ``n_steps`` per call.

    Inputs are ``{input_name: (B, n_steps, size_out)}`` (see ``input_names``),
    outputs ``{output_name: (B, n_steps, size)}`` for every probe (see
    ``output_names``), where ``B`` is the simulator's ``minibatch_size``.

    Parameters
    ----------
    program : Program
        The simulation program.
    params : dict
        Parameter key -> initial value.
    state : dict
        State key -> initial value (with the batch axis).
    masks : dict
        Trainable parameter key -> True, or a boolean mask of its trainable
        elements.
    inputs : dict
        Input name -> the Node output signal it feeds, in Node build order.
    outputs : dict
        Output name -> probe key of ``program``.
    step_key : str
        State key of the step counter.
    training : callable
        ``training(keras_flag)``: whether a call runs the training version of
        the model (see `Runtime.training`).
    sharding : callable
        ``sharding(key)``: the `jax.sharding.Sharding` of the variable of a
        parameter or state key (None: JAX's default device; see
        `.distribution.Placement.sharding`).
    gather_outputs : bool
        Whether ``predict`` gathers its outputs on every device (replicated),
        so that each process of several can read all of them.
    """

    def __init__(
        self,
        program,
        params,
        state,
        masks,
        inputs,
        outputs,
        step_key,
        training=bool,
        sharding=lambda key: None,
        gather_outputs=False,
    ):
        super().__init__(name="nengo_jax_simulator")
        self.program = program
        self.masks = masks
        self.input_signals = inputs
        self.output_keys = outputs
        self.step_key = step_key
        self.training = training
        self.sharding = sharding
        self.gather_outputs = gather_outputs
        self.param_vars = {
            key: keras.Variable(
                value,
                dtype=value.dtype,
                trainable=key in masks,
                name=variable_name(key),
                layout=sharding(key),
            )
            for key, value in params.items()
        }
        self.state_vars = {
            key: keras.Variable(
                value,
                dtype=value.dtype,
                trainable=False,
                name=variable_name(key),
                layout=sharding(key),
            )
            for key, value in state.items()
        }
        # whether a call keeps its final state (a variable: no retrace to change)
        self.stateful = keras.Variable(
            False, dtype="bool", trainable=False, name="stateful", layout=sharding("")
        )
        # training calls so far: each draws new random numbers (e.g. Dropout
        # masks), although a training call keeps no state (a variable: Keras
        # carries it from one training step to the next)
        self.training_calls = keras.Variable(
            0,
            dtype="uint32",
            trainable=False,
            name="training_calls",
            layout=sharding(""),
        )
        self.stream_cache = {}
        #: Losses over several outputs at once: ``(names, f(outputs, targets))``,
        #: each given lists in the order of ``names`` (`Simulator.train`).
        self.objectives = []

    @property
    def input_names(self) -> list:
        """Names of the Node inputs, in build order."""
        return list(self.input_signals)

    @property
    def output_names(self) -> list:
        """Names of the probe outputs, in probe order."""
        return list(self.output_keys)

    def call(self, inputs, training=None):
        training = self.training(training)
        unknown = set(inputs) - set(self.input_signals) - {STEPS_INPUT}
        if unknown:
            raise ValueError(
                f"Unknown inputs {sorted(unknown)}; the model's inputs are "
                f"{self.input_names} (and {STEPS_INPUT!r}, which only sets the "
                "number of steps)"
            )
        names = [name for name in self.input_signals if name in inputs]
        n_steps = int(next(iter(inputs.values())).shape[1])
        dtype = self.program.layout.dtype
        xs = {
            f"data{i}": jnp.swapaxes(jnp.asarray(inputs[name], dtype), 0, 1)
            for i, name in enumerate(names)
        }
        fed = tuple(self.input_signals[name] for name in names)
        params = {}
        for key, var in self.param_vars.items():
            value = var.value
            mask = self.masks.get(key)
            if mask is not None and mask is not True:
                value = jnp.where(mask, value, jax.lax.stop_gradient(value))
            params[key] = value
        state = {key: var.value for key, var in self.state_vars.items()}
        if training:
            count = self.training_calls.value
            state[RNG_KEY] = jax.random.fold_in(state[RNG_KEY], count)
            self.training_calls.assign(count + 1)
        xs.update(self._streams(fed, state, n_steps))
        new_state, outputs = self.program.run_nested(
            params, state, xs, n_steps=n_steps, fed=fed, training=training
        )
        keep = self.stateful.value
        for key, var in self.state_vars.items():
            var.assign(jnp.where(keep, new_state[key], var.value))
        outputs = self.program.unpack(outputs, flat=True)
        return {
            name: jnp.swapaxes(outputs[key], 0, 1)
            for name, key in self.output_keys.items()
        }

    def predict_step(self, state, data):
        outputs, state = super().predict_step(state, data)
        if self.gather_outputs:
            outputs = jax.lax.with_sharding_constraint(outputs, self.sharding(""))
        return outputs, state

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        for names, objective in self.objectives:
            total = total + objective(
                [y_pred[name] for name in names], [y[name] for name in names]
            )
        return total

    #: ``(name, loss weight)`` of the one output with a loss, if only one has:
    #: Keras then names its results ``loss``, ``mae``...; NengoDL (and these
    #: results) also ``<name>_loss``, ``<name>_mae``...
    single_output = None

    def get_metrics_result(self):
        result = super().get_metrics_result()
        if self.single_output is None:
            return result
        name, weight = self.single_output
        renamed = {
            key if key == "loss" or key.startswith(f"{name}_") else f"{name}_{key}": v
            for key, v in result.items()
        }
        if "loss" in result:
            renamed.setdefault(f"{name}_loss", result["loss"] / weight)
        return renamed

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Keras wants targets for every output it computes metrics over; only
        # the probes given targets have losses or metrics
        if isinstance(y, dict):
            y_pred = {name: value for name, value in y_pred.items() if name in y}
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # -- compiled steps --------------------------------------------------------------

    # JAX compiles a jitted function again for an argument that is not
    # committed to its device where it was before (or the reverse). Keras makes
    # uncommitted arrays: an optimizer's new variables, the metrics it resets
    # at every epoch, and values assigned from Python; its steps return
    # committed ones. So its step would compile up to three times per call
    # (0.3-0.7 s each): first step, later steps, first step of an epoch.
    # Committed first, every step runs the one program.

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            super().make_train_function(force)
            self.train_function = _committing(self.train_function, self.sharding(""))

    def make_test_function(self, force=False):
        if self.test_function is None or force:
            super().make_test_function(force)
            self.test_function = _committing(self.test_function, self.sharding(""))

    def make_predict_function(self, force=False):
        if self.predict_function is None or force:
            super().make_predict_function(force)
            self.predict_function = _committing(
                self.predict_function, self.sharding("")
            )
        return self.predict_function

    # -- host inputs ---------------------------------------------------------------

    def _streams(self, fed, state, n_steps):
        """Host stream values for this call's steps, through one host callback."""
        streams = self.program.active_streams(fed)
        if not streams:
            return {}
        B = self.program.minibatch_size
        shapes = tuple(
            jax.ShapeDtypeStruct(
                (n_steps,) + ((B,) if s.batched else ()) + s.shape, s.dtype
            )
            for s in streams
        )
        step = state[self.step_key].reshape(-1)[0]

        def compute(step):
            steps = np.arange(int(step) + 1, int(step) + 1 + n_steps)
            return tuple(self._stream_values(s, steps) for s in streams)

        values = host_call(
            compute,
            shapes,
            step,
            errors=self.program.host_errors,
            what="the host inputs",
        )
        replicated = self.sharding("")
        if replicated is not None:
            # (a callback called outside jit, as Keras calls the model to build
            # it, returns arrays on one device: jit refuses them beside the
            # mesh's)
            values = jax.device_put(values, replicated)
        return {s.key: v for s, v in zip(streams, values, strict=True)}

    def _stream_values(self, stream, steps):
        cached = self.stream_cache.get(stream.key)
        if cached is not None and np.array_equal(cached[0], steps):
            return cached[1]
        (value,) = compute_streams([stream], steps, self.program.dt)
        self.stream_cache[stream.key] = (steps, value)
        return value

    # -- values in and out ---------------------------------------------------------

    def set_values(self, params, state, stateful):
        """Load copies of the simulator's parameters and state into the variables.

        Copies, because Keras donates variable buffers to its compiled steps: the
        simulator's own arrays must survive a failed call.
        """
        values = copies([params[key] for key in self.param_vars])
        for var, value in zip(self.param_vars.values(), values, strict=True):
            var.assign(value)
        self.set_state(state)
        self.stateful.assign(bool(stateful))

    def set_state(self, state):
        """Load a copy of ``state`` into the state variables."""
        values = copies([state[key] for key in self.state_vars])
        for var, value in zip(self.state_vars.values(), values, strict=True):
            var.assign(value)

    def param_values(self) -> dict:
        return {key: var.value for key, var in self.param_vars.items()}

    def state_values(self) -> dict:
        return {key: var.value for key, var in self.state_vars.items()}


def _committing(step_function, replicated):
    """``step_function(state, data)`` with ``state``'s arrays first placed as
    its steps return them (see `SimulatorModel.make_train_function`).

    On one device: uncommitted arrays committed to it. Over a mesh
    (``replicated``, the mesh's replicated sharding), Keras lays out the
    variables it made in its distribution's scope; the others (metrics reset
    to uncommitted zeros), which JAX would replicate in another form (a
    ``GSPMDSharding``) than the steps return (a ``NamedSharding``), are put
    in that one.
    """
    if keras.distribution.distribution() is None:

        def place(x):
            if isinstance(x, jax.Array) and not x.committed:
                return jax.device_put(x, x.sharding)
            return x

    elif isinstance(replicated, jax.sharding.NamedSharding):

        def place(x):
            if isinstance(x, jax.Array) and not x.committed:
                return jax.device_put(x, replicated)
            return x

    else:
        return step_function

    def placed_step(state, data):
        return step_function(jax.tree_util.tree_map(place, state), data)

    return placed_step
