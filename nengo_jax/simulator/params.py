"""Trained parameters: named export, saving and loading, freezing into Nengo.

Parameters are found per Nengo object and attribute, never per array: which
signals share an array differs between builds of the same network (Nengo's
optimizer merges signals in an order that depends on object ids). Ensembles
and Connections are named by their position in ``network.all_ensembles`` and
``network.all_connections``, so a rebuilt network of the same structure (for
example the spiking twin of a rate model) finds its parameters under the same
names. State is named by its object's position among the built objects.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from nengo import Connection, Ensemble, Network, Node
from nengo.builder.processes import SimProcess
from nengo.builder.signal import Signal
from nengo.exceptions import ValidationError
from nengo.processes import Process
from nengo.transforms import SparseMatrix

from nengo_jax.program.program import RNG_KEY
from nengo_jax.simulator.data import HostValues
from nengo_jax.simulator.params_file import FORMAT, ParamFile, atomic_savez, npz_path


@dataclass(frozen=True)
class Entry:
    """One array of a parameter file: a signal of a Nengo object."""

    name: str
    obj: object
    sig: Signal

    def describe(self) -> str:
        obj = self.obj
        if obj is None:
            return self.name
        label = getattr(obj, "label", None)
        what = f"{type(obj).__name__} {label!r}" if label else type(obj).__name__
        return f"{self.name} ({what})"


class ParamsMethods:
    """Access to trained parameters, mixed into the `.Simulator`."""

    # -- named export -----------------------------------------------------------------

    def get_params(self, objs=None) -> dict:
        """The current parameters of Ensembles and Connections, by object.

        The values are those of ``sim.data``: parameters as trained (or
        loaded), and weights and encoders as online learning rules changed them.

        Parameters
        ----------
        objs : Network, Ensemble, Connection, Node or list
            Whose parameters; a Network gives all its Ensembles and Connections,
            and the Nodes with parameters (e.g. the weights of a TensorNode's
            Keras layer), recursively. Default: the whole network.

        Returns
        -------
        dict
            ``{ensemble: {"encoders", "scaled_encoders", "gain", "bias"},
            connection: {"weights"}, node: {name: value}}`` as NumPy copies
            (entries that an object does not have, e.g. the gain of a Direct
            ensemble, are left out). ``encoders`` are unit-length directions
            (as ``sim.data[ens].encoders``); ``scaled_encoders = encoders * gain
            / radius`` are what the neurons use. Sparse weights keep their
            sparse type.
        """
        self._check_open("get the parameters of")
        if objs is None:
            objs = self.model.toplevel
        result = {}
        host = HostValues(self._layout, *self._runtime.live_values())
        for obj in self._objects_of(objs, nodes=True):
            if isinstance(obj, Node):
                result[obj] = {
                    name: np.array(host.read(sig))
                    for name, sig in _node_params(self.model, host, obj).items()
                }
                continue
            built = self.data[obj]
            names = (
                ("encoders", "scaled_encoders", "gain", "bias")
                if isinstance(obj, Ensemble)
                else ("weights",)
            )
            result[obj] = {
                name: _copy(getattr(built, name))
                for name in names
                if getattr(built, name) is not None
            }
        return result

    # -- saving and loading -----------------------------------------------------------

    def save_params(self, path, include_state=False, include_non_trainable=None):
        """Save the parameters (and optionally the state) to one ``.npz`` file.

        The parameters include the weights and encoders that online learning
        rules changed (one per batch item), as in NengoDL.

        Any network of the same structure can load the file with `load_params`:
        the same Ensembles and Connections, built in the same order, with
        parameters of the same shapes (neuron types may differ, so the
        parameters of a rate model load into its spiking twin). The file is
        written to a temporary file first and then moved into place, so an
        interrupted save never leaves a broken file behind. A new file gets the
        permissions the umask allows (as from ``np.savez``); an overwritten one
        keeps its own.

        Parameters
        ----------
        path : str or os.PathLike
            Where to save; ``.npz`` is added if missing.
        include_state : bool
            Also save the simulation state (neuron, synapse and learning-rule
            state, the time and the random key) so that a network built the same
            way continues exactly where this one is.
        include_non_trainable : bool or None
            NengoDL's older name of ``include_state`` (deprecated there too).
        """
        include_state = _state_option(include_state, include_non_trainable)
        self._check_open("save the parameters of")
        path = npz_path(path)
        host = HostValues(self._layout, *self._runtime.live_values())
        entries = self._param_entries(host)
        # (what learning rules learned is state: one value per batch item)
        arrays = {
            e.name: host.read(e.sig, batched=not host.is_param(e.sig)) for e in entries
        }
        if include_state:
            state = self._state_entries(host)
            arrays.update((e.name, host.read(e.sig, batched=True)) for e in state)
            arrays["state.rng"] = np.asarray(host.state[RNG_KEY])
            entries = entries + state
        arrays["__format__"] = np.array(FORMAT)
        arrays["__names__"] = np.array([e.name for e in entries], dtype=str)
        arrays["__objects__"] = np.array([e.describe() for e in entries], dtype=str)
        atomic_savez(path, arrays)

    def load_params(self, path, include_state=False, include_non_trainable=None):
        """Load parameters saved by `save_params` (from this or a like network).

        Nothing changes unless everything loads: a missing, corrupt or
        truncated file, or one saved from a network of another structure,
        raises an error and leaves the simulator as it was. Only the arrays the
        file's index names are read, and only once the headers of all of them
        (shape against this network, and a numeric dtype) were checked; nothing
        is unpickled.

        Parameters
        ----------
        path : str or os.PathLike
            The file; ``.npz`` is added if missing.
        include_state : bool
            Also load the simulation state (the file must have been saved with
            ``include_state=True``); the simulator's time becomes the saved time.
        include_non_trainable : bool or None
            NengoDL's older name of ``include_state`` (deprecated there too).
        """
        include_state = _state_option(include_state, include_non_trainable)
        self._check_open("load parameters into")
        with (
            ParamFile(npz_path(path)) as file,
            self._runtime.call("load parameters"),
        ):
            self._load(file, include_state)

    def _load(self, file, include_state):
        path = file.path
        runtime = self._runtime
        snapshot = runtime.snapshot
        host = HostValues(self._layout, snapshot.params, snapshot.state)
        entries = self._param_entries(host)
        if include_state:
            if not file.has("state.rng"):
                raise ValidationError(
                    f"'{path}' holds no simulation state; save it with "
                    "save_params(path, include_state=True), or load only the "
                    "parameters with include_state=False",
                    attr="include_state",
                    obj=self,
                )
            entries = entries + self._state_entries(host)
        names = file.names
        if not include_state:
            names = [n for n in names if not n.startswith("state.")]
        # every shape checked before any data is read
        _check_structure(path, entries, names, file.described, file.headers, host)
        if include_state:
            rng_header = file.header("state.rng")
            here = np.asarray(snapshot.state[RNG_KEY])
            if rng_header.shape != here.shape:
                raise ValidationError(
                    f"'{path}' does not match this network: its random key has "
                    f"shape {rng_header.shape}, this simulator's {here.shape}",
                    attr="path",
                )

        # write into host copies; the simulator changes only when all succeeded
        copies = {}

        def writable(key):
            if key not in copies:
                copies[key] = np.array(host.array(key), copy=True)
            return copies[key]

        for entry in entries:
            self._layout.write(writable, entry.sig, file.read(entry.name))
        new_params = {k: v for k, v in copies.items() if k in snapshot.params}
        new_state = {k: v for k, v in copies.items() if k not in snapshot.params}
        n_steps = snapshot.n_steps
        if include_state:
            rng = file.read("state.rng", rng_header)
            new_state[RNG_KEY] = rng.astype(snapshot.state[RNG_KEY].dtype)
            n_steps = int(_read_written(self._layout, copies, host, self.model.step))
        runtime.commit(
            params=self._to_device({**snapshot.params, **new_params}),
            state=self._to_device({**snapshot.state, **new_state}),
            n_steps=n_steps,
        )

    def _param_entries(self, host) -> list:
        """The parameters, in network order: what training may change, and
        what learning rules changed (see `learned_signals`)."""
        network = self.model.toplevel
        if network is None:
            return []
        sig = self.model.sig
        entries = []
        for i, ens in enumerate(network.all_ensembles):
            if ens in sig:
                entries.append(
                    Entry(f"ensemble{i}.encoders", ens, sig[ens].get("encoders"))
                )
                entries.append(
                    Entry(f"ensemble{i}.bias", ens, sig[ens.neurons].get("bias"))
                )
        for i, conn in enumerate(network.all_connections):
            if conn in sig:
                entries.append(
                    Entry(f"connection{i}.weights", conn, sig[conn].get("weights"))
                )
        entries = [
            e
            for e in entries
            if host.has(e.sig) and (host.is_param(e.sig) or e.sig in self._learned)
        ]
        for i, node in enumerate(network.all_nodes):
            for attr, s in _node_params(self.model, host, node).items():
                entries.append(Entry(f"node{i}.{attr}", node, s))
        return entries

    def _state_entries(self, host) -> list:
        """Every signal an operator writes, named by its object and attribute."""
        entries, owners = [], {}
        objects = (obj for obj in self.model.sig if not isinstance(obj, Process))
        for i, obj in enumerate(objects):
            for attr, sig in self.model.sig[obj].items():
                if not isinstance(sig, Signal) or not host.has(sig) or sig.size == 0:
                    continue
                key = _signature(sig)
                if key in owners:
                    continue  # the same signal under another name
                name = f"state.{i}.{attr}"
                owners[key] = (name, obj)
                if not host.is_param(sig) and sig not in self._learned:
                    entries.append(Entry(name, obj, sig))
        # synapse and process state belongs to the signal the process writes;
        # in the owners' order, since the operators' order differs between builds
        order = {name: i for i, (name, _) in enumerate(owners.values())}
        processes = []
        for op in self._ops:
            if not isinstance(op, SimProcess) or not op.state:
                continue
            owner, obj = owners.get(_signature(op.output), (None, None))
            if owner is None:
                raise ValidationError(
                    f"Cannot name the state of {op} for saving: its output is not "
                    "a signal of any Nengo object",
                    attr="include_state",
                    obj=self,
                )
            for name, sig in sorted(op.state.items()):
                if host.has(sig) and not host.is_param(sig):
                    processes.append((order[owner], Entry(f"{owner}.{name}", obj, sig)))
        processes.sort(key=lambda p: (p[0], p[1].name))
        entries += [entry for _, entry in processes]
        for name, sig in (
            ("state.step", self.model.step),
            ("state.time", self.model.time),
        ):
            if host.has(sig):
                entries.append(Entry(name, None, sig))
        return entries

    # -- back into Nengo --------------------------------------------------------------

    def _objects_of(self, objs, nodes=False) -> list:
        """The Ensembles and Connections (and Nodes) that ``objs`` names, checked.

        With ``nodes``, a Network also gives its Nodes that have parameters.
        """
        kinds = (Ensemble, Connection, Node) if nodes else (Ensemble, Connection)
        if isinstance(objs, Network):
            objects = objs.all_ensembles + objs.all_connections
            if nodes:
                host = HostValues(self._layout, *self._runtime.live_values())
                objects += [
                    node
                    for node in objs.all_nodes
                    if _node_params(self.model, host, node)
                ]
        elif isinstance(objs, kinds):
            objects = [objs]
        elif isinstance(objs, list | tuple):
            objects = [obj for item in objs for obj in self._objects_of(item, nodes)]
        else:
            names = ", ".join(kind.__name__ for kind in kinds)
            raise ObjectTypeError(
                f"Expected a Network, {names} or a list of them; got {objs!r} of "
                f"type {type(objs).__name__}",
                attr="objs",
                obj=self,
            )
        for obj in objects:
            if obj not in self.model.params:
                raise ValidationError(
                    f"{obj} is not part of the network this Simulator was built from",
                    attr="objs",
                    obj=self,
                )
        return objects


# -- helpers ----------------------------------------------------------------------


class ObjectTypeError(ValidationError, TypeError):
    """An object of a type that has no parameters: a `ValidationError` that is
    also the `TypeError` NengoDL raises (so either ``except`` catches it)."""


def _node_params(model, host, node) -> dict:
    """A Node's parameters (e.g. a TensorNode's layer weights): name -> signal.

    Its input and output are left out: a constant output is the Node's own
    definition, not a parameter.
    """
    if node not in model.sig:
        return {}
    return {
        attr: sig
        for attr, sig in model.sig[node].items()
        if attr not in ("in", "out")
        and isinstance(sig, Signal)
        and host.has(sig)
        and host.is_param(sig)
    }


def _check_structure(path, entries, names, described, headers, host):
    """Raise on the first difference between the file and this network.

    ``headers`` give the shapes in the file (by name), read without the data.
    """
    for i in range(max(len(entries), len(names))):
        entry = entries[i] if i < len(entries) else None
        name = names[i] if i < len(names) else None
        here = None if entry is None else _stored_shape(entry, host)
        if entry is None:
            raise ValidationError(
                f"'{path}' does not match this network: the file has "
                f"{described[name]} with shape {headers[name].shape}, which this "
                "network does not have (the networks differ in structure)",
                attr="path",
            )
        if name is None or name != entry.name:
            there = "nothing" if name is None else f"{described[name]}"
            shape = "" if name is None else f" with shape {headers[name].shape}"
            raise ValidationError(
                f"'{path}' does not match this network: {entry.describe()} with "
                f"shape {here} here corresponds to {there}{shape} in the file "
                "(the networks differ in structure)",
                attr="path",
            )
        if headers[name].shape != here:
            raise ValidationError(
                f"'{path}' does not match this network: {entry.describe()} has "
                f"shape {here} here but {headers[name].shape} in the file (saved "
                f"from {described[name]})",
                attr="path",
            )


def _stored_shape(entry, host) -> tuple:
    """The shape ``entry`` is saved with (state: with the batch axis)."""
    sig = entry.sig
    if sig.sparse:
        return tuple(host.array(host.layout.view(sig).key).shape)
    shape = tuple(sig.shape)
    if not host.is_param(sig):
        view = host.layout.view(sig)
        array = host.array(view.key)
        if array.ndim > len(host.layout.shape(view.key)):
            shape = array.shape[:1] + shape
    return shape


def _state_option(include_state, include_non_trainable) -> bool:
    """``include_state``, or NengoDL's deprecated ``include_non_trainable``."""
    if include_non_trainable is None:
        return include_state
    warnings.warn(
        "include_non_trainable is deprecated (as in NengoDL); use include_state",
        DeprecationWarning,
        stacklevel=3,
    )
    return bool(include_non_trainable)


