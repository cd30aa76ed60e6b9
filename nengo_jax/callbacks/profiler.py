"""Profiling chosen batches of a Keras call with JAX's profiler."""

from __future__ import annotations

import warnings

import jax
import numpy as np
from nengo.exceptions import ValidationError


def profile_range(profile_batch, owner) -> tuple[int, int] | None:
    """Keras's ``profile_batch`` as ``(start, stop)`` batches, or None (none).

    An int ``N`` (0: none), ``(start, stop)``, or ``"start,stop"`` (or ``"N"``).
    """
    value = profile_batch
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            value = None
        else:
            value = value[0] if len(value) == 1 else tuple(value)
    if is_int(value) and value >= 0:
        return None if value == 0 else (int(value), int(value))
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(is_int(v) and v > 0 for v in value)
        and value[0] <= value[1]
    ):
        return int(value[0]), int(value[1])
    raise ValidationError(
        "must be a non-negative int (the batch to profile; 0 profiles none), "
        "or (start, stop) or 'start,stop' with 0 < start <= stop (a range of "
        f"batches); got {profile_batch!r}",
        attr="profile_batch",
        obj=owner,
    )


def is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class BatchProfiler:
    """Traces the batches ``start`` to ``stop`` of each call into ``log_dir``.

    Batches are counted from 1 in each call (`start_call`). ``jax.profiler``
    writes the trace under ``<log_dir>/plugins/profile/``, where TensorBoard's
    profile plugin finds it; each traced batch is marked ``Profiled batch N``.
    """

    def __init__(self, log_dir: str, batches: tuple[int, int] | None):
        self.log_dir = log_dir
        self.batches = batches
        self.count = 0
        self._tracing = False
        self._annotation = None

    def start_call(self):
        """Count batches from 1 again (and end a trace that a failed call left)."""
        self.stop()
        self.count = 0

    def begin_batch(self):
        self.count += 1
        if self.batches is None:
            return
        if self.count == self.batches[0]:
            try:
                jax.profiler.start_trace(self.log_dir)
            except RuntimeError as e:  # e.g. another trace is running
                warnings.warn(
                    f"TensorBoard could not profile batches {self.batches[0]}-"
                    f"{self.batches[1]}: {e}",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                self._tracing = True
        if self._tracing:
            self._annotation = jax.profiler.TraceAnnotation(
                f"Profiled batch {self.count}"
            )
            self._annotation.__enter__()

    def end_batch(self):
        self._end_annotation()
        if self._tracing and self.count >= self.batches[1]:
            self.stop()

    def stop(self):
        """End the trace, if one is running."""
        self._end_annotation()
        if self._tracing:
            self._tracing = False
            jax.profiler.stop_trace()

    def _end_annotation(self):
        if self._annotation is not None:
            self._annotation.__exit__(None, None, None)
            self._annotation = None
