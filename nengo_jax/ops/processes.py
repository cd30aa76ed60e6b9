"""Builder for `nengo.builder.processes.SimProcess`: synapses, noise and signals.

A process is computed in one of three places:

- synapses (every `nengo.LinearFilter`, `nengo.Triangle`) in JAX, inside the
  time loop (`nengo_jax.ops.synapses`);
- processes without input (noise, `nengo.processes.WhiteSignal`,
  `nengo.processes.Piecewise`, user processes...) on the host before each run,
  with Nengo's own step functions (a `.ProcessStream`);
- other processes with input on the host inside the loop, through a
  host callback, with a warning since this is slow.
"""

from __future__ import annotations

import jax
import numpy as np
from nengo.builder.processes import SimProcess

from nengo_jax.maths.synapses import is_native, synapse_step
from nengo_jax.program.host import (
    ProcessStream,
    host_call,
    nengo_time,
    process_item_seeds,
    process_seed,
)
from nengo_jax.program.registry import OpBuilder, register


class StreamedProcess:
    """A process without input, computed on the host before each run."""

    def __init__(self, op, ctx):
        self.stream = ProcessStream(op.process, op.output.shape, ctx.dtype, ctx.dt)
        self.host_streams = (self.stream,)

    def reset(self, seed, minibatch_size):
        self.stream.reset(seed, minibatch_size)

    def __call__(self, env, u):
        return env.stream(self.stream)


class NativeProcess:
    """A synapse computed in JAX; it draws no random numbers."""

    host_streams = ()

    def __init__(self, op, ctx):
        self.step = synapse_step(op, ctx.dt, ctx.dtype, ctx.precision)

    def reset(self, seed, minibatch_size):
        pass

    def __call__(self, env, u):
        return self.step(env, u)


class HostProcess:
    """A process with input run by Nengo's own step function on the host.

    One step function per batch item, each with its own seed (item 0 gets
    Nengo's). The process state stays in the operator's state signals: it is
    copied into the step function's arrays before each call and back out after,
    so resets and failed runs leave it as the JAX state says.
    """

    host_streams = ()

    def __init__(self, op, ctx):
        self.op = op
        self.ctx = ctx
        self.names = sorted(op.state)
        self.steps = []
        self.arrays = []
        ctx.warn_once(
            ("SimProcess host", type(op.process)),
            f"{op.process} runs on the host: nengo_jax has no JAX implementation "
            f"of {type(op.process).__name__} with an input, so Nengo's step "
            "function is called through a host callback every timestep, which "
            "is slow",
        )

    def reset(self, seed, minibatch_size):
        op, dt = self.op, self.ctx.dt
        shape_in = op.input.shape
        self.steps, self.arrays = [], []
        for item_seed in process_item_seeds(op.process, seed, minibatch_size):
            arrays = {
                name: np.array(op.state[name].initial_value, copy=True)
                for name in self.names
            }
            self.arrays.append(arrays)
            self.steps.append(
                op.process.make_step(
                    shape_in,
                    op.output.shape,
                    dt,
                    np.random.RandomState(item_seed),
                    arrays,
                )
            )

    def __call__(self, env, u):
        op = self.op
        t = env.read_batched(op.t)
        # NumPy code has no gradient: it passes none on (as a constant would)
        u = jax.lax.stop_gradient(u)
        states = [
            jax.lax.stop_gradient(env.read_batched(op.state[name]))
            for name in self.names
        ]
        result = (
            jax.ShapeDtypeStruct(u.shape[:1] + op.output.shape, self.ctx.dtype),
        ) + tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in states)
        y, *states = host_call(
            self._call,
            result,
            t,
            u,
            *states,
            errors=self.ctx.host_errors,
            what=f"{op}: step of {op.process}",
        )
        for name, value in zip(self.names, states, strict=True):
            env.write(op.state[name], value)
        return y

    def _call(self, t, u, *states):
        op, dt = self.op, self.ctx.dt
        t, u = np.asarray(t), np.asarray(u, dtype=np.float64)
        outputs = []
        new_states = [np.empty(s.shape, s.dtype) for s in states]
        for b, step_f in enumerate(self.steps):
            arrays = self.arrays[b]
            for name, value in zip(self.names, states, strict=True):
                arrays[name][...] = value[b]
            y = step_f(nengo_time(t[b], dt), u[b].copy())
            outputs.append(np.broadcast_to(np.asarray(y, np.float64), op.output.shape))
            for new, name in zip(new_states, self.names, strict=True):
                new[b] = arrays[name]
        return (np.stack(outputs).astype(self.ctx.dtype),) + tuple(new_states)


@register(SimProcess)
class SimProcessBuilder(OpBuilder):
    """Implements ``output[...] = step(t, input)`` (or ``+=`` in mode "inc").

    ``step`` is the process's Nengo step function: synapses are computed in JAX,
    processes without input are streamed from the host, and others call their
    step function on the host each timestep.

    At every reset, the operator draws its seed from the simulator's generator
    exactly as `SimProcess.make_step` does (synapses too), so that seeds stay
    aligned with `nengo.Simulator`.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        self.runner = runner_for(op, ctx)
        self.host_streams = self.runner.host_streams
        # gathered synapses read and write by index (see MergedSimProcess)
        self.input_view = ctx.layout.index_view(
            op.input, getattr(op, "input_index", None)
        )
        self.output_view = ctx.layout.index_view(
            op.output, getattr(op, "output_index", None)
        )

    def fed_output(self):
        op = self.op
        return op.output if op.input is None and op.mode == "set" else None

    @classmethod
    def fresh_writes(cls, op):
        # a process's step returns its output from its state (in ``updates``)
        if op.mode != "set":
            return ()
        return ((op.output, getattr(op, "output_index", None)),)

    def reset_host(self, rng, minibatch_size):
        op = self.op
        # a merged synapse draws once per synapse it stands for, as Nengo's
        # SimProcess operators each draw (see MergedSimProcess)
        seeds = [
            process_seed(op.process, rng) for _ in range(getattr(op, "n_processes", 1))
        ]
        self.runner.reset(seeds[0], minibatch_size)

    def step(self, env):
        op = self.op
        u = None if op.input is None else env.read_batched(op.input, self.input_view)
        y = self.runner(env, u)
        env.write(op.output, y, inc=op.mode == "inc", view=self.output_view)


def runner_for(op, ctx):
    """How ``op``'s process is computed (see the module docstring)."""
    if op.input is None:
        return StreamedProcess(op, ctx)
    if is_native(op.process):
        return NativeProcess(op, ctx)
    return HostProcess(op, ctx)