def learned_signals(model, layout) -> frozenset:
    """The Connection weights and Ensemble encoders that learning rules change.

    They are simulation state (operators write them; each batch item learns
    its own), but NengoDL treats them as parameters: `save_params` saves them,
    ``reset(include_trainable=False)`` keeps them and ``sim.data`` shows them.
    """
    network = model.toplevel
    if network is None:
        return frozenset()
    candidates = [
        model.sig.get(c, {}).get("weights") for c in network.all_connections
    ] + [model.sig.get(e, {}).get("encoders") for e in network.all_ensembles]
    bases, state = set(layout.bases), set(layout.state_keys)
    return frozenset(
        sig
        for sig in candidates
        if sig is not None and sig.base in bases and layout.view(sig).key in state
    )


def _signature(sig) -> tuple:
    """Signals with equal signatures are the same elements of one base."""
    return (sig.base, sig.elemoffset, tuple(sig.shape), sig.elemstrides)


def _read_written(layout, copies, host, sig) -> np.ndarray:
    """``sig`` from the written ``copies``, or from ``host`` if not written."""

    def array(key):
        return copies[key] if key in copies else host.array(key)

    return layout.read(array, sig)


def _copy(value):
    if isinstance(value, SparseMatrix):
        return SparseMatrix(value.indices, np.array(value.data), value.shape)
    if hasattr(value, "tocsr"):
        return value.copy()
    return np.array(value)
