"""Builders for Nengo's learning-rule operators (PES, BCM, Oja, Voja, RLS).

Each operator computes a weight (or encoder) change ``delta``; Nengo's generic
``Copy(delta, target, inc=True)`` applies it. Learned weights are written, so they
are state with a batch axis: every batch item learns on its own. Activities and
errors are read with a batch axis too (`SignalEnv.read_batched`), since a
learning rule may read a signal that no operator writes (a constant Node, say).
Learning rates, ``beta`` and Voja's encoder ``scale`` are Python constants on
the operators and are folded in at build time.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from nengo.builder.learning_rules import SimBCM, SimOja, SimPES, SimRLS, SimVoja
from nengo.exceptions import BuildError

from nengo_jax.program.registry import BuildContext, OpBuilder, register


def outer(a, b):
    """The outer product of each batch item: ``(B, n) x (B, m) -> (B, n, m)``."""
    return a[:, :, None] * b[:, None, :]


def check_vector(op, name: str, sig) -> None:
    """Raise a `BuildError` unless ``sig`` (operator input ``name``) is 1-D."""
    if sig.ndim != 1:
        raise BuildError(
            f"{op}: {name} must be a vector (1-D signal); got shape {sig.shape}"
        )


def check_delta(op, shape: tuple) -> None:
    """Raise a `BuildError` unless ``op.delta`` has the shape the rule computes."""
    if tuple(op.delta.shape) != tuple(shape):
        raise BuildError(
            f"{op}: delta must have shape {tuple(shape)} to match the rule's inputs; "
            f"got {op.delta.shape}"
        )


@register(SimPES)
class SimPESBuilder(OpBuilder):
    """Implements ``delta[...] = outer(-kappa * dt / n * error, pre_filtered)``.

    ``kappa`` is the learning rate and ``n`` the number of presynaptic neurons
    (the length of ``pre_filtered``). A `.MergedSimPES` computes its rules'
    outer products side by side.
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        k = getattr(op, "n_rules", 1)
        check_vector(op, "pre_filtered", op.pre_filtered)
        check_vector(op, "error", op.error)
        pre_index = getattr(op, "pre_index", None)
        error_index = getattr(op, "error_index", None)
        n = (op.pre_filtered.size if pre_index is None else pre_index.size) // k
        d = (op.error.size if error_index is None else error_index.size) // k
        check_delta(op, (k * d, n))
        self.alpha = -op.learning_rate * ctx.dt / n
        self.shape = (k, d, n)
        self.pre_view = ctx.layout.index_view(op.pre_filtered, pre_index)
        self.error_view = ctx.layout.index_view(op.error, error_index)

    def step(self, env):
        op, (k, d, n) = self.op, self.shape
        error = env.read_batched(op.error, self.error_view)
        pre = env.read_batched(op.pre_filtered, self.pre_view)
        B = error.shape[0]
        delta = outer(self.alpha * error.reshape(B * k, d), pre.reshape(B * k, n))
        env.write(op.delta, delta.reshape(B, k * d, n))


@register(SimBCM)
class SimBCMBuilder(OpBuilder):
    """Implements ``delta[...] = outer(kappa * dt * post * (post - theta), pre)``.

    ``post`` and ``pre`` are the filtered activities and ``theta`` the
    modification threshold (a slowly filtered ``post``).
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        check_vector(op, "pre_filtered", op.pre_filtered)
        check_vector(op, "post_filtered", op.post_filtered)
        check_delta(op, (op.post_filtered.shape[0], op.pre_filtered.shape[0]))

    def step(self, env):
        op = self.op
        alpha = op.learning_rate * env.dt
        pre = env.read_batched(op.pre_filtered)
        post = env.read_batched(op.post_filtered)
        theta = env.read_batched(op.theta)
        env.write(op.delta, outer(alpha * post * (post - theta), pre))


@register(SimOja)
class SimOjaBuilder(OpBuilder):
    """Implements ``delta[...] = alpha * (outer(post, pre) - beta * post**2 * W)``.

    ``alpha = kappa * dt``; ``post**2`` scales each row (postsynaptic neuron) of
    the current weights ``W``.
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        check_vector(op, "pre_filtered", op.pre_filtered)
        check_vector(op, "post_filtered", op.post_filtered)
        shape = (op.post_filtered.shape[0], op.pre_filtered.shape[0])
        check_delta(op, shape)
        if tuple(op.weights.shape) != shape:
            raise BuildError(
                f"{op}: weights must have shape {shape} (post, pre); "
                f"got {op.weights.shape}"
            )

    def step(self, env):
        op = self.op
        alpha = op.learning_rate * env.dt
        pre = env.read_batched(op.pre_filtered)
        post = env.read_batched(op.post_filtered)
        weights = env.read_batched(op.weights)
        # Same order of operations as Nengo: forgetting term, then Hebbian term.
        post_squared = alpha * post * post
        delta = -op.beta * weights * post_squared[:, :, None]
        env.write(op.delta, delta + outer(alpha * post, pre))


