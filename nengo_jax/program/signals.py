"""The signals of one timestep, as traced JAX arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nengo_jax.program.host import host_call


class SignalEnv:
    """Reads and writes Nengo signals during one traced timestep.

    Values are held per base array. A base that no operator writes is a
    parameter without a batch axis; everything else carries a leading axis of
    ``minibatch_size``. `read` returns whichever the base holds (builders that
    need a batch axis use `read_batched`), and writes always store batched values.

    Writes to contiguous ranges are held back as pending segments of their
    base: reads of those ranges take the segments' values, a later increment
    adds to them, and `flush` writes each base's segments with one
    ``dynamic_update_slice`` per run of adjacent segments. XLA updates a base in
    place only when the new values do not read that base (otherwise it copies
    the whole base), so a signal that is reset and then incremented several
    times in a step is written once, in place, instead of read and copied at
    every increment.

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
    unset : iterable of str
        Keys of bases whose values hold nothing yet (placeholders for the
        layout's transient state): reading an element before this step wrote
        it raises, so a wrong claim of `OpBuilder.fresh_writes` fails loudly
        when the step is traced instead of reading zeros.
    """

    def __init__(
        self,
        layout,
        values,
        streams,
        minibatch_size,
        dt,
        key,
        training=False,
        unset=(),
    ):
        self.layout = layout
        self.values = values
        self.streams = streams
        self.minibatch_size = minibatch_size
        self.dt = dt
        self._key = key
        self._step_key = None
        self.training = training
        #: base key -> sorted, disjoint ``(start, stop, value)`` of values
        #: written but not yet stored in ``values`` (``value`` is ``(B, n)``)
        self._pending = {}
        #: The token of this step's last `host_call` (None before the first).
        self._host_token = None
        #: key -> flat mask of the elements not yet written (see ``unset``)
        self._unset = {k: np.ones(int(np.prod(layout.shape(k))), bool) for k in unset}

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
        if sig.sparse:
            return self.values[view.key]
        if view.key in self._unset:
            self._check_written(sig, view)
        if view.key in self._pending:
            if view.index is None:
                value = self._range(view.key, view.start, view.stop)
                return value.reshape((self.minibatch_size,) + view.shape)
            self.flush(view.key)
        if view.param_key in self._pending:
            self.flush(view.param_key)
        value = self.values[view.key]
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
            out = flat.at[..., view.index.ravel()].get(mode="promise_in_bounds")
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
        key, B = view.key, self.minibatch_size
        old = self.values[key]
        if not self._batched(key):
            # only run-time data writes to a parameter: it becomes batched
            old = self.values[key] = jnp.broadcast_to(old, (B,) + old.shape)
        value = jnp.broadcast_to(jnp.asarray(value, dtype=old.dtype), (B,) + view.shape)
        value = value.reshape(B, -1)
        if key in self._unset:
            if inc:
                self._check_written(sig, view)
            self._unset[key][self._elements(view)] = False
        if view.index is None:
            if view.start == view.stop:
                return
            if inc:
                value = self._range(key, view.start, view.stop) + value
            self._hold(key, view.start, view.stop, value)
        else:
            self.flush(key)
            where = self.values[key].reshape(B, -1).at[:, view.index.ravel()]
            new = where.add(value) if inc else where.set(value)
            self.values[key] = new.reshape(old.shape)

    def _elements(self, view):
        """The flat elements of ``view``'s state array that it covers."""
        if view.index is None:
            return slice(view.start, view.stop)
        index = view.index.ravel()
        if view.param_key is not None:  # [parameter part, state part]
            n_param = int(np.prod(self.layout.shape(view.param_key)))
            index = index[index >= n_param] - n_param
        return index

    def _check_written(self, sig, view):
        if self._unset[view.key][self._elements(view)].any():
            raise RuntimeError(
                f"nengo_jax internal error: {sig} is read before it is written "
                f"in this step, but its base {view.key!r} is kept within a step "
                "only (an operator builder's fresh_writes claims too much)"
            )

    def _range(self, key, start, stop):
        """Elements ``[start, stop)`` of base ``key`` (flat, batched), pending
        writes included."""
        flat = self.values[key].reshape(self.minibatch_size, -1)
        pieces, pos = [], start
        for s, e, value in self._pending.get(key, ()):
            if e <= start or s >= stop:
                continue
            if s > pos:
                pieces.append(flat[:, pos:s])
            lo, hi = max(s, start), min(e, stop)
            pieces.append(value if (lo, hi) == (s, e) else value[:, lo - s : hi - s])
            pos = hi
        if pos < stop or not pieces:
            pieces.append(flat[:, pos:stop])
        return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=1)

    def _hold(self, key, start, stop, value):
        """Make ``value`` the pending value of ``[start, stop)`` of base ``key``."""
        segments = []
        for s, e, old in self._pending.get(key, ()):
            if e <= start or s >= stop:
                segments.append((s, e, old))
                continue
            if s < start:
                segments.append((s, start, old[:, : start - s]))
            if e > stop:
                segments.append((stop, e, old[:, stop - s :]))
        segments.append((start, stop, value))
        self._pending[key] = sorted(segments, key=lambda segment: segment[0])

    def flush(self, key=None):
        """Store the pending writes of base ``key`` (None: of every base)."""
        for k in list(self._pending) if key is None else [key]:
            segments = self._pending.pop(k, None)
            if not segments:
                continue
            shape = self.values[k].shape
            flat = self.values[k].reshape(self.minibatch_size, -1)
            runs = []  # adjacent segments join: one update each
            for s, e, value in segments:
                if runs and runs[-1][1] == s:
                    runs[-1] = (runs[-1][0], e, runs[-1][2] + [value])
                else:
                    runs.append((s, e, [value]))
            for s, e, values in runs:
                value = values[0] if len(values) == 1 else jnp.concatenate(values, 1)
                if (s, e) == (0, flat.shape[1]):
                    flat = value
                else:
                    # (in place where ``value`` does not read this base)
                    flat = jax.lax.dynamic_update_slice(flat, value, (0, s))
            self.values[k] = flat.reshape(shape)

    def inc(self, sig, value):
        """Add ``value`` to ``sig``."""
        self.write(sig, value, inc=True)

    def host_call(self, fn, result, *args, errors, what):
        """`host_call` of ``fn`` that runs after every earlier one of this step.

        Each call takes the previous one's token, so Python functions run in
        the program's step order (as `nengo.Simulator` calls them) even when no
        data passes between them: they may share Python state.
        """

        def chained(*values):
            return fn(*values[:-1]), np.zeros((), np.int32)

        token = self._host_token
        if token is None:
            token = jnp.zeros((), jnp.int32)
        out, self._host_token = host_call(
            chained,
            (result, jax.ShapeDtypeStruct((), jnp.int32)),
            *args,
            token,
            errors=errors,
            what=what,
        )
        return out

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
