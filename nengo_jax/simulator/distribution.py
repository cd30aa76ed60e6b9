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
run the same program on the devices of all of them: every process holds the
whole minibatch of a run's inputs and gets the whole of its probe data back
(each process puts only its own devices' share on them). Keras calls run on
the devices of one process.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from nengo.exceptions import SimulationError, ValidationError

from nengo_jax.program.program import find_device


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

    def keras_scope(self, what: str):
        """The context of this simulator's Keras call ``what``: its distribution's
        scope (Keras then splits each minibatch over the mesh as it does its own).

        Raises
        ------
        SimulationError
            With several processes: Keras would feed each its own share of the
            data, which this simulator does not split yet.
        """
        if self.distribution is None:
            return contextlib.nullcontext()
        if not self.local:
            raise SimulationError(
                f"Cannot {what} across {jax.process_count()} processes: the Keras "
                "calls of a Simulator run on the devices of one process (one "
                "device or several); runs (run, run_steps) take several "
                "processes. Give this Simulator device=jax.local_devices() to "
                "train in each process."
            )
        return self.distribution.scope()

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
