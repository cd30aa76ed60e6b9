"""Where a simulator's arrays live: one device, or the minibatch split over many.

Data parallelism over the minibatch axis, with JAX's sharding and Keras's
distribution API (no layer of our own): the devices form a
`jax.sharding.Mesh` (a `keras.distribution.DataParallel`'s, or one made from a
list of devices), the state, the input data and the probe outputs are split
along their batch axis over the mesh's batch axis (`jax.sharding.NamedSharding`),
and the parameters are replicated. The jitted program is the same as on one
device: XLA partitions it from the shardings of its arguments. Learned
per-item weights (those of online learning rules) are state, so they split with
the batch.

Several processes (`keras.distribution.initialize`, i.e. ``jax.distributed``)
run the same program on the devices of all of them. A run's inputs are the
whole minibatch in every process, and every process gets the whole of its
probe data back (each process puts only its own devices' share on them). The
Keras calls take data as Keras does across processes: each process gives its
own share of every minibatch (`process_share`: the items that its devices
hold, ``minibatch_size / processes`` of them with `DataParallel`), and Keras
makes the global minibatch of the shares (`jax.make_array_from_process_local_data`).
The processes first agree that their data fit together (`Placement.agree`),
so that data that does not fit raises the same error in every process
instead of leaving the others waiting. ``predict`` gathers the outputs: every
process gets those of the whole data, as from ``run``; ``evaluate``'s results
are those of the whole data, and ``fit`` trains every replica of the
parameters alike.
"""

from __future__ import annotations

import contextlib
import copy
import zlib

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from nengo.exceptions import SimulationError, ValidationError

from nengo_jax.program.program import find_device

#: The Keras calls of a Simulator that run across several processes.
ACROSS_PROCESSES = ("fit", "evaluate", "predict", "predict_on_batch")


