"""`IsolateState`: Keras calls that leave a Simulator's state as it was."""

from __future__ import annotations

import keras
from nengo.exceptions import SimulatorClosed, ValidationError


def check_simulator(sim, callback):
    """Raise unless ``sim`` is an open nengo_jax Simulator (for ``callback``)."""
    from nengo_jax.simulator import Simulator

    if not isinstance(sim, Simulator):
        raise ValidationError(
            f"must be a nengo_jax.Simulator; got {type(sim).__name__} {sim!r}",
            attr="sim",
            obj=callback,
        )
    if sim.closed:
        raise SimulatorClosed(
            f"{type(callback).__name__} needs an open Simulator; this one is closed"
        )


class IsolateState(keras.callbacks.Callback):
    """Keep the simulation state from being changed by a Keras call.

    Saves the Simulator's state (neuron, synapse and learning-rule state, time
    and step count) when created. In a ``stateful=True`` call (``fit``,
    ``evaluate``, ``predict``, including the validation inside ``fit``), every
    minibatch after the first then starts from that saved state, and the call
    leaves the Simulator in it (``sim.n_steps`` included), as NengoDL's
    ``IsolateState`` does. Parameters that ``fit`` trains, and probe data, are
    not affected. A call that is not stateful starts every minibatch from the
    Simulator's current state and keeps none, so this changes nothing there.

    Parameters
    ----------
    sim : nengo_jax.Simulator
        The Simulator whose state is kept.

    Raises
    ------
    nengo.exceptions.ValidationError
        If ``sim`` is not a nengo_jax Simulator.
    nengo.exceptions.SimulatorClosed
        If ``sim`` is closed.
    """

    def __init__(self, sim):
        check_simulator(sim, self)
        super().__init__()
        self.sim = sim
        snapshot = sim._runtime.snapshot
        # (not the whole snapshot: its parameters and probe data may be large)
        self._saved = (snapshot.state, snapshot.n_steps)

    def reset(self):
        """Return the Simulator to the saved state and step count now.

        During a stateful Keras call, the next minibatch starts from it.
        """
        if self.sim.closed:
            raise SimulatorClosed("Cannot reset the state of a closed Simulator")
        self.sim._runtime.restore_state(*self._saved)

    def on_train_batch_end(self, batch, logs=None):
        self.reset()

    def on_test_batch_end(self, batch, logs=None):
        self.reset()

    def on_predict_batch_end(self, batch, logs=None):
        self.reset()
