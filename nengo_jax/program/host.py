"""Values computed on the host before a run and streamed into the time loop.

Inputs that do not depend on the simulation (Nodes that are functions of time
only, noise and signal processes without input) are computed here, with
Nengo's own NumPy step functions, for all the steps of a run at once. This keeps
Python out of the compiled loop and gives exactly Nengo's values.
"""

from __future__ import annotations

import _signal
import logging
import signal
import threading
from pathlib import Path

import numpy as np
from jax.experimental import io_callback
from nengo.exceptions import SimulationError
from nengo.utils.numpy import maxint

SIGINT = int(signal.SIGINT)


class HostStream:
    """A per-step input computed on the host.

    Subclasses implement `compute`, which returns ``(n_steps,) + shape`` (the same
    for every batch item) or ``(n_steps, B) + shape`` when ``batched``.
    The simulator assigns ``key`` when it builds the program.
    """

    key: str = None
    batched: bool = False
    #: What computes the values, for error messages.
    what: str = "a host input"

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def compute(self, steps: np.ndarray, dt: float) -> np.ndarray:
        """Values for the given (1-based) step numbers, in ``self.dtype``."""
        raise NotImplementedError


def compute_streams(streams, steps, dt) -> list:
    """Each stream's values for ``steps``; an exception becomes a `SimulationError`
    naming the stream's source (see `as_simulation_error`)."""
    values = []
    for stream in streams:
        try:
            values.append(stream.compute(steps, dt))
        except BaseException as e:
            error = as_simulation_error(e, stream.what)
            if error is e:
                raise
            raise error from e
    return values


class HostErrors:
    """The first exception raised by a program's host callbacks, for its caller.

    An exception raised inside a host callback reaches the caller only as JAX's
    ``JaxRuntimeError`` (and is logged by JAX on the way). Each callback made by
    `host_call` records what it raised here; the runtime then raises that
    instead (see `as_simulation_error`) and JAX's log record of it is dropped.
    """

    def __init__(self):
        self._error = None
        self._lock = threading.Lock()
        #: Set when an interrupt (Ctrl-C) arrived during the call: the next host
        #: callback raises ``KeyboardInterrupt`` (see `defer_interrupts`)
        self.interrupted = False

    def record(self, error: BaseException, what: str):
        with self._lock:
            if self._error is None:
                self._error = (error, what)
            error._nengo_jax_recorded = True

    def take(self):
        """The first recorded ``(error, what)`` since the last `take`, or None."""
        with self._lock:
            taken, self._error = self._error, None
        return taken

    def clear(self):
        self.take()
        self.interrupted = False

    def interrupt(self, signum=None, frame=None):
        """Note an interrupt (usable as a signal handler)."""
        self.interrupted = True

    def defer_interrupts(self):
        """Until `restore_interrupts`, Ctrl-C is noted here instead of raised.

        Python raises ``KeyboardInterrupt`` wherever the main thread happens to
        be, which inside a run can be JAX's own code around a host callback (the
        run then fails with a ``JaxRuntimeError``). Noted here, the interrupt is
        raised by the next host callback (see `host_call`) or by the runtime
        between chunks and before it commits. Only in the main thread, and only
        in place of Python's default handler (a user's own is left alone).
        Returns what `restore_interrupts` needs.
        """
        # (_signal: the signal module's enum wrappers cost 8 us a call)
        if (
            threading.current_thread() is threading.main_thread()
            and _signal.getsignal(SIGINT) is signal.default_int_handler
        ):
            return _signal.signal(SIGINT, self.interrupt)
        return None

    def restore_interrupts(self, previous):
        if previous is not None:
            _signal.signal(SIGINT, previous)


