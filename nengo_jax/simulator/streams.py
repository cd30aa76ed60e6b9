"""Data streams for the Keras calls: generators and `keras.utils.PyDataset`.

`fit`, `evaluate` and `predict` take their data as arrays or, as in Keras and
NengoDL, as a stream of minibatches: a generator (or any other iterable, such
as a ``tf.data.Dataset``) or a `keras.utils.PyDataset`. Each minibatch is
``x``, ``(x, y)`` or ``(x, y, sample_weight)`` with ``x`` and ``y`` as the
array calls take them (dicts keyed by object, label or Keras name, or one
array); NengoDL's ``"n_steps"`` entry of ``x`` may be given and is checked.
Every minibatch gets the checks that array data gets, when Keras draws it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras
import numpy as np
from nengo.exceptions import ValidationError

from .inputs import STEPS_INPUT


def is_stream(x) -> bool:
    """Whether ``x`` is a stream of minibatches rather than data."""
    if isinstance(x, keras.utils.PyDataset):
        return True
    return (
        isinstance(x, Iterable)
        and not isinstance(x, np.ndarray | Mapping | list | tuple | str | bytes)
        and not hasattr(x, "__array__")
    )


def checked_stream(stream, convert, method: str):
    """``stream`` with every minibatch passed through ``convert(x, y, n_steps)``
    (which returns the Keras model's ``(x, y)``; ``n_steps`` is NengoDL's
    ``"n_steps"`` entry of ``x``, or None)."""

    def check(batch):
        if isinstance(batch, list):  # (as Keras reads a minibatch)
            batch = tuple(batch)
        if not isinstance(batch, tuple):
            batch = (batch,)
        if not 1 <= len(batch) <= 3:
            raise ValidationError(
                f"Each minibatch of a {method} stream must be x, (x, y) or (x, y, "
                f"sample_weight); got a tuple of {len(batch)}",
                attr="x",
            )
        x, n_steps = _without_steps(batch[0])
        x, y = convert(x, batch[1] if len(batch) > 1 else None, n_steps)
        return (x,) if y is None and len(batch) == 1 else (x, y, *batch[2:])

    if isinstance(stream, keras.utils.PyDataset):
        return CheckedPyDataset(stream, check)
    return (check(batch) for batch in stream)


def _without_steps(x) -> tuple:
    """``x`` without NengoDL's ``"n_steps"`` entry, and the number of steps it
    gives (None if none), checked against the other entries."""
    if not isinstance(x, Mapping) or STEPS_INPUT not in x:
        return x, None
    x = dict(x)
    given = np.asarray(x.pop(STEPS_INPUT))
    steps = {np.shape(value)[1] for value in x.values() if np.ndim(value) == 3}
    if given.ndim != 2 or given.shape[1] != 1 or given.size == 0 or len(steps) > 1:
        raise ValidationError(
            f"x[{STEPS_INPUT!r}] must be (batch, 1), each item the number of steps "
            f"of the other inputs; got shape {given.shape}",
            attr="x",
        )
    if steps and not np.all(given == next(iter(steps))):
        raise ValidationError(
            f"x[{STEPS_INPUT!r}] gives {np.unique(given).tolist()} steps; the "
            f"inputs have {next(iter(steps))}",
            attr="x",
        )
    if np.unique(given).size != 1:
        raise ValidationError(
            f"x[{STEPS_INPUT!r}] must give every item the same number of steps; "
            f"got {np.unique(given).tolist()}",
            attr="x",
        )
    return (x or None), int(given.flat[0])


class CheckedPyDataset(keras.utils.PyDataset):
    """A `keras.utils.PyDataset` whose minibatches are checked as they are read."""

    def __init__(self, data, check):
        super().__init__(
            workers=data.workers,
            use_multiprocessing=data.use_multiprocessing,
            max_queue_size=data.max_queue_size,
        )
        self.data, self.check = data, check

    def __getitem__(self, index):
        return self.check(self.data[index])

    def __len__(self):
        return len(self.data)

    @property
    def num_batches(self):
        return self.data.num_batches

    def on_epoch_begin(self):
        self.data.on_epoch_begin()

    def on_epoch_end(self):
        self.data.on_epoch_end()
