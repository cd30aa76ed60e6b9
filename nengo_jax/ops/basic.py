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
        for op in self.ops:
            step = env.read(op.step) + 1
            env.write(op.step, step)
            env.write(op.time, step.astype(self.ctx.dtype) * env.dt)


@register(Reset)
class ResetBuilder(OpBuilder):
    """Implements ``dst[...] = value``."""

    def step(self, env):
        for op in self.ops:
            env.write(op.dst, op.value)


@register(Copy)
class CopyBuilder(OpBuilder):
    """Implements ``dst[dst_slice] = src[src_slice]`` (or ``+=`` with ``inc``)."""

    def __init__(self, ops, ctx):
        super().__init__(ops, ctx)
        layout = ctx.layout
        self.views = []
        for op in self.ops:
            src = (
                None
                if op.src_slice is None
                else layout.indexed_view(op.src, op.src_slice)
            )
            dst = None
            if op.dst_slice is not None:
                dst = layout.indexed_view(op.dst, op.dst_slice)
                index = (
                    dst.index
                    if dst.index is not None
                    else np.arange(dst.start, dst.stop)
                )
                if not op.inc and len(np.unique(index)) < index.size:
                    raise BuildError(
                        f"{op}: Cannot have repeated indices in ``dst_slice`` when "
                        "copy is not an increment"
                    )
            self.views.append((src, dst))

    def step(self, env):
        for op, (src, dst) in zip(self.ops, self.views, strict=False):
            env.write(op.dst, env.read(op.src, src), inc=op.inc, view=dst)


def padded(value, shape, batched):
    """``value`` reshaped to ``shape`` padded with leading 1s to two dimensions."""
    shape = (1,) * (2 - len(shape)) + tuple(shape)
    return value.reshape(((value.shape[0],) if batched else (1,)) + shape)


@register(ElementwiseInc)
class ElementwiseIncBuilder(OpBuilder):
    """Implements ``Y[...] += A * X`` with NumPy broadcasting."""

    def __init__(self, ops, ctx):
        super().__init__(ops, ctx)
        for op in self.ops:
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
        for op in self.ops:
            a = padded(env.read(op.A), op.A.shape, env.is_batched(op.A))
            x = padded(env.read(op.X), op.X.shape, env.is_batched(op.X))
            inc = a * x
            env.inc(op.Y, jnp.reshape(inc, (inc.shape[0],) + op.Y.shape))


@register(SimProbe)
class SimProbeBuilder(OpBuilder):
    """Marks a probed signal; the program records probes after every step."""

    def step(self, env):
        pass
