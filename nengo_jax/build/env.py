"""The signals of one timestep, as traced JAX arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp


class SignalEnv:
    """Reads and writes Nengo signals during one traced timestep.

    Values are held per base array. A base that no operator writes is a
    parameter without a batch axis; everything else carries a leading axis of
    ``minibatch_size``. `read` returns whichever the base holds (builders that
    need a batch axis use `read_batched`), and writes always store batched values.

    Parameters
    ----------
    layout : Layout
        Where each signal lives.
    values : dict
        Base key -> array, for parameters and state.
    streams : dict
        Host stream key -> this step's value.
    minibatch_size : int
        The batch size ``B``.
    dt : float
        The simulator timestep.
    key : jax.Array
        The PRNG state carried between timesteps (device-side randomness).
    training : bool
        Whether this step computes the training version of the model (static).
    """

    def __init__(
        self, layout, values, streams, minibatch_size, dt, key, training=False
    ):
        self.layout = layout
        self.values = values
        self.streams = streams
        self.minibatch_size = minibatch_size
        self.dt = dt
        self._key = key
        self._step_key = None
        self.training = training

    def is_batched(self, sig) -> bool:
        """Whether the value of ``sig`` has a batch axis."""
        if sig.sparse:
            return False
        return self._batched(self.layout.view(sig).key)

    def _batched(self, key) -> bool:
        return self.values[key].ndim > len(self.layout.shape(key))

    def read(self, sig, view=None):
        """The value of ``sig``: ``(B,) + sig.shape`` if batched, else ``sig.shape``.

        ``view`` (from `Layout.indexed_view`) reads part of ``sig`` instead.
        """
        view = self.layout.view(sig) if view is None else view
        value = self.values[view.key]
        if sig.sparse:
            return value
        batched = self._batched(view.key)
        lead = value.shape[:1] if batched else ()
        if view.whole:
            return value.reshape(lead + view.shape)
        flat = value.reshape(lead + (-1,))
        if view.param_key is not None:
            # across a split base: [parameter part, state part]
            param = self.values[view.param_key]
            if self._batched(view.param_key):  # given run-time data
                param = param.reshape(lead + (-1,))
            elif batched:
                param = jnp.broadcast_to(param.reshape(-1), lead + (param.size,))
            else:
                param = param.reshape(-1)
            flat = jnp.concatenate([param, flat], axis=-1)
        if view.index is None:
            out = flat[..., view.start : view.stop]
        else:
            out = jnp.take(flat, view.index.ravel(), axis=-1)
        return out.reshape(lead + view.shape)

    def read_batched(self, sig, view=None):
        """The value of ``sig`` with a batch axis, ``(B,) + sig.shape``."""
        value = self.read(sig, view)
        if not self.is_batched(sig):
            value = jnp.broadcast_to(value, (self.minibatch_size,) + value.shape)
        return value

    def write(self, sig, value, inc=False, view=None):
        """Set (or with ``inc``, add to) ``sig``; ``value`` broadcasts to it.

        ``view`` (from `Layout.indexed_view`) writes part of ``sig`` instead.
        """
        view = self.layout.view(sig) if view is None else view
        old = self.values[view.key]
        B = self.minibatch_size
        if not self._batched(view.key):
            # only run-time data writes to a parameter: it becomes batched
            old = jnp.broadcast_to(old, (B,) + old.shape)
        value = jnp.broadcast_to(jnp.asarray(value, dtype=old.dtype), (B,) + view.shape)
        if view.whole:
            new = value.reshape(old.shape)
            if inc:
                new = old + new
        else:
            flat = old.reshape(B, -1)
            value = value.reshape(B, -1)
            if view.index is None:
                # a contiguous range: dynamic_update_slice updates in place, where
                # ``.at[].set`` would lower to a general scatter
                if inc:
                    value = value + flat[:, view.start : view.stop]
                new = jax.lax.dynamic_update_slice(flat, value, (0, view.start))
            else:
                where = flat.at[:, view.index.ravel()]
                new = where.add(value) if inc else where.set(value)
            new = new.reshape(old.shape)
        self.values[view.key] = new

    def inc(self, sig, value):
        """Add ``value`` to ``sig``."""
        self.write(sig, value, inc=True)

    def stream(self, stream):
        """This step's value of a host stream declared by a builder."""
        return self.streams[stream.key]

    def rng_key(self, salt: int):
        """A PRNG key for this step, distinct for each ``salt`` (e.g. builder index)."""
        if self._step_key is None:
            self._key, self._step_key = jax.random.split(self._key)
        return jax.random.fold_in(self._step_key, salt)

    @property
    def next_key(self):
        """The PRNG state for the next timestep: advanced only if this one drew
        (a step that draws nothing computes no key)."""
        return self._key
