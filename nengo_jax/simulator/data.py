"""``sim.data`` and ``sim.signals``: probe data, parameters and signal values."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from nengo import Connection, Ensemble
from nengo.builder.connection import BuiltConnection
from nengo.builder.ensemble import BuiltEnsemble
from nengo.builder.signal import Signal
from nengo.exceptions import SimulationError, SimulatorClosed, ValidationError
from nengo.transforms import SparseMatrix

from nengo_jax.program.layout import sparse_coords
from nengo_jax.program.signals import SignalEnv


class SimulationData(Mapping):
    """``sim.data``: probe data and the built parameters of Nengo objects.

    ``sim.data[probe]`` has shape ``(n, ...)``, as in Nengo, or
    ``(minibatch_size, n, ...)`` when the Simulator has a ``minibatch_size``.
    Other objects give their built parameters (e.g. ``sim.data[ens].encoders``).
    For Ensembles and Connections these are the *live* values: after training
    (or `~.Simulator.load_params`), ``encoders``, ``scaled_encoders``, ``bias``
    (and the ``max_rates`` and ``intercepts`` they imply) and ``weights`` are
    the current ones, as read-only arrays; while a value is unchanged, Nengo's
    own built (float64) array is returned, as Nengo's tests require (NengoDL
    gives float32 copies). Weights and encoders that an online learning rule
    changes show their learned values too, as in NengoDL: one per batch item,
    along a leading axis, when the Simulator has a ``minibatch_size``.
    A closed Simulator has no live values and shows the built ones.
    """

    def __init__(self, sim):
        self._sim = sim
        self._cache = {}
        self._live = {}  # obj -> (params dict, state dict, live value)

    def __getitem__(self, key):
        recorded = self._sim._runtime.snapshot.probes.get(key)
        if recorded is None:
            return self._params_of(key)
        cached = self._cache.get(key)
        if cached is None or not cached[0].same(recorded):
            value = self._sim._probe_array(key)
            value.setflags(write=False)
            cached = self._cache[key] = (recorded, value)
        return cached[1]

    def _params_of(self, obj):
        """The live parameters of ``obj`` (see the class docstring)."""
        sim = self._sim
        built = sim.model.params[obj]
        if sim._runtime.snapshot is None or not isinstance(obj, Ensemble | Connection):
            return built
        params, state = sim._runtime.live_values()
        cached = self._live.get(obj)
        if cached is not None and cached[0] is params and cached[1] is state:
            return cached[2]
        host = HostValues(sim._layout, params, state)
        learned = sim._learned, sim._batch_given
        if isinstance(obj, Ensemble):
            value = live_ensemble(sim.model, host, obj, built, *learned)
        else:
            value = live_connection(sim.model, host, obj, built, *learned)
        self._live[obj] = (params, state, value)
        return value

    def get_params(self, *obj_attrs) -> list:
        """The current values of signals, as NengoDL's ``sim.data.get_params``:
        ``(obj, attr)`` names ``sim.model.sig[obj][attr]`` (e.g. ``(ens,
        "encoders")``, the scaled encoders, or ``(ens.neurons, "bias")``).

        Raises
        ------
        ValidationError
            If an object has no such signal.
        """
        values = []
        for obj, attr in obj_attrs:
            sig = self._sim.model.sig.get(obj, {}).get(attr)
            if sig is None:
                names = sorted(self._sim.model.sig.get(obj, {}))
                raise ValidationError(
                    f"{obj} has no signal {attr!r}; it has {names}", attr="obj_attrs"
                )
            values.append(self._sim.signals[sig])
        return values

    def __iter__(self):
        return iter(self._sim.model.params)

    def __len__(self):
        return len(self._sim.model.params)

    def __contains__(self, key):
        return key in self._sim.model.params

    def reset(self):
        """Forget cached probe arrays and live parameter values."""
        self._cache.clear()
        self._live.clear()


class HostValues:
    """NumPy reads of signals from a simulator's parameter and state arrays.

    Arrays are copied from the device once each, when first read. Batched
    state is read as batch item 0.

    Parameters
    ----------
    layout : Layout
        Where each signal lives.
    params, state : dict
        Array key -> (device) array (a `Snapshot`'s ``params`` and ``state``).
    """

    def __init__(self, layout, params, state):
        self.layout = layout
        self.params = params
        self.state = state or {}
        self._host = {}

    def array(self, key) -> np.ndarray:
        """The whole array ``key``, on the host (batched for state)."""
        value = self._host.get(key)
        if value is None:
            source = self.params if key in self.params else self.state
            value = self._host[key] = np.asarray(source[key])
        return value

    def has(self, sig) -> bool:
        """Whether ``sig`` is stored (signals that no operator uses are not, nor
        those that live within a step only)."""
        return sig is not None and self.layout.keeps(sig)

    def is_param(self, sig) -> bool:
        """Whether ``sig`` lies entirely in the (unbatched) parameters."""
        view = self.layout.view(sig)
        return view.param_key is None and view.key in self.params

    def read(self, sig, batched=False) -> np.ndarray:
        """The value of ``sig`` (sparse: its nonzero data).

        State is ``(B,) + shape`` with ``batched``, otherwise batch item 0.
        """
        return self.layout.read(self.array, sig, batched)


def sparse_with_data(initial_value, data):
    """A sparse matrix like ``initial_value`` (scipy or Nengo) holding ``data``.

    ``data`` is in the order `.sparse_coords` gives.
    """
    if isinstance(initial_value, SparseMatrix):
        return SparseMatrix(initial_value.indices, data, initial_value.shape)
    matrix = initial_value.tocsr(copy=True)
    matrix.data = np.array(data, dtype=matrix.data.dtype)
    return matrix


def _is_param(host, sig) -> bool:
    return host.has(sig) and host.is_param(sig)


def _changed(live, built) -> bool:
    """Whether ``live`` differs from ``built`` beyond its storage rounding."""
    built = np.asarray(built)
    return live.shape != built.shape or not np.array_equal(
        live, built.astype(live.dtype)
    )


def _readonly(value):
    value = np.array(value)
    value.setflags(write=False)
    return value


def live_ensemble(model, host, ens, built, learned=(), batched=False) -> BuiltEnsemble:
    """``built`` with the current encoders and biases of ``ens``.

    Encoders in ``learned`` (changed by a learning rule) are state: with
    ``batched``, one per batch item, along a leading axis.
    """
    sig = model.sig[ens].get("encoders")
    changes = {}
    is_learned = sig is not None and sig in learned
    if (is_learned or _is_param(host, sig)) and built.scaled_encoders is not None:
        scaled = host.read(sig, batched=is_learned and batched)
        if _changed(scaled, built.scaled_encoders):
            changes["scaled_encoders"] = _readonly(scaled)
            changes["encoders"] = _readonly(
                scaled
                if built.gain is None
                else scaled * (ens.radius / safe_gain(built.gain))[:, None]
            )
    sig = model.sig[ens.neurons].get("bias")
    if _is_param(host, sig) and built.bias is not None:
        bias = host.read(sig)
        if _changed(bias, built.bias):
            changes["bias"] = _readonly(bias)
            changes.update(_rates_intercepts(ens, built.gain, bias))
    return built._replace(**changes) if changes else built


def safe_gain(gain) -> np.ndarray:
    """``gain`` with zeros replaced by ones (so that encoders can be divided)."""
    gain = np.asarray(gain)
    return np.where(gain == 0, np.ones_like(gain), gain)


def _rates_intercepts(ens, gain, bias) -> dict:
    """The ``max_rates`` and ``intercepts`` that ``gain`` and ``bias`` imply."""
    try:
        with np.errstate(all="ignore"):
            max_rates, intercepts = ens.neuron_type.max_rates_intercepts(
                np.asarray(gain, np.float64), np.asarray(bias, np.float64)
            )
    except NotImplementedError:
        # a neuron type that cannot say: better none than stale values
        return {"max_rates": None, "intercepts": None}
    return {"max_rates": _readonly(max_rates), "intercepts": _readonly(intercepts)}


def live_connection(
    model, host, conn, built, learned=(), batched=False
) -> BuiltConnection:
    """``built`` with the current weights of ``conn``.

    Weights in ``learned`` (changed by a learning rule) are state: with
    ``batched``, one per batch item, along a leading axis.
    """
    sig = model.sig[conn].get("weights")
    if sig is not None and sig in learned:
        return built._replace(weights=_readonly(host.read(sig, batched=batched)))
    if not _is_param(host, sig) or built.weights is None:
        return built
    weights = host.read(sig)
    if sig.sparse:
        original = sparse_coords(sig.initial_value)[0]
        if not _changed(weights, original):
            return built
        return built._replace(weights=sparse_with_data(sig.initial_value, weights))
    if not _changed(weights, built.weights):
        return built
    return built._replace(weights=_readonly(weights))


class SignalValues(Mapping):
    """``sim.signals``: the current value of each signal, as a read-only array.

    Batched state has a leading minibatch axis when the Simulator was given a
    ``minibatch_size``. Iterates over the base signals kept between steps:
    those that are set anew every step before anything reads them (a neuron
    group's input current and output, a Node's output) live within a step
    only, and reading them raises a `SimulationError` (probe them instead).
    """

    def __init__(self, sim):
        self._sim = sim

    def __getitem__(self, sig):
        sim = self._sim
        if sim.closed:
            raise SimulatorClosed("Cannot read signals of a closed simulator")
        if sim._layout.is_transient(sig):
            raise SimulationError(
                f"Cannot read {sig}: it is computed anew every step and not kept "
                "between steps (nengo_jax does not store it, to save memory "
                "traffic); record it with a nengo.Probe instead"
            )
        params, state = sim._runtime.live_values()
        env = SignalEnv(
            sim._layout,
            {**params, **state},
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

    def __contains__(self, sig):
        return isinstance(sig, Signal) and self._sim._layout.keeps(sig)

    def __iter__(self):
        return iter(self._kept())

    def __len__(self):
        return len(self._kept())

    def _kept(self) -> list:
        """The base signals kept between steps (those `__getitem__` reads)."""
        layout = self._sim._layout
        return [base for base in layout.bases if layout.keeps(base)]
