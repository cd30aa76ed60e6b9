"""The runtime: the one owner of a simulator's parameters, state, time and probe data.

Every call that changes a simulator (a run, a Keras call, a reset, loading
parameters) goes through its `Runtime`, which

- runs one call at a time: a second call, from another thread or from inside
  the first (e.g. a Keras callback), is refused with a `SimulationError`;
- commits a call's new parameters, state, step count and probe data together,
  as one new `Snapshot`, only once the call has succeeded: any exception,
  ``KeyboardInterrupt`` included, leaves the simulator exactly as before;
- gives the caller the exception a host callback raised (a Node function, a
  process or neuron type run in NumPy), as a `SimulationError` chained to it,
  or as itself for ``KeyboardInterrupt`` and ``SystemExit``, instead of JAX's
  ``JaxRuntimeError``;
- decides once whether a computation is the training version of the model
  (`training`), for runs and Keras calls alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
from nengo.exceptions import SimulationError

from nengo_jax.build.host import as_simulation_error, compute_streams


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything a call may change, replaced as a whole when a call succeeds.

    Attributes
    ----------
    params : dict
        Parameter key -> array (no batch axis).
    state : dict
        State key -> array (leading batch axis; the PRNG key without).
    n_steps : int
        Steps simulated since the last reset.
    probes : Mapping
        Probe -> tuple of recorded chunks, each ``(B, n, ...)``.
    """

    params: dict
    state: dict
    n_steps: int
    probes: MappingProxyType


