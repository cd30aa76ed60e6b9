"""Checking run-time input data, and the ``sim.data`` mapping."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from nengo import Node
from nengo.exceptions import SimulatorClosed, ValidationError

from nengo_jax.build.env import SignalEnv


def find_node(model, key):
    """Resolve a Node or a Node label to a Node of ``model``."""
    if isinstance(key, str):
        matches = [
            obj for obj in model.sig if isinstance(obj, Node) and obj.label == key
        ]
        if len(matches) != 1:
            raise ValidationError(
                f"data key {key!r} must name exactly one Node of the network by its "
                f"label; found {len(matches)}",
                attr="data",
            )
        return matches[0]
    if not isinstance(key, Node):
        raise ValidationError(
            f"data keys must be Nodes or Node labels; got {key!r} of type "
            f"{type(key).__name__}",
            attr="data",
        )
    if key not in model.sig:
        raise ValidationError(
            f"{key} is not part of the network this Simulator was built from",
            attr="data",
            obj=key,
        )
    return key


def check_node_data(model, data, n_steps, minibatch_size):
    """Validate ``data`` for a run of ``n_steps``.

    Returns
    -------
    dict
        Node -> float array of shape ``(minibatch_size, n_steps, size_out)``.
    """
    checked = {}
    for key, value in (data or {}).items():
        node = find_node(model, key)
        if node.size_in > 0:
            raise ValidationError(
                f"{node} has inputs (size_in={node.size_in}), so its output cannot be "
                "replaced with data; feed a Node with size_in=0 instead",
                attr="data",
                obj=node,
            )
        expected = (minibatch_size, n_steps, node.size_out)
        array = np.asarray(value)
        if array.shape != expected:
            hint = ""
            if array.shape == expected[1:]:
                hint = " Add the batch axis with x[None]."
            elif array.ndim == 3 and array.shape[1] != n_steps:
                hint = " The number of steps must match the run."
            raise ValidationError(
                f"Input data for {node} must have shape (minibatch_size="
                f"{minibatch_size}, n_steps={n_steps}, size_out={node.size_out}); "
                f"got {array.shape}.{hint}",
                attr="data",
                obj=node,
            )
        if not np.issubdtype(array.dtype, np.number):
            raise ValidationError(
                f"Input data for {node} must be numeric; got dtype {array.dtype}",
                attr="data",
                obj=node,
            )
        checked[node] = array
    return checked


class SimulationData(Mapping):
    """``sim.data``: probe data and the built parameters of Nengo objects.

    ``sim.data[probe]`` has shape ``(n, ...)``, as in Nengo, or
    ``(minibatch_size, n, ...)`` when the Simulator has a ``minibatch_size``.
    Other objects give their built parameters (e.g. ``sim.data[ens].encoders``).
    """

    def __init__(self, sim):
        self._sim = sim
        self._cache = {}

    def __getitem__(self, key):
        chunks = self._sim._probe_chunks.get(key)
        if chunks is None:
            return self._sim.model.params[key]
        cached = self._cache.get(key)
        if cached is None or cached[0] != len(chunks):
            value = self._sim._probe_array(key)
            value.setflags(write=False)
            cached = self._cache[key] = (len(chunks), value)
        return cached[1]

    def __iter__(self):
        return iter(self._sim.model.params)

    def __len__(self):
        return len(self._sim.model.params)

    def __contains__(self, key):
        return key in self._sim.model.params

    def reset(self):
        """Forget cached probe arrays."""
        self._cache.clear()


class SignalValues(Mapping):
    """``sim.signals``: the current value of each signal, as a read-only array.

    Batched state has a leading minibatch axis when the Simulator was given a
    ``minibatch_size``. Iterates over the base signals.
    """

    def __init__(self, sim):
        self._sim = sim

    def __getitem__(self, sig):
        sim = self._sim
        if sim.closed:
            raise SimulatorClosed("Cannot read signals of a closed simulator")
        env = SignalEnv(
            sim._layout,
            {**sim._params, **sim._state},
            {},
            sim.minibatch_size,
            sim.dt,
            None,
        )
        value = np.array(env.read(sig))
        if env.is_batched(sig) and not sim._batch_given:
            value = value[0]
        value.setflags(write=False)
        return value

    def __iter__(self):
        return iter(self._sim._layout.bases)

    def __len__(self):
        return len(self._sim._layout.bases)
