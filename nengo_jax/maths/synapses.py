"""Synapses computed in JAX: every `nengo.LinearFilter` form and `nengo.Triangle`.

Each class here prepares one synapse of one `.SimProcess` operator (in NumPy,
with Nengo's own discretisation) and computes its timestep in JAX, following
exactly the arithmetic of Nengo's step classes. The filter state lives in the
operator's state signals, batched like any other written signal.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from nengo.synapses import LinearFilter, Triangle


def is_native(process) -> bool:
    """Whether ``process`` is a synapse whose step is computed in JAX.

    Subclasses that replace Nengo's ``make_step`` run their own code on the host
    instead, since their step may compute something else.
    """
    if isinstance(process, LinearFilter):
        return type(process).make_step is LinearFilter.make_step
    if isinstance(process, Triangle):
        return type(process).make_step is Triangle.make_step
    return False


def synapse_step(op, dt: float, dtype, precision: str):
    """The JAX step of the synapse of ``op`` (see `is_native`)."""
    if isinstance(op.process, LinearFilter):
        return LinearFilterStep(op, dt, dtype, precision)
    return TriangleStep(op, dt, dtype)


class LinearFilterStep:
    """Implements one of `nengo.LinearFilter`'s step classes.

    Nengo picks the step class from the discretised system ``(A, B, C, D)``;
    this picks the same one with Nengo's own ``check`` methods and computes:

    - ``NoX``: ``y = D u`` (no state);
    - ``OneX``: ``X = a X + b u; y = X[0]`` with ``a = A``, ``b = C B``;
    - ``NoD``: ``X = A X + B u; y = C X`` (the input is not delayed);
    - ``General``: ``y = C X + D u; X = A X + B u`` (output before update).

    Parameters
    ----------
    op : SimProcess
        An operator whose process is a `nengo.LinearFilter` with input.
    dt : float
        The simulator timestep (for discretisation).
    dtype : np.dtype
        The floating point dtype of the simulation.
    precision : str
        Matrix-product precision of the state update.
    """

    def __init__(self, op, dt, dtype, precision="highest"):
        self.op = op
        self.precision = precision
        A, B, C, D = op.process._get_ss(dt)
        X = op.state.get("X")
        x_value = np.zeros((0,) if X is None else X.shape)
        for kind in (
            LinearFilter.NoX,
            LinearFilter.OneX,
            LinearFilter.NoD,
            LinearFilter.General,
        ):
            if kind.check(A, B, C, D, x_value):
                self.kind = kind.__name__
                break
        else:
            raise ValueError(
                f"{op.process}: no LinearFilter step fits the system with "
                f"A{A.shape}, B{B.shape}, C{C.shape}, D{D.shape} and state "
                f"{x_value.shape}"
            )
        self.X = X
        cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
        self.A, self.B, self.C = cast(A), cast(B).reshape(-1), cast(C).reshape(-1)
        self.D = cast(D).reshape(())
        if self.kind == "OneX":
            self.a = cast(A.item())
            self.b = cast(C.item() * B.item())

    def __call__(self, env, u):
        """The output for input ``u`` (batched), updating the state in ``env``."""
        if self.kind == "NoX":
            return self.D * u
        X = env.read_batched(self.X)
        if self.kind == "OneX":
            X = self.a * X + self.b * u[:, None]
            env.write(self.X, X)
            return X[:, 0]
        if self.kind == "General":
            y = self._output(X) + self.D * u
            env.write(self.X, self._update(X, u))
            return y
        X = self._update(X, u)
        env.write(self.X, X)
        return self._output(X)

    def _update(self, X, u):
        """``A X + B u`` with ``X`` of shape ``(batch, n) + u.shape[1:]``."""
        AX = jnp.einsum("ij,bj...->bi...", self.A, X, precision=self.precision)
        B = self.B.reshape(self.B.shape + (1,) * (u.ndim - 1))
        return AX + B * u[:, None]

    def _output(self, X):
        return jnp.einsum("j,bj...->b...", self.C, X, precision=self.precision)


class TriangleStep:
    """Implements `nengo.Triangle`'s finite impulse response step.

    As Nengo computes it: ``Y += n0 u; Y -= sum(X); Xi = (Xi + 1) % n_taps;
    X[Xi] = ndiff u; y = Y``, with the ring buffer ``X`` and its position ``Xi``
    in the operator's state signals.

    Parameters
    ----------
    op : SimProcess
        An operator whose process is a `nengo.Triangle` with input.
    dt : float
        The simulator timestep.
    dtype : np.dtype
        The floating point dtype of the simulation.
    """

    def __init__(self, op, dt, dtype):
        self.op = op
        state = op.state
        self.Y, self.X, self.Xi = state["Y"], state["X"], state["Xi"]
        self.n_taps, n0, ndiff = op.process._get_coefficients(dt)
        self.n0, self.ndiff = np.asarray(n0, dtype), np.asarray(ndiff, dtype)

    def __call__(self, env, u):
        """The output for input ``u`` (batched), updating the state in ``env``."""
        Y = env.read_batched(self.Y)
        X = env.read_batched(self.X)
        Xi = env.read_batched(self.Xi)
        Y = Y + self.n0 * u
        Y = Y - X.sum(axis=1)
        Xi = (Xi + 1) % self.n_taps
        # Xi counts whole taps, so rounding recovers the integer position exactly.
        position = jnp.round(Xi[:, 0]).astype(jnp.int32)
        hit = jnp.arange(self.n_taps)[None, :] == position[:, None]
        hit = hit.reshape(hit.shape + (1,) * (u.ndim - 1))
        X = jnp.where(hit, (self.ndiff * u)[:, None], X)
        env.write(self.Y, Y)
        env.write(self.X, X)
        env.write(self.Xi, Xi)
        return Y
