"""Rate neuron maths: Nengo's non-spiking ``step`` methods in `jax.numpy`.

Every function here has the signature of `nengo_jax.maths.neurons.StepFn`:
``step(dt, J, state, p, noise=None) -> (output, state)``, where ``state`` maps
Nengo's state names to arrays shaped like ``J`` and ``p`` maps parameter names
to floats or arrays that broadcast against ``J``. Inputs are never modified.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Below this, ``log(softplus(x))`` is ``x`` to double precision (its error is
#: about ``exp(x) / 2``), and ``softplus(x)`` itself heads towards underflow.
LOG_SOFTPLUS_LINEAR = -40.0


def lif_rate_output(J, p):
    """``amplitude / (tau_ref + tau_rc * log1p(1 / (J - 1)))`` if ``J > 1``, else 0."""
    j = J - 1
    positive = j > 0
    # Keep log1p away from j <= 0, so that gradients of the masked branch stay finite.
    safe_j = jnp.where(positive, j, 1)
    rate = p["amplitude"] / (p["tau_ref"] + p["tau_rc"] * jnp.log1p(1 / safe_j))
    return jnp.where(positive, rate, 0).astype(J.dtype)


def lif_rate(dt, J, state, p, noise=None):
    """Implements `nengo.LIFRate.step`."""
    return lif_rate_output(J, p), state


def soft_lif_rate_output(J, p):
    """``amplitude / (tau_ref + tau_rc * log1p(1 / s))``, ``J - 1`` smoothed to ``s``.

    ``s = sigma * softplus((J - 1) / sigma)``. For ``s < 1``, ``log1p(1 / s)`` is
    computed as ``log1p(s) - log(s)``, with ``log(s)`` from ``(J - 1) / sigma``
    where the softplus nears underflow: the rate and its gradient stay finite (and
    the rate positive) for any ``J``.
    """
    sigma = p["sigma"]
    x = (J - 1) / sigma
    s = sigma * jax.nn.softplus(x)
    above = s >= 1
    linear = x < LOG_SOFTPLUS_LINEAR
    # Each masked branch gets a harmless stand-in, so that its gradient is finite.
    log_softplus = jnp.where(
        linear, x, jnp.log(jax.nn.softplus(jnp.where(linear, 0, x)))
    )
    overshoot = jnp.where(
        above,
        jnp.log1p(1 / jnp.where(above, s, 1)),
        jnp.log1p(s) - (jnp.log(sigma) + log_softplus),
    )
    rate = p["amplitude"] / (p["tau_ref"] + p["tau_rc"] * overshoot)
    return rate.astype(J.dtype)


def soft_lif_rate(dt, J, state, p, noise=None):
    """Implements `nengo_jax.neurons.SoftLIFRate.step`."""
    return soft_lif_rate_output(J, p), state


def adapt(dt, output, adaptation, p):
    """Implements ``n += (dt / tau_n) * (inc_n * output - n)``."""
    return adaptation + (dt / p["tau_n"]) * (p["inc_n"] * output - adaptation)


def adaptive_lif_rate(dt, J, state, p, noise=None):
    """Implements `nengo.AdaptiveLIFRate.step`: LIFRate of ``J - n``, then adapt."""
    n = state["adaptation"]
    output = lif_rate_output(J - n, p)
    return output, dict(state, adaptation=adapt(dt, output, n, p))


def rectified_linear(dt, J, state, p, noise=None):
    """Implements `nengo.RectifiedLinear.step`: ``amplitude * max(J, 0)``."""
    return p["amplitude"] * jnp.maximum(J, 0), state


def leaky_relu_output(J, p):
    """``J`` for ``J > 0``, else ``negative_slope * J``."""
    return jnp.where(J > 0, J, p["negative_slope"] * J)


def leaky_relu(dt, J, state, p, noise=None):
    """Implements `nengo_jax.neurons.LeakyReLU.step`."""
    return (p["amplitude"] * leaky_relu_output(J, p)).astype(J.dtype), state


def sigmoid(dt, J, state, p, noise=None):
    """Implements `nengo.Sigmoid.step`: ``(1 / tau_ref) / (1 + exp(-J))``."""
    return (1 / p["tau_ref"]) * jax.nn.sigmoid(J), state


def tanh(dt, J, state, p, noise=None):
    """Implements `nengo.Tanh.step`: ``(1 / tau_ref) * tanh(J)``."""
    return (1 / p["tau_ref"]) * jnp.tanh(J), state


def scaled_rate(dt, J, state, p, noise=None):
    """The expected output of a rates-to-spikes type: ``amplitude * J``."""
    return p["amplitude"] * J, state
