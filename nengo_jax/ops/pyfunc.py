"""Builder for Python functions (Node functions, Direct-mode ensembles)."""

import jax
import numpy as np
from nengo.builder.operator import SimPyFunc

from nengo_jax.program.host import (
    FunctionStream,
    host_call,
    nengo_time,
    node_outputs,
)
from nengo_jax.program.registry import OpBuilder, register


@register(SimPyFunc)
class SimPyFuncBuilder(OpBuilder):
    """Implements ``output[...] = fn(t, x)`` by calling ``fn`` on the host.

    A function of time alone is evaluated for all of a run's steps before the
    loop starts (a host stream); a function of ``x`` is called from inside the
    loop through a host callback, once per batch item.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        self.label = op.tag or str(op)
        shape = None if op.output is None else op.output.shape
        if op.x is None:
            self.stream = FunctionStream(
                op.fn, op.t is not None, shape, ctx.dtype, self.label
            )
            self.host_streams = (self.stream,)

    def fed_output(self):
        return self.op.output if self.op.x is None else None

    def step(self, env):
        op = self.op
        if op.x is None:
            if op.output is not None:
                env.write(op.output, env.stream(self.stream))
            return
        t = env.read_batched(op.t) if op.t is not None else None
        # a Python function has no gradient: it passes none on, as in NengoDL
        x = jax.lax.stop_gradient(env.read_batched(op.x))
        shape = (
            (env.minibatch_size,) + op.output.shape if op.output is not None else None
        )
        result = None if shape is None else jax.ShapeDtypeStruct(shape, x.dtype)
        y = host_call(
            self._call, result, t, x, errors=self.ctx.host_errors, what=self.label
        )
        if op.output is not None:
            env.write(op.output, y)

    def _call(self, t, x):
        op = self.op
        t, x = (None if t is None else np.asarray(t)), np.asarray(x, dtype=np.float64)
        calls = [
            ((nengo_time(t[b], self.ctx.dt),) if t is not None else ()) + (x[b].copy(),)
            for b in range(x.shape[0])
        ]
        shape = None if op.output is None else op.output.shape
        out = node_outputs(op.fn, calls, shape, self.label)
        return None if out is None else out.astype(self.ctx.dtype)