class Runtime:
    """Runs a simulator's program and owns what it computes (see the module).

    Parameters
    ----------
    program : Program
        The simulation program.
    probe_keys : dict
        Probe -> its output key in ``program``.
    dt : float
        The timestep.
    scope : callable
        Returns the context in which JAX computes (64-bit mode for float64).
    learning_phase : bool or None
        ``configure_settings(learning_phase=...)``: forces the training (True)
        or inference (False) version of the model in every call.
    """

    def __init__(self, program, probe_keys, dt, scope, learning_phase=None):
        self.program = program
        self.probe_keys = dict(probe_keys)
        self.dt = dt
        self.scope = scope
        self.learning_phase = learning_phase
        self.snapshot: Snapshot | None = None
        self._busy = threading.Lock()
        self._running = None
        #: The Keras model of the call in progress, whose variables hold the
        #: live parameters and state (see `live_values`)
        self._live_model = None

    # -- calls ------------------------------------------------------------------------

    def training(self, default: bool) -> bool:
        """Whether a computation runs the training version of the model.

        ``default`` is what the caller asks for (False for runs; Keras's flag
        for Keras calls); ``learning_phase`` overrides it.
        """
        if self.learning_phase is not None:
            return bool(self.learning_phase)
        return bool(default)

    @contextlib.contextmanager
    def call(self, what: str):
        """Hold the simulator for one call named ``what`` (see the module)."""
        if not self._busy.acquire(blocking=False):
            raise SimulationError(
                f"Cannot {what}: this Simulator is busy with {self._running}. A "
                "Simulator runs one call at a time; use one Simulator per thread, "
                "and do not call into it from its own callbacks."
            )
        self._running = what
        self.program.host_errors.clear()
        try:
            with self.scope():
                yield
        except BaseException:
            recorded = self.program.host_errors.take()
            if recorded is None:
                raise
            # what a host callback raised, not JAX's JaxRuntimeError about it
            original, what = recorded
            error = as_simulation_error(original, what)
            raise error from error.__cause__
        finally:
            self._running = None
            self._busy.release()

    def commit(self, snapshot: Snapshot | None = None, **changes):
        """Make ``snapshot``, or the current one with ``changes``, the current one.

        One reference is replaced: readers see all of a call's changes or none.
        """
        if snapshot is None:
            snapshot = dataclasses.replace(self.snapshot, **changes)
        self.snapshot = snapshot

    # -- runs ---------------------------------------------------------------------

    def run(self, n_steps: int, node_data: dict, stateful: bool, training=False):
        """Simulate ``n_steps``; commit the new state, probe data and step count.

        ``node_data`` maps fed output signals (in the program's input order) to
        arrays ``(B, n_steps, size)``. Without ``stateful``, the run starts from
        the snapshot's state and time, and the state is not kept.
        """
        program, snapshot = self.program, self.snapshot
        fed = tuple(node_data)
        first = snapshot.n_steps if stateful else 0
        steps = np.arange(first + 1, first + n_steps + 1)
        streams = program.active_streams(fed)
        xs = {
            s.key: v
            for s, v in zip(
                streams, compute_streams(streams, steps, self.dt), strict=True
            )
        }
        dtype = program.layout.dtype
        for i, value in enumerate(node_data.values()):
            xs[f"data{i}"] = np.swapaxes(value, 0, 1).astype(dtype)
        state, outputs = program.run(
            snapshot.params,
            snapshot.state,
            xs,
            n_steps=n_steps,
            fed=fed,
            training=self.training(training),
        )
        outputs = jax.device_get(outputs)
        outputs = program.unpack(outputs)
        self.commit(
            Snapshot(
                params=snapshot.params,
                state=state if stateful else snapshot.state,
                n_steps=snapshot.n_steps + n_steps,
                probes=self._recorded(snapshot.probes, outputs, steps),
            )
        )

    def _recorded(self, probes, outputs, steps):
        """``probes`` with this run's outputs appended (a new mapping)."""
        last_only = {key for key, _ in self.program.last_only}
        recorded = dict(probes)
        for probe, key in self.probe_keys.items():
            values = outputs[key]
            if key in last_only:  # keep_history=False: only the latest step
                recorded[probe] = (np.swapaxes(values, 0, 1),)
                continue
            if probe.sample_every is not None:
                period = probe.sample_every / self.dt
                values = values[steps % period < 1]
            recorded[probe] = probes[probe] + (np.swapaxes(values, 0, 1),)
        return MappingProxyType(recorded)

    # -- Keras calls --------------------------------------------------------------

    @contextlib.contextmanager
    def keras(self, model, what: str, stateful: bool, commit=True, keep_state=None):
        """A Keras call on ``model`` (see `call`), committed as one if it succeeds.

        Loads copies of the snapshot's parameters and state into the model's
        variables (Keras donates their buffers to its compiled steps; with
        ``stateful``, each minibatch continues from the last one's state) and
        remembers its optimizer's variables. On success, with ``commit``, the
        trained parameters (and with ``keep_state``, by default ``stateful``,
        the final state and its step count) become the snapshot; on any
        exception the optimizer's variables (moments, iteration count) are
        restored and nothing is committed.
        """
        with self.call(what):
            snapshot = self.snapshot
            model.set_values(snapshot.params, snapshot.state, stateful)
            optimizer = _built_optimizer(model)
            variables = optimizer.variables if optimizer is not None else []
            saved = [jnp.array(v.value, copy=True) for v in variables]
            self._live_model = model
            try:
                yield
            except BaseException:
                for var, value in zip(variables, saved, strict=True):
                    var.assign(value)
                raise
            finally:
                self._live_model = None
            if not commit:
                return
            changes = {"params": model.param_values()}
            if stateful if keep_state is None else keep_state:
                state = model.state_values()
                step = np.asarray(state[model.step_key]).reshape(-1)[0]
                changes.update(state=state, n_steps=int(step))
            self.commit(**changes)

    def live_values(self) -> tuple:
        """``(params, state)`` now: during a Keras call, the latest values of its
        variables (e.g. for a callback), else the snapshot's."""
        model = self._live_model
        if model is not None:
            # between steps, Keras holds the values in its own state; this puts
            # them back in the variables (as Keras's own callbacks do)
            model.jax_state_sync()
            return model.param_values(), model.state_values()
        return self.snapshot.params, self.snapshot.state


def _built_optimizer(model):
    """``model``'s optimizer, built for its trainable variables (None if none).

    Built before the call, so that its variables exist to be restored if the call
    fails (Keras would otherwise build it inside ``fit``).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    if not optimizer.built and model.trainable_variables:
        optimizer.build(model.trainable_variables)
    return optimizer