class Placement:
    """Puts a simulator's arrays on its devices and brings them back.

    Parameters
    ----------
    device : jax.Device or None
        The one device (None: JAX's default), when there is no mesh.
    distribution : keras.distribution.Distribution or None
        Splits the minibatch over ``distribution.device_mesh`` along its
        ``batch_dim_name`` axis.
    """

    def __init__(self, device=None, distribution=None):
        self.device = device
        self.distribution = distribution
        #: Keys of the arrays with a leading batch axis (see `put`).
        self.batched_keys = frozenset()
        self.mesh = None
        #: Whether the devices are all this process's.
        self.local = True
        if distribution is not None:
            self.mesh = distribution.device_mesh.backend_mesh
            self.batch_axis = distribution.batch_dim_name
            self._batched = NamedSharding(self.mesh, PartitionSpec(self.batch_axis))
            self._replicated = NamedSharding(self.mesh, PartitionSpec())
            here = jax.process_index()
            self.local = all(d.process_index == here for d in self.mesh.devices.flat)
            self._keras = distribution
            if not self.local:
                # each process gives its share of the data (arrays): already
                # sharded, in Keras's words (a copy: the user's stays as it is)
                self._keras = copy.copy(distribution)
                self._keras.auto_shard_dataset = False

    @property
    def sharded(self) -> bool:
        """Whether the minibatch is split over several devices."""
        return self.mesh is not None

    @property
    def first_device(self):
        """A device of the kind the program runs on (None: JAX's default)."""
        return self.device if self.mesh is None else self.mesh.devices.flat[0]

    def put(self, arrays: dict) -> dict:
        """``arrays`` (parameters or state, by key) on the devices: split along
        the batch axis if their key is in `batched_keys`, else replicated."""
        if self.mesh is None:
            return jax.device_put(arrays, self.device)
        return {key: self._put(x, self.sharding(key)) for key, x in arrays.items()}

    def sharding(self, key: str):
        """The sharding of the parameter or state array ``key`` (None without a
        mesh)."""
        if self.mesh is None:
            return None
        return self._batched if key in self.batched_keys else self._replicated

    def inputs(self, xs: dict, batched: dict) -> dict:
        """A run's time-major inputs ``(n_steps, B, ...)`` on the devices, split
        along their batch axis where ``batched[key]``, else replicated."""
        if self.mesh is None:
            return xs
        time_batched = NamedSharding(self.mesh, PartitionSpec(None, self.batch_axis))
        return {
            key: self._put(x, time_batched if batched[key] else self._replicated)
            for key, x in xs.items()
        }

    def to_host(self, tree):
        """``tree`` as NumPy arrays, whole on every process."""
        if self.mesh is None or self.local:
            return jax.device_get(tree)
        return multihost_utils.process_allgather(tree, tiled=True)

    @property
    def processes(self) -> int:
        """The number of processes whose devices split the minibatch."""
        if self.local:
            return 1
        return len({d.process_index for d in self.mesh.devices.flat})

    def local_rows(self, minibatch_size: int) -> np.ndarray:
        """The items of a minibatch that this process's devices hold, in order
        (all of them, in one process)."""
        if self.local:
            return np.arange(minibatch_size)
        held = self._batched.addressable_devices_indices_map((minibatch_size,))
        items = np.arange(minibatch_size)
        return np.unique(np.concatenate([items[index] for index in held.values()]))

    def keras_scope(self, what: str):
        """The context of this simulator's Keras call ``what``: its distribution's
        scope (Keras then splits each minibatch over the mesh as it does its own;
        across processes, it makes each minibatch of the processes' shares).

        Raises
        ------
        SimulationError
            With several processes, for a call other than those of
            `ACROSS_PROCESSES`.
        """
        if self.distribution is None:
            return contextlib.nullcontext()
        if not self.local and what not in ACROSS_PROCESSES:
            raise SimulationError(
                f"Cannot {what} across {self.processes} processes: of the Keras "
                f"calls, only {', '.join(ACROSS_PROCESSES)} run across processes. "
                "Give this Simulator device=jax.local_devices() to run it in each "
                "process on its own."
            )
        return self._keras.scope()

    def agree(self, what: str, check):
        """The result of ``check()``, once the data of every process's Keras call
        ``what`` passed its checks and the processes' data fit together.

        ``check`` checks this process's data and returns ``(result, shape)``,
        with ``shape = (items, steps, signature)``: the number of items and of
        steps, and a description of the arrays (names and sizes), which must be
        the same in every process. In one process, only ``check`` runs. Every
        process takes part in one collective, so a check that fails in one
        process raises in all of them, instead of leaving the others waiting
        for it in the first minibatch.

        Raises
        ------
        Exception
            What ``check`` raised, in the process whose check failed.
        ValidationError
            In the other processes then, and in every process if their data do
            not fit together.
        """
        if self.local:
            return check()[0]
        result, error, facts = None, None, np.full(4, -1, np.int32)
        try:
            result, (items, steps, signature) = check()
            facts[:] = (0, items, steps, zlib.crc32(repr(signature).encode()) >> 1)
        except Exception as e:
            error = e
        every = np.asarray(multihost_utils.process_allgather(facts))
        if error is not None:
            raise error
        failed = np.flatnonzero(every[:, 0] < 0).tolist()
        if failed:
            raise ValidationError(
                f"Cannot {what}: the data of process {failed[0]} was refused "
                "there (its error says why); every process must give valid data",
                attr="x",
            )
        for column, differ in (
            (1, "number of items (its share of every minibatch)"),
            (2, "number of steps"),
            (3, "Nodes and Probes, with arrays of the same sizes"),
        ):
            if len(set(every[:, column].tolist())) > 1:
                got = ""
                if column < 3:
                    got = "; got " + ", ".join(
                        f"{n} in process {p}" for p, n in enumerate(every[:, column])
                    )
                raise ValidationError(
                    f"Cannot {what} across {len(every)} processes: each must give "
                    f"data with the same {differ}{got}. See "
                    "nengo_jax.process_share for each process's share.",
                    attr="x",
                )
        return result

    def from_shares(self, arrays: dict) -> dict:
        """Across processes, one global minibatch of each of the processes'
        shares ``arrays`` (by name, items first), as Keras makes the minibatches
        of ``fit``; in one process, ``arrays``."""
        if self.local:
            return arrays
        return {
            name: jax.make_array_from_process_local_data(self._batched, np.asarray(x))
            for name, x in arrays.items()
        }

    @staticmethod
    def first_value(array):
        """The first element of a state ``array`` that is the same for every
        batch item (e.g. the step), read from this process's devices (other
        processes' items cannot be read without a collective)."""
        if isinstance(array, jax.Array):
            array = array.addressable_shards[0].data
        return np.asarray(array).reshape(-1)[0]

    def adopt(self, variables):
        """Replicate Keras ``variables`` made outside the distribution's scope
        (e.g. an optimizer's, or a loss tracker's made by ``compile``) over the
        mesh, as Keras would have made them inside it: one jitted Keras step
        takes variables on one set of devices only."""
        if self.mesh is None:
            return
        for var in variables:
            value = var.value
            if value.sharding.device_set != self._replicated.device_set:
                var.assign(self._put(value, self._replicated))

    def _put(self, tree, sharding):
        """``tree``'s arrays as global arrays with the given sharding.

        In one process, a plain `jax.device_put`. With several, every process
        holds the whole array and puts only its own devices' parts.
        """
        if self.local:
            return jax.device_put(tree, sharding)

        def put(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return x  # already global
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, x.__getitem__)

        return jax.tree_util.tree_map(put, tree)


