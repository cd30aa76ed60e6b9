"""Builder for `SimNeurons`: neuron types map their input ``J`` to their output.

Nengo's own types run natively with the maths in `nengo_jax.maths`. Any other
type (a user's `NeuronType` subclass, or a subclass that overrides ``step``)
runs its NumPy ``step`` on the host through a host callback, once per batch
item and timestep.
"""

from __future__ import annotations

import copy
import zlib

import jax
import numpy as np
from nengo.builder.neurons import SimNeurons
from nengo.exceptions import BuildError
from nengo.neurons import LIF, Direct
from nengo.utils.numpy import maxint

from nengo_jax.maths.neurons import MATHS, maths_for, params_of
from nengo_jax.maths.rate import soft_lif_rate
from nengo_jax.program.host import HostStream, host_call, item_seeds
from nengo_jax.program.registry import OpBuilder, register


def item_rngs(rng: np.random.RandomState, minibatch_size: int) -> list:
    """One generator per batch item: item 0 continues a copy of ``rng`` (Nengo's
    draws), the others are independent generators derived from it."""
    salt = copy.deepcopy(rng).randint(maxint)
    seeds = item_seeds(salt, minibatch_size)
    return [copy.deepcopy(rng)] + [np.random.RandomState(s) for s in seeds[1:]]


def rng_salt(rng: np.random.RandomState) -> int:
    """A deterministic 32-bit salt from ``rng``'s state (without drawing from it)."""
    return zlib.crc32(np.ascontiguousarray(rng.get_state()[1]).tobytes())


class UniformStream(HostStream):
    """Nengo's ``rng.random_sample(n)`` of each step, for each batch item.

    Parameters
    ----------
    rng : np.random.RandomState
        The generator Nengo's step draws from; only a private copy is used, so
        batch item 0 gets exactly Nengo's draws (restarted at every reset).
    n : int
        Number of neurons.
    dtype : np.dtype
        Stored dtype.
    """

    batched = True

    def __init__(self, rng, n, dtype):
        super().__init__((n,), dtype)
        self.initial = copy.deepcopy(rng)
        self.rngs = []
        self.next_step = 1

    def reset(self, minibatch_size: int) -> None:
        self.rngs = item_rngs(self.initial, minibatch_size)
        self.next_step = 1

    def compute(self, steps, dt):
        n_steps, n = len(steps), self.shape[0]
        if n_steps > 0 and steps[0] != self.next_step:
            # A failed run consumed draws it never used: replay up to ``steps[0]``.
            self.reset(len(self.rngs))
            for rng in self.rngs:
                rng.random_sample((int(steps[0]) - 1, n))
        # random_sample((k, n)) draws the same doubles as k calls of size n.
        out = np.stack([rng.random_sample((n_steps, n)) for rng in self.rngs], axis=1)
        out = out.astype(self.dtype)
        self.next_step = int(steps[-1]) + 1 if n_steps > 0 else self.next_step
        return out