def as_simulation_error(error: BaseException, what: str) -> BaseException:
    """What the caller gets for ``error``, raised by ``what`` on the host.

    `SimulationError`, `KeyboardInterrupt` and `SystemExit` keep their type;
    any other exception becomes a `SimulationError` naming ``what`` (chained to
    the original).
    """
    if isinstance(error, SimulationError | KeyboardInterrupt | SystemExit):
        return error
    if not isinstance(error, Exception):
        return error
    wrapped = SimulationError(f"{what} raised {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def user_traceback(error: BaseException) -> BaseException:
    """``error`` (and the exceptions it was raised from) without the leading
    traceback frames of nengo_jax itself, so a failing user function's
    traceback starts at that function."""
    seen, each = set(), error
    while each is not None and id(each) not in seen:
        seen.add(id(each))
        tb = each.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
            tb = tb.tb_next
        if tb is not None:
            each.with_traceback(tb)
        each = each.__cause__
    return error


_PACKAGE = str(Path(__file__).resolve().parent.parent)


class DropRecorded(logging.Filter):
    """Drops JAX's log record of an exception that `HostErrors` recorded."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, "_nengo_jax_recorded", False)


#: JAX logs every exception raised in an io_callback on this logger.
CALLBACK_LOGGER = logging.getLogger("jax._src.callback")
CALLBACK_LOGGER.addFilter(DropRecorded())


def host_call(fn, result, *args, errors: HostErrors, what: str):
    """``fn(*args)`` called on the host from the compiled loop, returning ``result``.

    An exception ``fn`` raises is recorded in ``errors`` (``what`` names the
    caller, e.g. a Node) before it aborts the run.

    The callback is unordered: each step's calls take that step's values, so
    they still happen step after step, but calls of one step with no data
    between them may run in any order. An ordered callback threads one runtime
    token through every later computation of the process, and on a GPU an
    exception raised in the callback poisons that token: every later run, of
    any simulator, would fail with it.
    """

    def guarded(*args):
        try:
            if errors.interrupted:
                raise KeyboardInterrupt
            return fn(*args)
        except BaseException as e:
            errors.record(e, what)
            raise

    return io_callback(guarded, result, *args, ordered=False)


def nengo_time(t, dt) -> float:
    """Nengo's time of the step whose (float32) time is ``t``: ``step * dt`` in
    float64, as `nengo.Simulator` passes it to Python functions."""
    return round(float(t) / dt) * dt  # (an int step times dt, as Nengo)


def function_name(fn):
    return getattr(fn, "__name__", repr(fn))


class FunctionStream(HostStream):
    """The output of a Node function of time alone (``f(t)``, or ``f()``)."""

    def __init__(self, fn, t_passed, shape, dtype, label):
        # shape None: a Node without output, called only for its side effects
        super().__init__((0,) if shape is None else shape, dtype)
        self.has_output = shape is not None
        self.fn = fn
        self.t_passed = t_passed
        self.label = self.what = label

    def compute(self, steps, dt):
        # Nengo's time, step * dt in float64 (not the float32 time signal)
        times = np.asarray(steps, dtype=np.int64) * float(dt)
        calls = [(float(t),) for t in times] if self.t_passed else [()] * len(steps)
        out = node_outputs(
            self.fn, calls, self.shape if self.has_output else None, self.label
        )
        if out is None:
            return np.empty((len(steps),) + self.shape, dtype=self.dtype)
        return out.astype(self.dtype)


def call_node_function(fn, args, label):
    """Call a Node function, turning its exceptions into `SimulationError`."""
    try:
        return fn(*args)
    except Exception as e:
        error = SimulationError(
            f"{label}: function '{function_name(fn)}' raised {type(e).__name__}: {e}"
        )
        error.from_user_function = True  # (see `user_traceback`)
        raise error from e


def node_outputs(fn, calls, shape, label):
    """Call a Node function once for each tuple of arguments in ``calls``.

    Returns the outputs, ``(len(calls),) + shape`` in float64 (None when
    ``shape`` is None: a Node without output), checked as Nengo checks them: each
    is stored as Nengo stores it (``output[...] = y``) and the values must be
    finite (``None`` becomes NaN). The check of finiteness covers all the calls
    at once, after them.
    """
    out = None if shape is None else np.empty((len(calls),) + tuple(shape))
    for i, args in enumerate(calls):
        y = call_node_function(fn, args, label)
        if out is not None:
            try:
                out[i] = y
            except (TypeError, ValueError) as e:
                raise SimulationError(
                    f"Function '{function_name(fn)}' returned a value {y!r} of "
                    f"invalid type {type(y)!r}"
                ) from e
    if out is not None and not np.isfinite(out).all():
        raise SimulationError(
            f"Function '{function_name(fn)}' returned non-finite value"
        )
    return out


def item_seeds(seed: int, minibatch_size: int) -> list:
    """Seeds for each batch item: item 0 gets ``seed`` itself (Nengo's values)."""
    seeds = [seed]
    for b in range(1, minibatch_size):
        seeds.append(int(np.random.SeedSequence([seed, b]).generate_state(1)[0]))
    return seeds


def process_item_seeds(process, seed: int, minibatch_size: int) -> list:
    """Seeds of ``process`` for each batch item: as NengoDL, a process with its
    own ``seed`` gives every item the same signal (Nengo's); others differ per
    item (`item_seeds`)."""
    if process.seed is not None:
        return [seed] * minibatch_size
    return item_seeds(seed, minibatch_size)


def process_seed(process, rng: np.random.RandomState) -> int:
    """The seed Nengo's `Process.get_rng` would use (draws from ``rng`` alike)."""
    return rng.randint(maxint) if process.seed is None else process.seed


class ProcessStream(HostStream):
    """The output of a Process without input, one step function per batch item.

    The step functions keep their own state, so values are computed in order.
    A request that does not continue the previous one (a failed run, or a
    training call that does not keep its state) restarts them and replays up to
    the requested step.
    """

    batched = True

    def __init__(self, process, shape, dtype, dt):
        super().__init__(shape, dtype)
        self.process = process
        self.what = f"{process}"
        self.dt = dt
        self.steps = []
        self.seed = None
        self.next_step = 1

    def reset(self, seed: int, minibatch_size: int):
        self.seed = seed
        self.next_step = 1
        self.steps = []
        for item_seed in process_item_seeds(self.process, seed, minibatch_size):
            state = self.process.make_state((0,), self.shape, self.dt)
            self.steps.append(
                self.process.make_step(
                    (0,), self.shape, self.dt, np.random.RandomState(item_seed), state
                )
            )

    def compute(self, steps, dt):
        if len(steps) > 0 and steps[0] != self.next_step:
            if steps[0] < self.next_step:
                self.reset(self.seed, len(self.steps))
            self._evaluate(np.arange(self.next_step, steps[0]))
        return self._evaluate(steps)

    def _evaluate(self, steps):
        out = np.empty((len(steps), len(self.steps)) + self.shape, dtype=self.dtype)
        for i, step in enumerate(steps):
            t = float(step * self.dt)
            for b, step_f in enumerate(self.steps):
                out[i, b] = step_f(t)
        if len(steps) > 0:
            self.next_step = int(steps[-1]) + 1
        return out
