"""Builder for Python functions (Node functions, Direct-mode ensembles)."""

import functools

import jax
import numpy as np
from nengo.builder.operator import SimPyFunc

from nengo_jax.program.host import (
    FunctionStream,
    node_outputs,
)
from nengo_jax.program.registry import OpBuilder, register


@register(SimPyFunc)
class SimPyFuncBuilder(OpBuilder):
    """Implements ``output[...] = fn(t, x)`` by calling ``fn`` on the host.

    A function of ``x`` is called from inside the loop through a host callback,
    once per batch item. A function of time alone is evaluated for all of a
    run's steps before the loop starts (a host stream), unless the network also
    has a function of ``x`` (``ctx.python_in_loop``): Python functions may share
    state (a sensor reading what a motor Node wrote), so then they all run in
    the loop, in step order, as in `nengo.Simulator`.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        self.label = _owner(op, ctx) or op.tag or str(op)
        self.in_loop = op.x is not None or ctx.python_in_loop
        if not self.in_loop:
            shape = None if op.output is None else op.output.shape
            self.stream = FunctionStream(
                op.fn, op.t is not None, shape, ctx.dtype, self.label
            )
            self.host_streams = (self.stream,)

    def fed_output(self):
        return self.op.output if self.op.x is None else None

    @classmethod
    def fresh_writes(cls, op):
        return () if op.output is None else ((op.output, None),)

    def step(self, env):
        op = self.op
        if not self.in_loop:
            if op.output is not None:
                env.write(op.output, env.stream(self.stream))
            return
        args = []
        if op.t is not None:
            args.append(env.read_batched(op.t))
        if op.x is not None:
            # a Python function has no gradient: it passes none on, as in NengoDL
            args.append(jax.lax.stop_gradient(env.read_batched(op.x)))
        B = env.minibatch_size
        result = (
            None
            if op.output is None
            else jax.ShapeDtypeStruct((B,) + op.output.shape, self.ctx.dtype)
        )
        y = env.host_call(
            functools.partial(self._call, B),
            result,
            *args,
            errors=self.ctx.host_errors,
            what=self.label,
        )
        if op.output is not None:
            env.write(op.output, y)

    def _call(self, B, *args):
        op = self.op
        t = np.asarray(args[0]) if op.t is not None else None
        x = np.asarray(args[-1], dtype=np.float64) if op.x is not None else None
        if t is not None:
            # Functions called in the loop get the time as simulated (float32
            # by default), as their inputs are: Nengo promises that an input
            # computed from t (a Node returning t) equals t. (Functions of time
            # computed before the loop get Nengo's float64 step * dt.)
            t = [float(value) for value in t]
        calls = [
            ((t[b],) if t is not None else ())
            + ((x[b].copy(),) if x is not None else ())
            for b in range(B)
        ]
        shape = None if op.output is None else op.output.shape
        out = node_outputs(op.fn, calls, shape, self.label)
        return None if out is None else out.astype(self.ctx.dtype)


def _owner(op, ctx) -> str | None:
    """The Node whose function ``op`` calls (as users name it), if any."""
    for sig in (op.output, op.x):
        node = ctx.node_of_signal.get(id(sig)) if sig is not None else None
        if node is not None:
            return str(node)
    return None
