"""Builders for bookkeeping operators: TimeUpdate, Reset, Copy, ElementwiseInc."""

import jax.numpy as jnp
import numpy as np
from nengo.builder.operator import Copy, ElementwiseInc, Reset, TimeUpdate
from nengo.builder.probe import SimProbe
from nengo.exceptions import BuildError

from nengo_jax.program.registry import OpBuilder, register


@register(TimeUpdate)
class TimeUpdateBuilder(OpBuilder):
    """Implements ``step += 1; time = step * dt``."""

    def step(self, env):
        op = self.op
        step = env.read(op.step) + 1
        env.write(op.step, step)
        env.write(op.time, step.astype(self.ctx.dtype) * env.dt)


@register(Reset)
class ResetBuilder(OpBuilder):
    """Implements ``dst[...] = value``."""

    @classmethod
    def fresh_writes(cls, op):
        return ((op.dst, None),)

    def step(self, env):
        env.write(self.op.dst, self.op.value)


@register(Copy)
class CopyBuilder(OpBuilder):
    """Implements ``dst[dst_slice] = src[src_slice]`` (or ``+=`` with ``inc``)."""

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        layout = ctx.layout
        self.src_view = (
            None if op.src_slice is None else layout.indexed_view(op.src, op.src_slice)
        )
        self.dst_view = None
        if op.dst_slice is not None:
            dst = self.dst_view = layout.indexed_view(op.dst, op.dst_slice)
            index = dst.index
            if index is None:
                index = np.arange(dst.start, dst.stop)
            if not op.inc and len(np.unique(index)) < index.size:
                raise BuildError(
                    f"{op}: Cannot have repeated indices in ``dst_slice`` when "
                    "copy is not an increment"
                )

    @classmethod
    def fresh_writes(cls, op):
        return () if op.inc else ((op.dst, op.dst_slice),)

    def step(self, env):
        op = self.op
        value = env.read(op.src, self.src_view)
        env.write(op.dst, value, inc=op.inc, view=self.dst_view)


def padded(value, shape, batched):
    """``value`` reshaped to ``shape`` padded with leading 1s to two dimensions."""
    shape = (1,) * (2 - len(shape)) + tuple(shape)
    return value.reshape(((value.shape[0],) if batched else (1,)) + shape)


@register(ElementwiseInc)
class ElementwiseIncBuilder(OpBuilder):
    """Implements ``Y[...] += A * X`` with NumPy broadcasting."""

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        a, x, y = (
            padded(np.zeros(s.shape), s.shape, False)[0] for s in (op.A, op.X, op.Y)
        )
        for da, dx, dy in zip(a.shape, x.shape, y.shape, strict=False):
            if not (da in [1, dy] and dx in [1, dy] and max(da, dx) == dy):
                raise BuildError(
                    "Incompatible shapes in ElementwiseInc: "
                    f"Trying to do {y.shape} += {a.shape} * {x.shape}"
                )

    def step(self, env):
        op = self.op
        a = padded(env.read(op.A), op.A.shape, env.is_batched(op.A))
        x = padded(env.read(op.X), op.X.shape, env.is_batched(op.X))
        inc = a * x
        env.inc(op.Y, jnp.reshape(inc, (inc.shape[0],) + op.Y.shape))


@register(SimProbe)
class SimProbeBuilder(OpBuilder):
    """Marks a probed signal; the program records probes after every step."""

    def step(self, env):
        pass
