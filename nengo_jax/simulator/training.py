"""The Simulator's Keras calls: ``compile``, ``fit``, ``evaluate``, ``predict``.

Inputs are ``{node_or_label: (batch, n_steps, size_out)}`` and targets
``{probe_or_label: (batch, n_steps, size_in)}``, with ``batch`` a multiple of
the simulator's ``minibatch_size``; Keras splits them into minibatches. In
``fit`` spiking neurons run as their rate approximations; everything else runs
the model as built.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from nengo.exceptions import SimulationError, SimulatorClosed, ValidationError

from nengo_jax.losses import nan_mse
from nengo_jax.program.signals import SignalEnv
from nengo_jax.simulator.data import HostValues
from nengo_jax.simulator.distribution import ACROSS_PROCESSES
from nengo_jax.simulator.keras_model import SimulatorModel
from nengo_jax.simulator.streams import checked_stream, is_stream
from nengo_jax.tensor_node import TensorNode, layer_weights


class KerasMethods:
    """Keras-style training and inference, mixed into the `.Simulator`."""

    _keras = None
    _loss_outputs = frozenset()
    #: Outputs whose loss takes NaN targets ("no target here": `losses.nan_mse`).
    _nan_targets = frozenset()
    _loss_weights = {}

    # -- the model ------------------------------------------------------------------

    @property
    def keras_model(self) -> SimulatorModel:
        """(SimulatorModel) The Keras model that runs this simulator's Keras calls.

        Its variables are loaded from the simulator before each call, and the
        simulator takes the trained parameters back after it.
        """
        self._check_open("use the Keras model of")
        if self._keras is None:
            if keras.backend.backend() != "jax":
                raise SimulationError(
                    "nengo_jax needs Keras on its JAX backend; Keras was imported "
                    f"with the {keras.backend.backend()!r} backend. Set the "
                    "environment variable KERAS_BACKEND=jax before importing keras."
                )
            masks = self._layout.trainable_masks(
                self.settings.trainable_signals(self.model)
            )
            with self._jax_scope():
                self._keras = SimulatorModel(
                    self._program,
                    self._layout.initial_params(),
                    self._layout.initial_state(self.minibatch_size)
                    | self._placement.to_host(dict(self._state)),
                    masks,
                    self._input_signals(),
                    {self._output_name(p): k for p, k in self._probe_keys.items()},
                    step_key=self._layout.key(self.model.step),
                    training=self._runtime.training,
                    sharding=self._runtime.placement.sharding,
                    # (across processes: every process reads all of predict's
                    # outputs, as all of a run's probe data)
                    gather_outputs=not self._placement.local,
                )
                _layer_weight_options(self.model, self._layout, self._keras)
        return self._keras

    def _write_layers(self, params):
        """Put the values of the Keras layers' weights in ``params`` into the
        layers' own variables: as in NengoDL, a layer holds its trained weights
        (and a new Simulator of the network starts from them)."""
        host = HostValues(self._layout, params, None)
        for node in self.model.sig:
            if not isinstance(node, TensorNode):
                continue
            for var, name in layer_weights(node):
                sig = self.model.sig[node][name]
                if host.has(sig):
                    var.assign(np.asarray(host.read(sig), dtype=var.dtype))

    def get_name(self, obj) -> str:
        """The name of an input Node or a Probe in the Keras model, as NengoDL
        names them (see `nengo_jax.simulator.inputs.keras_names`): the keys of
        ``predict``'s outputs by name, and of the losses and metrics in
        ``fit``'s history (``<name>_loss``).

        Raises
        ------
        ValidationError
            If ``obj`` is neither a Node that takes input data nor a Probe of
            this Simulator's network.
        """
        for names in (self._inputs.input_nodes, self._inputs.probe_names):
            if obj in names:
                return names[obj]
        raise ValidationError(
            f"{obj} has no name in the Keras model: only Nodes that take input "
            "data (no input, an output) and Probes of this Simulator's network do",
            attr="obj",
        )

    def _input_signals(self) -> dict:
        """Keras input name -> the output signal of the Node it feeds."""
        return {
            name: self.model.sig[node]["out"]
            for node, name in self._inputs.input_nodes.items()
        }

    def _output_name(self, probe) -> str:
        return self._inputs.probe_names[probe]

    def _check_open(self, action):
        if self.closed:
            raise SimulatorClosed(f"Cannot {action} a closed Simulator.")

    # -- Keras calls ----------------------------------------------------------------

    def compile(
        self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs
    ):
        """Configure training, as `keras.Model.compile`.

        Parameters
        ----------
        optimizer : str or keras.optimizers.Optimizer
            The optimizer.
        loss, metrics, loss_weights
            Each either a dict keyed by Probe (or probe label), a list in the order
            of the network's probes, or a single value applied to every probe
            (metrics: to every probe with a loss).
        kwargs
            Passed on to `keras.Model.compile`.
        """
        model = self.keras_model
        losses = self._per_probe(loss, "loss")
        weights = self._per_probe(loss_weights, "loss_weights")
        if losses is not None and weights is not None:
            weights = {name: weights.get(name, 1.0) for name in losses}
        with self._runtime.call("compile"):
            model.compile(
                optimizer=optimizer,
                loss=losses,
                # ({}: none; Keras 3 keeps an earlier compile's metrics for None)
                metrics=self._per_probe(metrics, "metrics", listed=True, only=losses)
                or {},
                loss_weights=weights,
                **kwargs,
            )
        model.objectives = []
        model.single_output = None
        if losses is not None and len(losses) == 1:
            (name,) = losses
            model.single_output = (name, float((weights or {}).get(name, 1.0)))
        self._loss_outputs = set(losses or ())
        self._nan_targets = frozenset(
            name for name, fn in (losses or {}).items() if fn is nan_mse
        )
        self._loss_weights = weights or {}

    def fit(self, x=None, y=None, n_steps=None, stateful=False, **kwargs):
        """Train the model's parameters, as `keras.Model.fit`.

        Spiking neurons run as their rate approximations (see ``learning_phase``).

        Parameters
        ----------
        x : dict or array or list or stream
            Node (or Node label) -> ``(batch, n_steps, size_out)`` input data; an
            array for the first input Node (the others run their own outputs),
            or a list of arrays for the input Nodes in order. Or a stream of
            minibatches, as Keras takes them (a generator or other iterable,
            or a `keras.utils.PyDataset`), each ``x`` or ``(x, y)`` with
            ``minibatch_size`` items (see `nengo_jax.simulator.streams`); ``y``
            is then None.
        y : dict or array
            Probe (or label) -> ``(batch, n_steps, size_in)`` targets; an array
            if the network has one probe.
        n_steps : int
            Number of steps, needed only if ``x`` has no arrays.
        stateful : bool
            Whether each minibatch continues from the previous one's final state
            and the simulator keeps the final state; by default every minibatch
            starts from the simulator's current state, which does not change.
        kwargs
            Passed on to `keras.Model.fit` (``epochs``, ``callbacks``,
            ``validation_data``, ``shuffle``...). The validation data runs the
            inference model, as `evaluate` does: with spiking neurons, its
            ``val_loss`` is that of the spiking network.

        Returns
        -------
        keras.callbacks.History

        Raises
        ------
        nengo.exceptions.SimulationError
            If no optimizer and loss were compiled, the simulator was built with
            ``inference_only=True``, or it is closed.
        nengo.exceptions.ValidationError
            If ``x`` or ``y`` do not fit the network: unknown objects, wrong
            shapes, non-finite values, a probe with a loss but no targets.
            Nothing is trained then.
        """
        self._check_open("fit")
        if self.settings.inference_only:
            raise SimulationError(
                "This Simulator was built with configure_settings(inference_only="
                "True), which has no training; remove that setting to use fit"
            )
        model = self.keras_model
        if getattr(model, "optimizer", None) is None or not self._loss_outputs:
            raise SimulationError(
                "fit needs a loss: call sim.compile(optimizer, loss=...) first"
            )
        self._drop_batch_size(kwargs, "fit")
        x, y = self._keras_data(x, y, n_steps, "fit", targets=True, streams=True)
        validation = kwargs.get("validation_data")
        if is_stream(validation):
            kwargs["validation_data"] = self._keras_data(
                validation, None, n_steps, "fit", targets=True, streams=True
            )[0]
        elif validation is not None:
            if not isinstance(validation, tuple | list) or len(validation) not in (
                2,
                3,
            ):
                raise ValidationError(
                    "validation_data must be (x, y) or (x, y, sample_weight); got "
                    f"{type(validation).__name__}",
                    attr="validation_data",
                )
            vx, vy = self._keras_data(
                validation[0], validation[1], n_steps, "fit", targets=True
            )
            kwargs["validation_data"] = (vx, vy) + tuple(validation[2:])
        return self._keras_call(
            "fit", stateful, x, y, batch_size=self._local_batch(), **kwargs
        )

    def evaluate(self, x=None, y=None, n_steps=None, stateful=False, **kwargs):
        """The loss (per probe and in total) and metrics, as `keras.Model.evaluate`.

        Like `predict` and `run`, and unlike `fit`, this runs the inference
        model: spiking neurons spike (unless ``configure_settings(
        learning_phase=True)``), so a spiking network's loss here can be far
        from the training loss `fit` reports (which uses rates), and so can
        ``fit``'s ``val_loss``, computed the same way.

        Parameters are as in `fit`; the result is a dict unless
        ``return_dict=False`` is given.

        Returns
        -------
        dict
            ``"loss"`` (the total), ``"<probe>_loss"`` per probe with a loss,
            and the metrics, as Keras names them.

        Raises
        ------
        nengo.exceptions.SimulationError
            If no loss was compiled, or the simulator is closed.
        nengo.exceptions.ValidationError
            If ``x`` or ``y`` is not valid for the network (see `fit`).
        """
        self._check_open("evaluate")
        model = self.keras_model
        if getattr(model, "optimizer", None) is None:
            raise SimulationError(
                "evaluate needs a loss: call sim.compile(loss=...) first"
            )
        self._drop_batch_size(kwargs, "evaluate")
        x, y = self._keras_data(x, y, n_steps, "evaluate", targets=True, streams=True)
        kwargs.setdefault("return_dict", True)
        result = self._keras_call(
            "evaluate", stateful, x, y, batch_size=self._local_batch(), **kwargs
        )
        return result

    def predict(self, x=None, n_steps=None, stateful=False, **kwargs):
        """Simulate inputs in minibatches, as `keras.Model.predict`.

        Parameters are as in `fit`.

        Returns
        -------
        dict
            Probe -> ``(batch, n_steps, size_in)`` array.
        """
        self._check_open("predict")
        self._drop_batch_size(kwargs, "predict")
        x, _ = self._keras_data(x, None, n_steps, "predict", streams=True)
        outputs = self._keras_call(
            "predict", stateful, x, batch_size=self._local_batch(), **kwargs
        )
        return self._by_probe(outputs)

    def predict_on_batch(self, x=None, n_steps=None, stateful=False):
        """Simulate one minibatch of inputs, as `keras.Model.predict_on_batch`.

        Parameters
        ----------
        x : dict or array or list
            Input data as in `predict`, exactly ``minibatch_size`` items.
        n_steps : int
            Number of steps, needed only if ``x`` has no arrays.
        stateful : bool
            Whether the simulator keeps the final state (see `fit`).

        Returns
        -------
        dict
            Probe -> ``(minibatch_size, n_steps, size_in)`` array.

        Raises
        ------
        nengo.exceptions.ValidationError
            If ``x`` is not one minibatch of valid data.
        """
        self._check_open("predict")
        x, _ = self._keras_data(x, None, n_steps, "predict_on_batch")
        batch = len(next(iter(x.values())))
        if batch != self._local_batch():
            share = ""
            if self._local_batch() != self.minibatch_size:
                share = f" (this process's share: {self._local_batch()})"
            raise ValidationError(
                f"predict_on_batch takes exactly minibatch_size={self.minibatch_size}"
                f" items{share}; got {batch}. Use predict for more.",
                attr="x",
            )
        # (Keras takes this minibatch as it is: across processes, it is one of
        # the processes' shares)
        x = self._placement.from_shares(x)
        return self._by_probe(self._keras_call("predict_on_batch", stateful, x))

    # -- helpers --------------------------------------------------------------------

    def _keras_call(self, method, stateful, *args, **kwargs):
        """Run a Keras method; the simulator changes only if it succeeds."""
        model = self.keras_model
        if stateful and not self.settings.stateful:
            warnings.warn(
                f"stateful=True is ignored by {method}: this Simulator keeps no "
                "state between calls (configure_settings(stateful=False))",
                UserWarning,
                stacklevel=3,
            )
            stateful = False
        if method in ("fit", "evaluate", "predict"):
            # Ctrl-C is noted during a call (see deferred_interrupts); Keras's
            # loop raises it after the batch it arrives in
            kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [
                InterruptCheck(self._runtime)
            ]
        if args and is_stream(args[0]):
            kwargs.pop("batch_size", None)  # (the stream's own)
            if method == "fit" and not isinstance(args[0], keras.utils.PyDataset):
                # a generator cannot be shuffled (Keras warns if asked to, as
                # its fit does by default)
                kwargs.setdefault("shuffle", False)
        trains = method in ("fit", "train_on_batch")
        with self._runtime.keras(model, method, stateful, trains=trains):
            return getattr(model, method)(*args, **kwargs)

    def _live_reader(self, signal):
        """A function returning ``signal``'s value now (during `fit`, Keras's
        latest values, synced before epoch-end callbacks)."""

        def read():
            params, state = self._runtime.live_values()
            env = SignalEnv(
                self._layout,
                {**params, **state},
                {},
                self.minibatch_size,
                self.dt,
                None,
            )
            value = np.asarray(env.read(signal))
            return value[0] if env.is_batched(signal) else value

        return read

    def _by_probe(self, outputs):
        names = {self._output_name(p): p for p in self.model.probes}
        return {names[name]: np.asarray(value) for name, value in outputs.items()}

    def _local_batch(self) -> int:
        """The items of each minibatch that this process gives a Keras call: its
        share, across processes (see `.distribution.process_share`)."""
        return len(self._placement.local_rows(self.minibatch_size))

    def _drop_batch_size(self, kwargs, method):
        if kwargs.pop("batch_size", None) is not None:
            warnings.warn(
                f"batch_size is ignored by {method}: minibatches always have the "
                f"Simulator's minibatch_size ({self.minibatch_size}), which is "
                "built into the model",
                UserWarning,
                stacklevel=3,
            )

    def _find_probe(self, key):
        return self._inputs.probe(key)

    def _per_probe(self, value, what, listed=False, only=None):
        """``value`` as ``{output_name: value}`` (see `compile`).

        A single value applies to every probe, or to the probes in ``only``.
        """
        if value is None:
            return None
        probes = self.model.probes
        if isinstance(value, dict):
            return {self._output_name(self._find_probe(k)): v for k, v in value.items()}
        if (
            isinstance(value, list | tuple)
            and len(value) == len(probes)
            and not (listed and len(probes) == 1)
        ):
            return {self._output_name(p): v for p, v in zip(probes, value, strict=True)}
        if listed and not isinstance(value, list | tuple):
            value = [value]
        names = [self._output_name(p) for p in probes]
        return {name: value for name in names if only is None or name in only}

    def _keras_data(self, x, y, n_steps, method, targets=False, streams=False):
        """Checked inputs and targets, named as the Keras model names them; with
        ``targets``, exactly the probes with a loss need targets. With
        ``streams``, ``x`` may be a stream of minibatches (see `.streams`): it
        is returned as a stream checking each minibatch as it is read."""
        loss_outputs = self._loss_outputs if targets else None
        place = self._placement
        share = None
        if not place.local and method in ACROSS_PROCESSES:
            share = self._local_batch()
        if not is_stream(x):

            def check():
                xk, yk = self._inputs.keras_data(
                    x,
                    y,
                    n_steps,
                    method,
                    loss_outputs,
                    nan_targets=self._nan_targets,
                    share=share,
                )
                return (xk, yk), _described(xk, yk)

            return check()[0] if share is None else place.agree(method, check)
        if share is not None:
            raise ValidationError(
                f"{method} across {place.processes} processes takes arrays (in "
                f"each process its share, see nengo_jax.process_share); got a "
                f"{type(x).__name__}. A stream is read a minibatch at a time, so "
                "the processes could not check first that their streams fit "
                "together, and one whose stream failed would leave the others "
                "waiting for it.",
                attr="x",
            )
        if not streams or y is not None:
            raise ValidationError(
                f"{method} takes x as arrays (a dict of Node -> array, or one "
                f"array); got a {type(x).__name__}"
                if not streams
                else f"{method} takes the targets from the stream x (as Keras): "
                "give y=None",
                attr="x" if not streams else "y",
            )

        def convert(xb, yb, steps):
            return self._inputs.keras_data(
                xb,
                yb,
                steps if steps is not None else n_steps,
                method,
                loss_outputs,
                nan_targets=self._nan_targets,
                one_batch=True,
            )

        return checked_stream(x, convert, method), None


def _described(xk, yk) -> tuple:
    """``(items, steps, signature)`` of a Keras call's data (see
    `.distribution.Placement.agree`)."""
    first = next(iter(xk.values()))
    signature = [
        sorted((name, array.shape[1:]) for name, array in data.items())
        for data in (xk, yk or {})
    ]
    return len(first), first.shape[1], signature


class InterruptCheck(keras.callbacks.Callback):
    """Raises a noted interrupt (Ctrl-C) after each batch of a Keras call."""

    def __init__(self, runtime):
        super().__init__()
        self.runtime = runtime

    def on_train_batch_end(self, batch, logs=None):
        self.runtime.check_interrupt()

    on_test_batch_end = on_predict_batch_end = on_train_batch_end


def _layer_weight_options(model, layout, keras_model):
    """Give TensorNode layers' regularizers and constraints to their parameters.

    A Keras layer in a `.TensorNode` keeps its weights in Simulator
    parameters; the Keras variable of each trainable one gets the layer
    weight's ``regularizer`` (Keras adds it to the training loss) and
    ``constraint`` (which the optimizer applies after each update), as the
    layer would have in Keras. Activity regularizers are not applied.
    """
    for obj, sigs in model.sig.items():
        if not isinstance(obj, TensorNode):
            continue
        for var, name in layer_weights(obj):
            sig = sigs.get(name)
            if sig is None or (var.regularizer is None and var.constraint is None):
                continue
            for key, mask in layout.trainable_masks([sig]).items():
                # the parameter is this weight alone, and trains
                if mask is True and keras_model.masks.get(key) is True:
                    param = keras_model.param_vars[key]
                    param.regularizer = var.regularizer
                    param.constraint = var.constraint
