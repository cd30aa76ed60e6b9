"""The simulation program: builders in order, run as one jitted ``lax.scan``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from nengo import Node
from nengo.builder.operator import SimPyFunc
from nengo.exceptions import ValidationError

from nengo_jax.program.host import HostErrors
from nengo_jax.program.layout import Layout
from nengo_jax.program.registry import BuildContext, builder_for
from nengo_jax.program.signals import SignalEnv

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
    last_only : set of str
        Keys of the probes that keep only their last step (``keep_history``).
    use_loop : bool
        Whether the time loop is a ``lax.scan`` (False: a Python loop, unrolled
        into the program).
    compiler_options : dict, optional
        XLA options for compiling `run` (see `compiler_options`).
    host_errors : HostErrors, optional
        Where the builders' host callbacks record what they raise.
    """

    def __init__(
        self,
        builders,
        layout,
        probes,
        dt,
        minibatch_size,
        unroll=1,
        last_only=(),
        use_loop=True,
        compiler_options=None,
        host_errors=None,
    ):
        self.builders = builders
        self.host_errors = HostErrors() if host_errors is None else host_errors
        self.layout = layout
        self.probes = list(probes)
        self.dt = dt
        self.minibatch_size = minibatch_size
        self.unroll = unroll
        self.use_loop = use_loop
        streams = (s for b in builders for s in b.host_streams)
        for i, stream in enumerate(streams):
            stream.key = f"stream{i}"
        # probe outputs travel to the host packed in two arrays (every step, and
        # the last step only): one transfer each
        self.history = [(k, sig) for k, sig in self.probes if k not in last_only]
        self.last_only = [(k, sig) for k, sig in self.probes if k in last_only]
        self.probe_slices = {}
        for part, probes in enumerate((self.history, self.last_only)):
            start = 0
            for key, sig in probes:
                size = int(np.prod(sig.shape))
                self.probe_slices[key] = (part, start, start + size, tuple(sig.shape))
                start += size
        #: transient key -> its within-step placeholder's shape and dtype
        self._transient = {
            key: ((minibatch_size,) + layout.shape(key), layout.initial(key).dtype)
            for key in layout.transient_keys
        }
        self._skip_cache = {}
        #: Number of times the program was traced (each trace compiles).
        self.trace_count = 0
        jit = functools.partial(
            jax.jit, self._run, static_argnames=("n_steps", "fed", "training")
        )
        self.run = jit(compiler_options=compiler_options)
        #: `run` for calls inside another jitted function (e.g. Keras's training
        #: step), which compiles it with its own options
        self.run_nested = jit()
        self.run_chunk = jax.jit(
            self._run_chunk,
            static_argnames=("length", "fed", "training"),
            compiler_options=compiler_options,
        )
        self.history_size = sum(int(np.prod(sig.shape)) for _, sig in self.history)

    def release(self):
        """Free the compiled programs."""
        for jitted in (self.run, self.run_nested, self.run_chunk):
            jitted.clear_cache()

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
        values = dict(params)
        values.update((k, v) for k, v in state.items() if k != RNG_KEY)
        # (every element is set before it is read: SignalEnv checks)
        for key, (shape, dtype) in self._transient.items():
            values[key] = jnp.zeros(shape, dtype)
        env = SignalEnv(
            self.layout,
            values,
            xs_t,
            self.minibatch_size,
            self.dt,
            state[RNG_KEY],
            training=training,
            unset=self._transient,
        )
        for i, sig in enumerate(fed):
            env.write(sig, xs_t[f"data{i}"])
        skipped = self._skipped(fed)
        for i, builder in enumerate(self.builders):
            if i not in skipped:
                builder.step(env)
        env.flush()
        new_state = {k: env.values[k] for k in state if k != RNG_KEY}
        new_state[RNG_KEY] = env.next_key
        outputs = {k: env.read_batched(sig) for k, sig in self.probes}
        return new_state, outputs

    def _run(self, params, state, xs, n_steps, fed=(), training=False):
        self.trace_count += 1
        last = {
            k: jnp.zeros((self.minibatch_size,) + sig.shape, self.layout.dtype)
            for k, sig in self.last_only
        }

        def body(carry, xs_t):
            state, last = carry
            state, outputs = self.step(params, state, xs_t, fed, training)
            last = {k: outputs.pop(k) for k in last}
            return (state, last), outputs

        if self.use_loop:
            (state, last), outputs = jax.lax.scan(
                body,
                (state, last),
                xs,
                length=n_steps,
                unroll=max(1, min(self.unroll, n_steps)),
            )
        else:  # every step written out in the program, no loop
            steps = []
            for t in range(n_steps):
                xs_t = jax.tree_util.tree_map(lambda x, t=t: x[t], xs)
                (state, last), outputs = body((state, last), xs_t)
                steps.append(outputs)
            outputs = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *steps)
        # (scan returns dicts with sorted keys: index by key, in probe order)
        return state, (
            self._pack([outputs[k] for k, _ in self.history], n_steps),
            self._pack([last[k] for k, _ in self.last_only], 1),
        )

    def _run_chunk(self, params, state, xs, count, length, fed=(), training=False):
        """`_run` for the first ``count`` (traced) of the ``length`` steps in ``xs``.

        One compile serves every ``count`` up to ``length`` (see `chunk_length`).
        The every-step outputs have ``length`` rows, of which the first ``count``
        are this run's.
        """
        self.trace_count += 1
        B, dtype = self.minibatch_size, self.layout.dtype
        last = {k: jnp.zeros((B,) + sig.shape, dtype) for k, sig in self.last_only}
        history = jnp.zeros((length, B, self.history_size), dtype)

        def one(t, carry):
            state, last, history = carry
            xs_t = jax.tree_util.tree_map(
                lambda x: jax.lax.dynamic_index_in_dim(x, t, keepdims=False), xs
            )
            state, outputs = self.step(params, state, xs_t, fed, training)
            last = {k: outputs.pop(k) for k in last}
            row = self._pack([outputs[k] for k, _ in self.history], 1)
            history = jax.lax.dynamic_update_slice_in_dim(history, row, t, 0)
            return state, last, history

        carry = (state, last, history)
        unroll = max(1, min(self.unroll, length))
        done = 0
        if unroll > 1:  # blocks of ``unroll`` steps, then the rest one by one

            def block(i, carry):
                for j in range(unroll):
                    carry = one(i * unroll + j, carry)
                return carry

            carry = jax.lax.fori_loop(0, count // unroll, block, carry)
            done = count // unroll * unroll
        carry = jax.lax.fori_loop(done, count, one, carry)
        state, last, history = carry
        return state, (history, self._pack([last[k] for k, _ in self.last_only], 1))

    def _pack(self, values, n_steps):
        B, dtype = self.minibatch_size, self.layout.dtype
        if not values:
            return jnp.zeros((n_steps, B, 0), dtype)
        return jnp.concatenate(
            [v.reshape((n_steps, B, -1)).astype(dtype) for v in values], axis=-1
        )

    def unpack(self, outputs, flat=False) -> dict:
        """Probe key -> ``(n_steps, B) + shape`` from `run`'s packed outputs.

        Probes that keep only their last step have ``n_steps == 1``. With
        ``flat``, the probe shape is flattened to its size. Works on NumPy and
        JAX arrays alike.
        """
        unpacked = {}
        for key, (part, start, stop, shape) in self.probe_slices.items():
            value = outputs[part]
            lead = value.shape[:2]
            unpacked[key] = value[..., start:stop].reshape(
                lead + ((stop - start,) if flat else shape)
            )
        return unpacked


def compile_program(model, plan, settings, *, minibatch_size, unroll=1, device=None):
    """The program of a planned model: its layout, one builder per operator.

    The entry function of this stage (builders must be registered first: see
    `nengo_jax.ops`).

    Parameters
    ----------
    model : nengo.builder.Model
        The built model.
    plan : nengo_jax.optimizer.OperatorPlan
        Its operators, merged and in step order (`plan_operators`).
    settings : nengo_jax.config.Settings
        The resolved settings (dtype, precision, probes that keep only their
        last step, ...).
    minibatch_size, unroll, device
        As the Simulator's.

    Returns
    -------
    program : Program
    probe_keys : dict
        Probe -> the key of its data in the program's outputs.
    """
    probes = [(probe, model.sig[probe]["in"]) for probe in model.probes]
    layout = Layout(
        model,
        plan.operators,
        [model.step, model.time] + [sig for _, sig in probes] + list(plan.kept),
        dtype=settings.dtype,
        fresh=[w for op in plan.operators for w in builder_for(op).fresh_writes(op)],
    )
    ctx = BuildContext(
        model=model,
        layout=layout,
        dt=model.dt,
        minibatch_size=minibatch_size,
        dtype=layout.dtype,
        precision=settings.matmul_precision,
        lif_smoothing=settings.lif_smoothing,
        surrogate_gradients=settings.surrogate_gradients,
        learning_phase=settings.learning_phase,
        python_in_loop=_node_of_input(model, plan.operators),
        node_of_signal={
            id(sig): obj
            for obj, sigs in model.sig.items()
            if isinstance(obj, Node)
            for sig in sigs.values()
        },
    )
    builders = [builder_for(op)(op, ctx) for op in plan.operators]
    probe_keys = {probe: f"probe{i}" for i, (probe, _) in enumerate(probes)}
    program = Program(
        builders,
        layout,
        [(probe_keys[p], sig) for p, sig in probes],
        dt=model.dt,
        minibatch_size=minibatch_size,
        unroll=unroll,
        last_only={probe_keys[p] for p in settings.last_only if p in probe_keys},
        use_loop=settings.use_loop,
        compiler_options=compiler_options(device),
        host_errors=ctx.host_errors,
    )
    return program, probe_keys


def _node_of_input(model, operators) -> bool:
    """Whether a Node function of its input (which may have side effects, unlike
    the functions of Direct-mode ensembles) is among ``operators``."""
    network = model.toplevel
    if network is None:
        return False
    functions = {
        id(node.output)
        for node in network.all_nodes
        if callable(node.output) and node.size_in > 0
    }
    return any(
        isinstance(op, SimPyFunc) and op.x is not None and id(op.fn) in functions
        for op in operators
    )


def chunk_length(count: int) -> int:
    """The compiled length of a chunk running ``count`` steps: the next power of
    two, so that any number of steps up to ``N`` needs at most ``log2(N) + 1``
    compiles, and a chunk's buffers are less than twice what it uses."""
    return 1 << (int(count) - 1).bit_length()


#: XLA options for the simulation program on CPUs: XLA's own loops for batched
#: matrix products, instead of the YNNPACK library. A step's products are small
#: (one block per ensemble) and each library call costs several microseconds;
#: XLA's loops fuse with their neighbours. Measured in one process, A/B, 2-core
#: CPU, per 1000 steps: cconv LIF at minibatch 1 138 -> 106 ms, cconv ReLU
#: 82 -> 74 ms, pes LIF 60 -> 52 ms; no change at minibatch 32 or on chain and
#: integrator, nor for a 2000 x 2000 dense product.
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def find_device(device):
    """The JAX device a Simulator's ``device`` names (``"/cpu:0"``, ``"gpu"``...;
    None: JAX's default)."""
    if device is None:
        return None
    platform, _, index = str(device).lower().partition(":")
    platform = {"/cpu": "cpu", "/gpu": "gpu"}.get(platform, platform)
    try:
        devices = jax.devices(platform)
    except RuntimeError as e:
        raise ValidationError(
            f"No JAX device of kind {platform!r}: {e}", attr="device"
        ) from e
    return devices[int(index) if index else 0]


def compiler_options(device=None) -> dict:
    """The XLA options of the simulation program on ``device`` (None: JAX's default).

    `CPU_OPTIONS` on CPUs, if this jaxlib knows them (they are experimental);
    none elsewhere.
    """
    device = jax.devices()[0] if device is None else device
    if device.platform != "cpu" or not _known(tuple(CPU_OPTIONS.items())):
        return {}
    return dict(CPU_OPTIONS)


@functools.cache
def _known(options: tuple) -> bool:
    """Whether XLA accepts ``options`` (compiles a one-element sum with them)."""
    try:
        jax.jit(jnp.sum, compiler_options=dict(options))(np.zeros(1, np.float32))
    except jax.errors.JaxRuntimeError:
        return False
    return True


def enable_x64():
    """JAX's 64-bit mode as a context manager.

    ``jax.enable_x64`` from JAX 0.8 (JAX 0.10 removed the experimental one);
    ``jax.experimental.enable_x64`` before (JAX 0.7 and older, on Python 3.10).
    """
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as experimental_enable_x64

    return experimental_enable_x64(True)


def new_rng_state(seed: int):
    """The initial device PRNG key for ``seed``."""
    return jax.random.key_data(jax.random.PRNGKey(np.uint32(seed % 2**32)))
