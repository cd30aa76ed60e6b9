"""Builders for matrix products: DotInc, SparseDotInc, BsrDotInc."""

import jax
import jax.numpy as jnp
import numpy as np
from nengo.builder.operator import BsrDotInc, DotInc, SparseDotInc

from nengo_jax.program.layout import sparse_coords
from nengo_jax.program.registry import OpBuilder, register


def batched_dot(a, x, a_batched, x_batched, precision):
    """``a.dot(x)`` for each batch item, without copying an unbatched ``a``."""
    dot = lambda a, x: jnp.dot(a, x, precision=precision)  # noqa: E731
    if not (a_batched or x_batched):
        return dot(a, x)
    return jax.vmap(dot, in_axes=(0 if a_batched else None, 0 if x_batched else None))(
        a, x
    )


@register(DotInc)
class DotIncBuilder(OpBuilder):
    """Implements ``Y[...] += A.dot(X)`` (reshaped to ``Y.shape`` if needed)."""

    def step(self, env):
        op = self.op
        a_batched, x_batched = env.is_batched(op.A), env.is_batched(op.X)
        inc = batched_dot(
            env.read(op.A), env.read(op.X), a_batched, x_batched, self.ctx.precision
        )
        lead = inc.shape[:1] if (a_batched or x_batched) else ()
        env.inc(op.Y, inc.reshape(lead + op.Y.shape))


@register(SparseDotInc)
class SparseDotIncBuilder(OpBuilder):
    """Implements ``Y[...] += A.dot(X)`` for a sparse ``A`` (scipy or Nengo format).

    ``A`` is stored as its nonzero values; the row and column of each value are
    static indices. A matrix with at most `DENSE_RATIO` times as many elements
    as nonzeros is multiplied as a dense matrix (its values placed in zeros
    each step): a small dot is faster than a gather and a scatter, and it gives
    the same result, to the last bit, as the same transform given dense.
    """

    #: the largest ``elements / nonzeros`` for which ``A`` is multiplied dense
    DENSE_RATIO = 4

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        _, self.rows, self.cols = sparse_coords(op.A.initial_value)
        self.n_rows = op.A.shape[0]
        self.dense = op.A.shape[0] * op.A.shape[1] <= self.DENSE_RATIO * len(self.rows)

    def step(self, env):
        op = self.op
        data = env.read(op.A)
        if self.dense:
            A = jnp.zeros(op.A.shape, data.dtype).at[self.rows, self.cols].add(data)
            x = env.read_batched(op.X)
            inc = batched_dot(A, x, False, True, self.ctx.precision)
            env.inc(op.Y, inc.reshape((-1,) + op.Y.shape))
            return
        x = env.read_batched(op.X).reshape((env.minibatch_size, -1))
        products = data * x[:, self.cols]
        y = jnp.zeros((env.minibatch_size, self.n_rows), products.dtype)
        env.inc(op.Y, y.at[:, self.rows].add(products).reshape((-1,) + op.Y.shape))


@register(BsrDotInc)
class BsrDotIncBuilder(OpBuilder):
    """Implements ``Y[...] += A.dot(X)`` for a block-sparse (BSR) ``A``.

    ``A`` holds the blocks, shape ``(n_blocks, block_rows, block_cols)``;
    ``indices`` and ``indptr`` give their positions, as in `scipy.sparse.bsr_matrix`.
    """

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        n_rows = len(op.indptr) - 1
        self.rows = np.repeat(np.arange(n_rows), np.diff(op.indptr))
        indices = np.asarray(op.indices)
        # Nengo's optimizer makes block-diagonal matrices (one block per block
        # row, in order): then neither the gather nor the scatter is needed.
        in_order = np.array_equal(indices, np.arange(len(indices)))
        self.indices = None if in_order else indices
        self.diagonal = np.array_equal(self.rows, np.arange(n_rows))

    def step(self, env):
        op, B = self.op, env.minibatch_size
        blocks = env.read(op.A)
        n_rows, (block_rows, block_cols) = len(op.indptr) - 1, op.A.shape[1:]
        x = env.read_batched(op.X).reshape((B, -1, block_cols))
        if self.indices is not None:
            # (B, n_blocks, block_cols)
            x = x.at[:, self.indices].get(mode="promise_in_bounds")
        if block_cols == 1:
            # a product of elements: written as one, XLA computes it in
            # place of the consumer, where a dot would add transposes
            y = blocks[..., 0] * x
        else:
            spec = "bkij,bkj->bki" if env.is_batched(op.A) else "kij,bkj->bki"
            y = jnp.einsum(spec, blocks, x, precision=self.ctx.precision)
        if not self.diagonal:
            y = jnp.zeros((B, n_rows, block_rows), y.dtype).at[:, self.rows].add(y)
        env.inc(op.Y, y.reshape((B,) + op.Y.shape))