@register(SimNeurons)
class SimNeuronsBuilder(OpBuilder):
    """Implements ``output[...], state[...] = neurons.step(dt, J, **state)``.

    A native type runs its maths from `nengo_jax.maths`; a type without a JAX
    version runs Nengo's NumPy ``step`` on the host. A merged operator stands
    for ensembles of one (equal) neuron type, their signals concatenated.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        if isinstance(op.neurons, Direct):
            raise BuildError(
                f"{op}: Direct neurons have no neuron dynamics to simulate; "
                "Nengo builds Direct ensembles as Python functions, not SimNeurons"
            )
        self.maths = maths_for(op.neurons)
        if self.maths is None:
            self._prepare_host()
        else:
            self._prepare_native()

    @classmethod
    def fresh_writes(cls, op):
        # native maths never read the old output; a NumPy ``step`` is given it
        native = not isinstance(op.neurons, Direct) and maths_for(op.neurons)
        return ((op.output, None),) if native else ()

    def reset_host(self, rng, minibatch_size):
        # Nengo's SimNeurons draws nothing from the simulator's rng; only the
        # neuron type's own RandomState (from the ensemble seed) is restarted.
        for stream in self.host_streams:
            stream.reset(minibatch_size)
        if self.maths is None:
            # Each batch item gets its own copy of the type's RandomStates.
            per_name = {
                name: item_rngs(extra, minibatch_size)
                for name, extra in self.op.state_extra.items()
            }
            self.extras = [
                {name: rngs[b] for name, rngs in per_name.items()}
                for b in range(minibatch_size)
            ]

    def step(self, env):
        if self.maths is None:
            self._step_host(env)
        else:
            self._step_native(env)

    # -- native ---------------------------------------------------------------------

    def _prepare_native(self):
        op, maths = self.op, self.maths
        if op.J.shape != op.output.shape or set(op.state) != set(maths.state):
            raise BuildError(
                f"{op}: expected input and output of equal shape and state "
                f"{sorted(maths.state)}; got J {op.J.shape}, output "
                f"{op.output.shape} and state {sorted(op.state)}"
            )
        # the type's parameters, as Python floats and bools
        params = params_of(op.neurons, maths)
        self.params = {name: params[name] for name in maths.params + maths.static}
        if maths.noise == "uniform":
            self.stream = UniformStream(
                op.state_extra["rng"], op.J.size, self.ctx.dtype
            )
            self.host_streams = (self.stream,)
        elif maths.noise == "key":
            self.salt = rng_salt(op.state_extra["rng"])

    def _step_native(self, env):
        op, maths, B = self.op, self.maths, env.minibatch_size
        J = env.read_batched(op.J).reshape(B, -1)
        state = {
            name: env.read_batched(op.state[name]).reshape(B, -1)
            for name in maths.state
        }
        noise = None
        if maths.noise == "uniform":
            noise = env.stream(self.stream)
        elif maths.noise == "key":
            noise = env.rng_key(self.salt)
        step = self._training_step if env.training else maths.step
        output, state = step(env.dt, J, state, self.params, noise)
        env.write(op.output, output.reshape((-1,) + op.output.shape))
        for name in maths.state:
            sig = op.state[name]
            env.write(sig, state[name].reshape((-1,) + sig.shape))

    def _training_step(self, dt, J, state, p, noise):
        """The step used in training: spiking types run as their rate version.

        With ``lif_smoothing``, LIF runs as SoftLIFRate with that ``sigma``.
        With ``surrogate_gradients``, spikes stay on the forward pass and the
        gradient is the rate version's (a straight-through estimator); the
        spiking state carries no gradient.
        """
        maths = self.maths
        if not maths.spiking:
            return self._rate_step(maths.step)(dt, J, state, p, noise)
        if maths.rate is None:
            self.ctx.warn_once(
                ("no rate", type(self.op.neurons)),
                f"{type(self.op.neurons).__name__} neurons have no rate "
                "approximation: training runs them spiking, and almost no gradient "
                "passes through them",
            )
            return maths.step(dt, J, state, p, noise)
        rate_step = maths.rate
        if self.ctx.lif_smoothing is not None and maths is MATHS[LIF]:
            rate_step = soft_lif_rate
            p = dict(p, sigma=self.ctx.lif_smoothing)
        rate, _ = self._rate_step(rate_step)(dt, J, state, p)
        if not self.ctx.surrogate_gradients:
            return rate, state
        spikes, state = maths.step(dt, J, state, p, noise)
        state = jax.tree_util.tree_map(jax.lax.stop_gradient, state)
        return rate + jax.lax.stop_gradient(spikes - rate), state

    def _rate_step(self, step):
        """``step``, with its intermediate values recomputed in the backward
        pass if the maths say so (`NeuronMaths.recompute`)."""
        if not self.maths.recompute:
            return step

        def recomputed(dt, J, state, p, noise=None):
            return jax.checkpoint(lambda J, state: step(dt, J, state, p, noise))(
                J, state
            )

        return recomputed

    # -- host fallback ----------------------------------------------------------------

    def _prepare_host(self):
        neurons = self.op.neurons
        self.names = tuple(self.op.state)
        self.ctx.warn_once(
            ("SimNeurons host fallback", type(neurons)),
            f"Neuron type {type(neurons).__name__} has no JAX implementation in "
            "nengo_jax; its NumPy `step` runs on the host, once per batch item and "
            "timestep (slow).",
        )
        self.extras = []

    def _step_host(self, env):
        op = self.op
        # NumPy code has no gradient: it passes none on (as a constant would)
        J = jax.lax.stop_gradient(env.read_batched(op.J))
        state = [
            jax.lax.stop_gradient(env.read_batched(op.state[name]))
            for name in self.names
        ]
        B = env.minibatch_size
        result = (jax.ShapeDtypeStruct((B,) + op.output.shape, J.dtype),) + tuple(
            jax.ShapeDtypeStruct(s.shape, s.dtype) for s in state
        )
        output, *state = host_call(
            self._call,
            result,
            J,
            *state,
            errors=self.ctx.host_errors,
            what=f"{op}: step of neuron type {op.neurons}",
        )
        env.write(op.output, output)
        for name, value in zip(self.names, state, strict=True):
            env.write(op.state[name], value)

    def _call(self, J, *state):
        op = self.op
        J = np.asarray(J)
        state = [np.array(s) for s in state]
        output = np.zeros(J.shape[:1] + op.output.shape, dtype=np.float64)
        for b in range(J.shape[0]):
            item = {
                name: s[b].astype(np.float64) if s.dtype.kind == "f" else s[b]
                for name, s in zip(self.names, state, strict=True)
            }
            op.neurons.step(
                self.ctx.dt,
                J[b].astype(np.float64),
                output[b],
                **item,
                **self.extras[b],
            )
            for name, s in zip(self.names, state, strict=True):
                s[b] = item[name]
        return (output.astype(J.dtype),) + tuple(state)
