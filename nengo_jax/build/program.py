"""The simulation program: builders in order, run as one jitted ``lax.scan``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nengo_jax.build.env import SignalEnv

#: State key of the PRNG key for device-side randomness.
RNG_KEY = "_rng"


class Program:
    """Runs builders step by step over time.

    Parameters
    ----------
    builders : list of OpBuilder
        In execution order.
    layout : Layout
        Where each signal lives.
    probes : list of (key, Signal)
        Signals recorded after every step, by output key.
    dt : float
        Timestep.
    minibatch_size : int
        Batch size ``B``.
    unroll : int
        ``lax.scan`` unroll factor (the Simulator's ``unroll_simulation``).
    """

    def __init__(self, builders, layout, probes, dt, minibatch_size, unroll=1):
        self.builders = builders
        self.layout = layout
        self.probes = list(probes)
        self.dt = dt
        self.minibatch_size = minibatch_size
        self.unroll = unroll
        streams = (s for b in builders for s in b.host_streams)
        for i, stream in enumerate(streams):
            stream.key = f"stream{i}"
        # probe outputs travel to the host packed in one array: one transfer
        self.probe_slices, start = {}, 0
        for key, sig in self.probes:
            size = int(np.prod(sig.shape))
            self.probe_slices[key] = (start, start + size, tuple(sig.shape))
            start += size
        self._skip_cache = {}
        #: Number of times the program was traced (each trace compiles).
        self.trace_count = 0
        self.run = jax.jit(self._run, static_argnames=("n_steps", "fed", "training"))

    def active_streams(self, fed: tuple) -> list:
        """The host streams the program reads when the signals in ``fed`` get data."""
        skipped = self._skipped(fed)
        return [
            s
            for i, b in enumerate(self.builders)
            if i not in skipped
            for s in b.host_streams
        ]

    def _skipped(self, fed: tuple) -> set:
        """Builders whose output is replaced by ``data=`` for this run."""
        skipped = self._skip_cache.get(fed)
        if skipped is None:
            fed_set = set(fed)
            skipped = self._skip_cache[fed] = {
                i for i, b in enumerate(self.builders) if b.fed_output() in fed_set
            }
        return skipped

    def step(self, params, state, xs_t, fed=(), training=False):
        """One timestep (traced): returns the new state and the probe values.

        ``fed`` holds the output signals of Nodes given ``data=`` (in ``xs_t`` as
        ``data0``, ``data1``...); the builders producing them are skipped.
        ``training`` (static) selects the builders' training behaviour, e.g.
        spiking neurons computed as their rate approximations.
        """
        key, step_key = jax.random.split(state[RNG_KEY])
        values = dict(params)
        values.update((k, v) for k, v in state.items() if k != RNG_KEY)
        env = SignalEnv(
            self.layout,
            values,
            xs_t,
            self.minibatch_size,
            self.dt,
            step_key,
            training=training,
        )
        for i, sig in enumerate(fed):
            env.write(sig, xs_t[f"data{i}"])
        skipped = self._skipped(fed)
        for i, builder in enumerate(self.builders):
            if i not in skipped:
                builder.step(env)
        new_state = {k: env.values[k] for k in state if k != RNG_KEY}
        new_state[RNG_KEY] = key
        outputs = {k: env.read_batched(sig) for k, sig in self.probes}
        return new_state, outputs

    def _run(self, params, state, xs, n_steps, fed=(), training=False):
        self.trace_count += 1

        def body(carry, xs_t):
            return self.step(params, carry, xs_t, fed, training)

        state, outputs = jax.lax.scan(
            body, state, xs, length=n_steps, unroll=max(1, min(self.unroll, n_steps))
        )
        # (scan returns dicts with sorted keys: index by key, in probe order)
        packed = [
            outputs[key]
            .reshape((n_steps, self.minibatch_size, -1))
            .astype(self.layout.dtype)
            for key, _ in self.probes
        ]
        if not packed:
            return state, jnp.zeros(
                (n_steps, self.minibatch_size, 0), self.layout.dtype
            )
        return state, jnp.concatenate(packed, axis=-1)

    def unpack(self, packed: np.ndarray) -> dict:
        """Probe key -> ``(n_steps, B) + shape`` from `run`'s packed output."""
        lead = packed.shape[:2]
        return {
            key: packed[..., start:stop].reshape(lead + shape)
            for key, (start, stop, shape) in self.probe_slices.items()
        }


def new_rng_state(seed: int):
    """The initial device PRNG key for ``seed``."""
    return jax.random.key_data(jax.random.PRNGKey(np.uint32(seed % 2**32)))