@register(SimVoja)
class SimVojaBuilder(OpBuilder):
    """Implements Voja's encoder change.

    ``delta[...] = kappa * dt * learning * (scale[:, None] * outer(post, x)
    - post[:, None] * scaled_encoders)``, where ``x`` is the decoded presynaptic
    value, ``post`` the filtered postsynaptic activities, ``learning`` the scalar
    learning signal and ``scale`` (gain / radius) the length of each encoder.
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        check_vector(op, "pre_decoded", op.pre_decoded)
        check_vector(op, "post_filtered", op.post_filtered)
        shape = (op.post_filtered.shape[0], op.pre_decoded.shape[0])
        check_delta(op, shape)
        scale = np.asarray(op.scale, dtype=ctx.dtype)
        if scale.shape != shape[:1]:
            raise BuildError(
                f"{op}: scale must have one value per postsynaptic neuron, shape "
                f"{shape[:1]}; got {scale.shape}"
            )
        if op.learning_signal.size != 1:
            raise BuildError(
                f"{op}: learning_signal must hold one value; got shape "
                f"{op.learning_signal.shape}"
            )
        self.scale = scale[:, None]

    def step(self, env):
        op, B = self.op, env.minibatch_size
        alpha = op.learning_rate * env.dt
        x = env.read_batched(op.pre_decoded)
        post = env.read_batched(op.post_filtered)
        encoders = env.read_batched(op.scaled_encoders)
        learning = env.read_batched(op.learning_signal).reshape((B, 1, 1))
        change = self.scale * outer(post, x) - post[:, :, None] * encoders
        env.write(op.delta, alpha * learning * change)


@register(SimRLS)
class SimRLSBuilder(OpBuilder):
    """Implements a recursive least-squares step on ``P`` (``inv_gamma``).

    With ``Pr = P.dot(r)`` and ``c = 1 / (1 + r.dot(Pr))`` (``P`` is symmetric):
    ``P[...] -= c * outer(Pr, Pr)`` and ``delta[...] = -c * outer(error, Pr)``.
    ``P`` is state, so each batch item keeps its own estimate.
    """

    def __init__(self, op, ctx: BuildContext):
        super().__init__(op, ctx)
        check_vector(op, "pre_filtered", op.pre_filtered)
        check_vector(op, "error", op.error)
        n = op.pre_filtered.shape[0]
        if tuple(op.inv_gamma.shape) != (n, n):
            raise BuildError(
                f"{op}: inv_gamma must be a square matrix of shape {(n, n)} "
                f"(one row per presynaptic neuron); got {op.inv_gamma.shape}"
            )
        P = np.asarray(op.inv_gamma.initial_value)
        if not np.array_equal(P, P.T):
            raise BuildError(f"{op}: inv_gamma (P) must be symmetric initially")
        check_delta(op, (op.error.shape[0], n))

    def step(self, env):
        op = self.op
        r = env.read_batched(op.pre_filtered)
        error = env.read_batched(op.error)
        P = env.read_batched(op.inv_gamma)
        Pr = jnp.einsum("bij,bj->bi", P, r, precision=self.ctx.precision)
        rPr1 = 1 / (1 + jnp.sum(r * Pr, axis=-1, keepdims=True))  # (B, 1)
        env.write(op.inv_gamma, P - outer(Pr, Pr * rPr1))
        env.write(op.delta, outer(error, -rPr1 * Pr))
