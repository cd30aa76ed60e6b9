"""The training API of NengoDL 2 (seeds 002 and 003): ``train`` and ``loss``.

Both are thin layers over the Keras calls. ``data`` mixes inputs and targets:
``{node_or_probe: (batch, n_steps, size)}``. An ``objective`` maps a Probe (or a
tuple of Probes) to a function of ``(outputs, targets)`` or of ``(outputs)``
that returns a scalar, or to None: the targets are then the gradient of the
loss with respect to the outputs. Several objectives are summed.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import keras
import numpy as np
from nengo import Connection, Ensemble, Node, Probe
from nengo.ensemble import Neurons
from nengo.exceptions import SimulationError, ValidationError

from nengo_jax import obj
from nengo_jax.callbacks import TensorBoard


class LegacyTraining:
    """``train`` and ``loss``, mixed into the `.Simulator`."""

    def train(
        self,
        data,
        optimizer,
        n_epochs=1,
        objective=None,
        truncation=None,
        summaries=None,
        shuffle=True,
        **kwargs,
    ):
        """Optimize the model's parameters (NengoDL 2's ``sim.train``).

        Parameters
        ----------
        data : dict
            Input Nodes and target Probes (or their labels) ->
            ``(batch, n_steps, size)`` arrays.
        optimizer : keras.optimizers.Optimizer
            The optimizer.
        n_epochs : int
            Passes through the data.
        objective : dict or callable
            ``{probe: f}``, ``{(p0, p1): f}`` or one ``f`` for every probe with
            targets; ``f(outputs, targets)`` or ``f(outputs)`` returns a scalar;
            None as ``f`` means the targets are the error gradient. Default:
            mean squared error on every probe with targets.
        truncation : int
            Backpropagate through this many steps at a time, carrying the state
            from one piece of the data to the next (truncated BPTT).
        summaries : list
            What to log for TensorBoard in the Simulator's ``tensorboard``
            directory, every epoch: Connections (weights), Ensembles (encoders),
            Neurons (biases) as histograms, and ``"loss"`` (always written).
        shuffle : bool
            Whether to reorder the examples every epoch.
        kwargs
            Passed on to `fit` (e.g. ``callbacks``, ``verbose``).

        Returns
        -------
        keras.callbacks.History or None
            The History of `fit` (None with ``truncation``).
        """
        x, y = self._split_data(data)
        if summaries:
            kwargs["callbacks"] = list(kwargs.get("callbacks", [])) + [
                self._summaries_callback(summaries)
            ]
        self._compile_objectives(objective, y, optimizer=optimizer)
        if truncation is None:
            kwargs.setdefault("verbose", 0 if self.progress_bar is False else "auto")
            return self.fit(x, y, epochs=n_epochs, shuffle=shuffle, **kwargs)
        return self._train_truncated(x, y, n_epochs, int(truncation), shuffle)

    def loss(self, data, objective=None, **kwargs):
        """The value of ``objective`` on ``data``, with spiking neurons spiking.

        Parameters are as in `train`. Returns the total loss as a float.
        """
        x, y = self._split_data(data)
        self._compile_objectives(objective, y)
        kwargs.setdefault("verbose", 0)
        return float(self.evaluate(x, y, **kwargs)["loss"])

    # -- helpers ------------------------------------------------------------------

    def _summaries_callback(self, summaries):
        if self.tensorboard is None:
            raise ValidationError(
                "summaries are written to the Simulator's TensorBoard directory; "
                "create it with Simulator(..., tensorboard=log_dir)",
                attr="summaries",
            )
        histograms = {}
        for item in summaries:
            if isinstance(item, str) and item == "loss":
                continue  # the loss is always written
            signal = _summary_signal(self.model, item)
            histograms[_summary_tag(item, signal)] = self._live_reader(signal)
        self._n_summaries = getattr(self, "_n_summaries", 0) + 1
        log_dir = f"{self.tensorboard}/run_{self._n_summaries - 1}"
        return TensorBoard(log_dir=log_dir, histograms=histograms)

    def _split_data(self, data):
        if not isinstance(data, dict):
            raise ValidationError(
                "data must be a dict of Node or Probe -> array; got "
                f"{type(data).__name__}",
                attr="data",
            )
        x, y = {}, {}
        for key, value in data.items():
            if isinstance(key, str):
                is_probe = any(p.label == key for p in self.model.probes)
                (y if is_probe else x)[key] = value
            elif isinstance(key, Probe):
                y[key] = value
            elif isinstance(key, Node):
                x[key] = value
            else:
                raise ValidationError(
                    f"data keys must be Nodes, Probes or their labels; got {key!r}",
                    attr="data",
                )
        return x, y

    def _compile_objectives(self, objective, y, optimizer="rmsprop"):
        """Compile the Keras model with ``objective`` as its loss."""
        targets = [self._find_probe(key) for key in y]
        if objective is None:
            objective = {probe: obj.mse for probe in targets}
        elif not isinstance(objective, dict):
            objective = {probe: objective for probe in targets}
        objectives = []
        for key, fn in objective.items():
            probes = key if isinstance(key, tuple) else (key,)
            names = tuple(self._output_name(self._find_probe(p)) for p in probes)
            objectives.append((names, _joint(fn, len(probes) > 1)))
        model = self.keras_model
        with self._runtime.call("compile"):
            model.compile(optimizer=optimizer, loss=None)
        model.objectives = objectives
        model.single_output = None
        self._loss_outputs = {name for names, _ in objectives for name in names}
        self._nan_targets = frozenset(
            self._output_name(self._find_probe(p))
            for key, fn in objective.items()
            if fn is obj.mse
            for p in (key if isinstance(key, tuple) else (key,))
        )
        self._loss_weights = {}

    def _train_truncated(self, x, y, n_epochs, truncation, shuffle):
        """Truncated BPTT: each minibatch runs ``truncation`` steps at a time."""
        if truncation < 1:
            raise ValidationError(
                f"Must be a positive number of steps; got {truncation}",
                attr="truncation",
            )
        self._check_open("train")
        if not self.keras_model.trainable_variables:
            raise SimulationError(
                "The model has no trainable parameters (see the `trainable` config "
                "option), so train has nothing to train"
            )
        x, y = self._keras_data(x, y, None, "fit")
        model, B = self.keras_model, self.minibatch_size
        n_items, n_steps = next(iter(x.values())).shape[:2]
        rng = np.random.RandomState(self.seed)
        progbar = keras.utils.Progbar(
            n_epochs * (n_items // B),
            verbose=0 if self.progress_bar is False else 1,
        )
        state = self._state
        with self._runtime.keras(
            model, "train", stateful=True, keep_state=False, trains=True
        ):
            for _ in range(n_epochs):
                order = rng.permutation(n_items) if shuffle else np.arange(n_items)
                for start in range(0, n_items, B):
                    batch = order[start : start + B]
                    model.set_state(state)
                    for t in range(0, n_steps, truncation):
                        piece = slice(t, t + truncation)
                        logs = model.train_on_batch(
                            {k: v[batch, piece] for k, v in x.items()},
                            {k: v[batch, piece] for k, v in y.items()},
                            return_dict=True,
                        )
                    progbar.add(1, values=[("loss", logs["loss"])])
        return None


def _joint(fn, several):
    """``fn`` as ``f(outputs_list, targets_list) -> scalar`` (see the module)."""
    if fn is None:

        def gradient_is_target(outputs, targets):
            # d/d(outputs) of sum(targets * outputs) is the targets themselves
            return sum(
                jnp.sum(jax.lax.stop_gradient(t) * o)
                for o, t in zip(outputs, targets, strict=True)
            )

        return gradient_is_target
    n_args = _n_args(fn)

    def joint(outputs, targets):
        if not several:
            outputs, targets = outputs[0], targets[0]
        return fn(outputs) if n_args == 1 else fn(outputs, targets)

    return joint


def _n_args(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    return 1 if len(positional) == 1 else 2


def _summary_signal(model, item):
    """The parameter signal a summary of ``item`` shows."""
    attr = {Connection: "weights", Ensemble: "encoders", Neurons: "bias"}.get(
        type(item)
    )
    signal = model.sig[item].get(attr) if attr and item in model.sig else None
    if signal is None:
        raise ValidationError(
            f"Cannot summarize {item!r}: summaries take Connections (weights), "
            "Ensembles (encoders), Neurons (biases) of this network and 'loss'",
            attr="summaries",
        )
    return signal


def _summary_tag(item, signal):
    return f"{item}.{signal.name.rsplit('.', 1)[-1]}"