def process_share(data, minibatch_size: int, distribution=None):
    """This process's share of ``data`` for a Simulator's Keras calls, when
    several processes (``jax.distributed``) run it.

    Across processes, ``fit``, ``evaluate`` and ``predict`` take in each
    process its share of every minibatch: the items that its devices hold
    (with `keras.distribution.DataParallel` over ``P`` processes, items
    ``p * n / P`` to ``(p + 1) * n / P - 1`` of each minibatch of ``n`` items
    for process ``p``). Given the whole data, in every process, this returns
    them.

    Parameters
    ----------
    data : array or dict or list
        Arrays with items along their first axis (a multiple of
        ``minibatch_size``): one, or a dict or list of them (e.g. ``x`` and
        ``y`` of ``fit``).
    minibatch_size : int
        The Simulator's ``minibatch_size`` (that of all processes together).
    distribution : keras.distribution.Distribution or None
        The Simulator's ``device``; None: Keras's global distribution.

    Returns
    -------
    array or dict or list
        ``data`` with only this process's items (``data`` itself, with one
        process or no distribution).

    Raises
    ------
    ValidationError
        If an array's items are not whole minibatches, or ``minibatch_size`` is
        not a multiple of the devices.
    """
    import keras

    if distribution is None:
        distribution = keras.distribution.distribution()
    place = placement(distribution, minibatch_size)
    if place.local:
        return data
    rows = place.local_rows(minibatch_size)

    def share(key, x):
        x = np.asarray(x)
        if x.ndim == 0 or len(x) % minibatch_size != 0:
            raise ValidationError(
                f"Data{key} must have whole minibatches of minibatch_size="
                f"{minibatch_size} items along its first axis; got shape {x.shape}",
                attr="data",
            )
        starts = np.arange(0, len(x), minibatch_size)
        return x[(starts[:, None] + rows).ravel()]

    if isinstance(data, dict):
        return {key: share(f" for {key}", x) for key, x in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(share(f"[{i}]", x) for i, x in enumerate(data))
    return share("", data)


def placement(device, minibatch_size: int) -> Placement:
    """The `Placement` of a Simulator's ``device`` argument.

    ``device`` is a device name (``"cpu"``, ``"gpu:1"``), a `jax.Device`, a
    list of devices (or their names), a `keras.distribution.Distribution`
    (e.g. `~keras.distribution.DataParallel`) or a `jax.sharding.Mesh` (split
    along its first axis). None takes the global Keras distribution, if one
    is set (`keras.distribution.set_distribution`), else JAX's default device.
    A mesh of one device is that device.

    Raises
    ------
    ValidationError
        If ``minibatch_size`` is not a multiple of the number of devices the
        minibatch is split over, or ``device`` names no devices.
    """
    distribution = _distribution(device)
    if distribution is None:
        return Placement(_one_device(device))
    mesh = distribution.device_mesh
    n_shards = dict(zip(mesh.axis_names, mesh.shape, strict=True))[
        distribution.batch_dim_name
    ]
    if mesh.devices.size == 1:
        return Placement(mesh.backend_mesh.devices.flat[0])
    if minibatch_size % n_shards != 0:
        fit = n_shards * max(1, round(minibatch_size / n_shards))
        raise ValidationError(
            f"Must be a multiple of the {n_shards} devices that the "
            f"minibatch is split over (axis {distribution.batch_dim_name!r} of "
            f"{distribution.__class__.__name__}); got minibatch_size="
            f"{minibatch_size}. Use e.g. minibatch_size={fit}, or fewer devices.",
            attr="minibatch_size",
        )
    return Placement(distribution=distribution)


def _distribution(device):
    """The Keras distribution that ``device`` names (None: one device)."""
    import keras

    dist = keras.distribution
    if device is None:
        return dist.distribution()
    if hasattr(device, "device_mesh") and hasattr(device, "batch_dim_name"):
        return device  # (Keras exports no base class of its distributions)
    if isinstance(device, Mesh):
        keras_mesh = dist.DeviceMesh(
            shape=tuple(device.devices.shape),
            axis_names=list(device.axis_names),
            devices=device.devices,
        )
        return dist.DataParallel(device_mesh=keras_mesh)
    if isinstance(device, list | tuple):
        if not device:
            raise ValidationError(
                "Must name at least one device; got an empty list", attr="device"
            )
        devices = [_one_device(d) for d in device]
        return dist.DataParallel(devices=devices)
    return None


def _one_device(device):
    if device is None or isinstance(device, jax.Device):
        return device
    if isinstance(device, str):
        return find_device(device)
    raise ValidationError(
        "Must be a device name (e.g. 'gpu:1'), a jax.Device, a list of devices, "
        f"a keras.distribution.Distribution or a jax.sharding.Mesh; got {device!r}",
        attr="device",
    )
