"""Rate neuron maths: Nengo's non-spiking ``step`` methods in `jax.numpy`.

Every function here has the signature of `nengo_jax.neurons.StepFn`:
``step(dt, J, state, p, noise=None) -> (output, state)``, where ``state`` maps
Nengo's state names to arrays shaped like ``J`` and ``p`` maps parameter names
to floats or arrays that broadcast against ``J``. Inputs are never modified.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def sigmoid(dt, J, state, p, noise=None):
    """Implements `nengo.Sigmoid.step`: ``(1 / tau_ref) / (1 + exp(-J))``."""
    return (1 / p["tau_ref"]) * jax.nn.sigmoid(J), state


def tanh(dt, J, state, p, noise=None):
    """Implements `nengo.Tanh.step`: ``(1 / tau_ref) * tanh(J)``."""
    return (1 / p["tau_ref"]) * jnp.tanh(J), state


def scaled_rate(dt, J, state, p, noise=None):
    """The expected output of a rates-to-spikes type: ``amplitude * J``."""
    return p["amplitude"] * J, state
