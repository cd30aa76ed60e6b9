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
import gc
import threading
import time
from types import MappingProxyType

import jax
import numpy as np
from nengo.exceptions import SimulationError

from nengo_jax.program.host import (
    as_simulation_error,
    compute_streams,
    user_traceback,
)
from nengo_jax.program.program import chunk_length
from nengo_jax.simulator.distribution import Placement

#: Longest chunk of a run, in steps (a power of two).
MAX_CHUNK = 4096
#: Wall time a chunk aims to stay under: runs of slower networks take shorter
#: chunks, so that an interrupt (Ctrl-C) is handled about this soon.
CHUNK_SECONDS = 1.0
#: How many distinct run lengths get a program of their own (see `Runtime.run`).
EXACT_LENGTHS = 2


@dataclasses.dataclass(frozen=True, eq=False)
class Recorded:
    """A probe's recorded chunks: the first ``n`` of a list that later snapshots
    extend, so that a run appends in constant time and older snapshots still
    see only their own chunks."""

    chunks: list
    n: int

    @classmethod
    def of(cls, *chunks) -> Recorded:
        return cls(list(chunks), len(chunks))

    def appended(self, chunk) -> Recorded:
        # (past n: chunks of a call that failed after recording)
        del self.chunks[self.n :]
        self.chunks.append(chunk)
        return Recorded(self.chunks, self.n + 1)

    def values(self) -> list:
        return self.chunks[: self.n]

    def same(self, other) -> bool:
        """Whether ``other`` holds exactly these chunks."""
        return other.chunks is self.chunks and other.n == self.n


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
        Probe -> its `Recorded` chunks, each ``(B, n, ...)``.
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
    on_params : callable or None
        Called with the new parameters after a commit that changes them (the
        Simulator writes Keras layers' weights back into their variables).
    placement : Placement or None
        The devices that the arrays live on (None: JAX's default device).
    """

    def __init__(
        self,
        program,
        probe_keys,
        dt,
        scope,
        learning_phase=None,
        on_params=None,
        placement=None,
    ):
        self.program = program
        self.placement = Placement() if placement is None else placement
        self.placement.batched_keys = frozenset(program.layout.state_keys)
        self.probe_keys = dict(probe_keys)
        last_only = {key for key, _ in program.last_only}
        #: (probe, output key, sampling period in steps, keeps only the last step)
        self._recording = [
            (
                probe,
                key,
                None if probe.sample_every is None else probe.sample_every / dt,
                key in last_only,
            )
            for probe, key in self.probe_keys.items()
        ]
        self.dt = dt
        self.scope = scope
        self.learning_phase = learning_phase
        #: Called with the new parameters when a commit changes them.
        self.on_params = on_params
        self.snapshot: Snapshot | None = None
        #: Most steps a chunk of a run takes (a power of two; see `run`).
        self.chunk_limit = MAX_CHUNK
        #: The chunk lengths that have a program of their own (see `run`).
        self.exact_lengths = set()
        self._busy = threading.Lock()
        self._running = None
        #: The Keras model of the call in progress, whose variables hold the
        #: live parameters and state (see `live_values`)
        self._live_model = None
        #: Whether that call carries the state from one minibatch to the next
        self._live_stateful = False

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
        errors = self.program.host_errors
        errors.clear()
        previous = errors.defer_interrupts()
        try:
            with self.scope():
                yield
                self.check_interrupt()
        except BaseException as e:
            recorded = errors.take()
            if recorded is None and not getattr(e, "from_user_function", False):
                raise
            # what a host callback raised, not JAX's JaxRuntimeError about it;
            # a new exception (contextlib would restore the traceback of ``e``)
            if recorded is not None:
                error = as_simulation_error(*recorded)
                cause = error.__cause__
            else:
                error, cause = type(e)(*e.args), e.__cause__
            # the user's function's traceback, without the frames of nengo_jax
            # and JAX that led to it
            raise error.with_traceback(None) from user_traceback(cause)
        finally:
            errors.restore_interrupts(previous)
            self._running = None
            self._busy.release()

    def check_interrupt(self):
        """Raise ``KeyboardInterrupt`` if one arrived during this call."""
        if self.program.host_errors.interrupted:
            raise KeyboardInterrupt

    def commit(self, snapshot: Snapshot | None = None, **changes):
        """Make ``snapshot``, or the current one with ``changes``, the current one.

        One reference is replaced: readers see all of a call's changes or none.
        An interrupt that arrived during the call is raised instead.
        """
        self.check_interrupt()
        if snapshot is None:
            snapshot = dataclasses.replace(self.snapshot, **changes)
        previous, self.snapshot = self.snapshot, snapshot
        changed = previous is not None and snapshot.params is not previous.params
        if changed and self.on_params is not None:
            self.on_params(snapshot.params)

    # -- runs ---------------------------------------------------------------------

    def run(self, n_steps: int, node_data: dict, stateful: bool, training=False):
        """Simulate ``n_steps``; commit the new state, probe data and step count.

        ``node_data`` maps fed output signals (in the program's input order) to
        arrays ``(B, n_steps, size)``. Without ``stateful``, the run starts from
        the snapshot's state and time, and only its probe data is kept (the
        state, time and step count stay as they were, as in NengoDL).

        The steps run in chunks of at most `chunk_limit` steps (`MAX_CHUNK`, or
        fewer for a network too slow to run that many in `CHUNK_SECONDS`), so
        that an interrupt (Ctrl-C) is handled between chunks and nothing is
        committed. A full chunk, and a chunk of one of the first
        `EXACT_LENGTHS` lengths this simulator runs (e.g. ``run(1.0)`` and
        ``step()``), runs a program compiled for its length; any other chunk
        runs the program of the next power of two, for a dynamic number of
        steps. So however many lengths a simulator runs, it compiles at most
        ``EXACT_LENGTHS + 2 + log2(MAX_CHUNK)`` programs (for each set of Nodes
        given data), and the usual lengths run at the speed of an exact
        program (a dynamic step count costs up to 8% on some networks).
        """
        program, snapshot = self.program, self.snapshot
        fed = tuple(node_data)
        first = snapshot.n_steps
        steps = np.arange(first + 1, first + n_steps + 1)
        streams = program.active_streams(fed)
        xs = {
            s.key: v
            for s, v in zip(
                streams, compute_streams(streams, steps, self.dt), strict=True
            )
        }
        dtype = program.layout.dtype
        batched = {s.key: s.batched for s in streams}
        for i, value in enumerate(node_data.values()):
            xs[f"data{i}"] = np.swapaxes(value, 0, 1).astype(dtype)
            batched[f"data{i}"] = True
        training = self.training(training)
        place = self.placement
        if program.use_loop:
            state, outputs = self._run_chunks(
                snapshot, xs, batched, n_steps, fed, training
            )
        else:  # every step written out: exactly unroll_simulation steps
            state, outputs = program.run(
                snapshot.params,
                snapshot.state,
                place.inputs(xs, batched),
                n_steps,
                fed,
                training,
            )
            outputs = place.to_host(outputs)
        outputs = program.unpack(outputs)
        self.commit(
            Snapshot(
                params=snapshot.params,
                state=state if stateful else snapshot.state,
                n_steps=snapshot.n_steps + (n_steps if stateful else 0),
                probes=self._recorded(snapshot.probes, outputs, steps),
            )
        )

    def _run_chunks(self, snapshot, xs, batched, n_steps, fed, training):
        """The final state and packed outputs of ``n_steps``, run in chunks.

        Each chunk's probe rows are copied to the host as soon as it is done
        (and its device buffers dropped), so that the device memory a run
        takes does not grow with its length.
        """
        program, place = self.program, self.placement
        state, history, start = snapshot.state, [], 0
        while start < n_steps:
            self.check_interrupt()
            count = min(n_steps - start, self.chunk_limit)
            if count < n_steps:
                chunk = {k: v[start : start + count] for k, v in xs.items()}
            else:
                chunk = xs
            traces, began = program.trace_count, time.perf_counter()
            if self._exact(count):
                state, (rows, last) = program.run(
                    snapshot.params,
                    state,
                    place.inputs(chunk, batched),
                    count,
                    fed,
                    training,
                )
            else:
                length = chunk_length(count)
                state, (rows, last) = program.run_chunk(
                    snapshot.params,
                    state,
                    place.inputs(
                        {k: _padded(v, length) for k, v in chunk.items()}, batched
                    ),
                    np.int32(count),
                    length=length,
                    fed=fed,
                    training=training,
                )
            if last.size:
                rows, last = place.to_host((rows, last))
            else:  # (no probe keeps only its last step: nothing to fetch)
                rows, last = place.to_host(rows), np.zeros(last.shape, last.dtype)
            history.append(rows[:count])
            if program.trace_count == traces:  # (a compile is no measure)
                self._adapt_chunks(count, time.perf_counter() - began)
            start += count
        rows = history[0] if len(history) == 1 else np.concatenate(history)
        return state, (rows, last)

    def _exact(self, count):
        """Whether a chunk of ``count`` steps runs a program of its own length."""
        if count == self.chunk_limit or count in self.exact_lengths:
            return True
        if len(self.exact_lengths) < EXACT_LENGTHS:
            self.exact_lengths.add(count)
            return True
        return False

    def _adapt_chunks(self, count, seconds):
        """Shorten the chunks of a network too slow to run a chunk in about
        `CHUNK_SECONDS`, so that an interrupt is handled that soon."""
        if seconds > CHUNK_SECONDS and count > 1:
            fits = count * CHUNK_SECONDS / seconds  # steps in CHUNK_SECONDS
            shorter = 1 << max(0, int(np.log2(fits)))
            self.chunk_limit = min(self.chunk_limit, shorter)

    def _recorded(self, probes, outputs, steps):
        """``probes`` with this run's outputs appended (a new mapping)."""
        recorded = {}
        for probe, key, period, last_only in self._recording:
            values = outputs[key]
            # (keep_history=False: the last step of each run, as NengoDL)
            if period is not None and not last_only:
                values = values[steps % period < 1]
            recorded[probe] = probes[probe].appended(np.swapaxes(values, 0, 1))
        return MappingProxyType(recorded)

    # -- Keras calls --------------------------------------------------------------

    @contextlib.contextmanager
    def keras(
        self,
        model,
        what: str,
        stateful: bool,
        commit=True,
        keep_state=None,
        trains=False,
    ):
        """A Keras call on ``model`` (see `call`), committed as one if it succeeds.

        Loads copies of the snapshot's parameters and state into the model's
        variables (Keras donates their buffers to its compiled steps; with
        ``stateful``, each minibatch continues from the last one's state) and
        remembers its optimizer's variables. On success, with ``commit``, the
        trained parameters (and with ``keep_state``, by default ``stateful``,
        the final state and its step count) become the snapshot; on any
        exception the optimizer's variables (moments, iteration count) are
        restored and nothing is committed. Only a call that ``trains`` commits
        parameters.
        """
        with self.call(what), self.placement.keras_scope(what):
            snapshot = self.snapshot
            model.set_values(snapshot.params, snapshot.state, stateful)
            optimizer = _built_optimizer(model)
            variables = optimizer.variables if optimizer is not None else []
            self.placement.adopt(model.variables + model.metrics_variables + variables)
            saved = copies([v.value for v in variables])
            self._live_model, self._live_stateful = model, stateful
            try:
                yield
            except BaseException:
                # Keras empties the variables it carries through a loop; an
                # exception inside one leaves them empty (and the next call
                # failing) unless its latest values are put back
                model.jax_state_sync()
                for var, value in zip(variables, saved, strict=True):
                    var.assign(value)
                raise
            finally:
                self._live_model, self._live_stateful = None, False
            if not commit:
                return
            changes = {"params": model.param_values()} if trains else {}
            if stateful if keep_state is None else keep_state:
                state = model.state_values()
                step = self.placement.first_value(state[model.step_key])
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

    def restore_state(self, state: dict, n_steps: int):
        """Return the simulation state and step count to ``state`` and ``n_steps``
        (a `Snapshot`'s).

        Outside a call, commits them (the parameters and probe data stay as
        they are). During a Keras call that carries the state from one
        minibatch to the next (``stateful``), loads them into its model, so
        that the next minibatch starts from them and the call ends with them;
        a call that is not stateful starts every minibatch from the
        simulator's state and keeps none, so it is left alone.
        """
        model = self._live_model
        if model is None:
            with self.call("restore the state"):
                self.commit(state=state, n_steps=n_steps)
        elif self._live_stateful:
            # Keras holds the values in its own state between steps: put them
            # back in the variables, from which it reads them again
            model.jax_state_sync()
            model.set_state(state)


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


def copies(values: list) -> list:
    """Device copies of ``values`` (JAX arrays), made without compiling anything
    (``jnp.array(x, copy=True)`` compiles a copy for every shape, which took a
    quarter of a second of a converted CNN's first epoch). Each copy has its
    value's sharding (which JAX needs to copy an array split over the devices
    of several processes)."""
    if all(isinstance(v, jax.Array) for v in values):
        return jax.device_put(values, [v.sharding for v in values], may_alias=False)
    return jax.device_put(values, may_alias=False)


def _padded(x, length):
    """``x`` with zero rows appended up to ``length`` rows."""
    if len(x) == length:
        return x
    out = np.zeros((length,) + x.shape[1:], x.dtype)
    out[: len(x)] = x
    return out


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off inside the block (if it was on).

    Building a model, and tracing and compiling its program, create hundreds of
    thousands of objects that stay alive; each collection walks them all and
    finds almost nothing to free. On ``basal_ganglia`` the collections took
    0.35 s of the build and 0.23 s of the first run. Garbage made inside the
    block (e.g. reference cycles made by a Node function during a run) is
    collected by the first collection after it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
