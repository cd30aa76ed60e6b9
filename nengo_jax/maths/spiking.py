"""Spiking neuron maths: Nengo's spiking ``step`` methods in `jax.numpy`.

Same conventions as `nengo_jax.maths.rate`. A spike is one output of
``amplitude / dt`` for one step. Masked updates use `jnp.where` and keep the
unused branch finite, so that gradients through these functions stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nengo_jax.maths.rate import adapt, leaky_relu_output


def lif(dt, J, state, p, noise=None):
    """Implements `nengo.LIF.step`, including the spike time within a step.

    Neurons leaving their refractory period midway through the step integrate
    for the remaining part of it; a neuron that spikes stays refractory for
    ``tau_ref`` after the (interpolated) time of its spike.
    """
    tau_rc = p["tau_rc"]
    voltage, refractory_time = state["voltage"], state["refractory_time"]
    refractory_time = refractory_time - dt
    delta_t = jnp.clip(dt - refractory_time, 0, dt)
    voltage = voltage - (J - voltage) * expm1_nonpositive(-delta_t / tau_rc)
    spiked = voltage > 1
    output = jnp.where(spiked, p["amplitude"] / dt, 0).astype(J.dtype)
    # Solve v(t_spike) = 1 on the exponential approach to J; only spiked neurons
    # (for which J > v > 1) use it, the others get a harmless stand-in.
    ratio = jnp.where(spiked, (voltage - 1) / jnp.where(spiked, J - 1, 1), 0)
    # log(1 - ratio), not log1p(-ratio): XLA's CPU log1p is 3x slower than log,
    # and 1 - ratio rounds ratio by at most 2**-24, which moves the spike time
    # by at most tau_rc * 2**-24 (1.2e-9 s for tau_rc = 0.02)
    t_spike = dt + tau_rc * jnp.log(1 - ratio)
    voltage = jnp.maximum(voltage, p["min_voltage"])
    voltage = jnp.where(spiked, 0, voltage)
    refractory_time = jnp.where(spiked, p["tau_ref"] + t_spike, refractory_time)
    return output, dict(
        state,
        voltage=voltage.astype(J.dtype),
        refractory_time=refractory_time.astype(J.dtype),
    )


def expm1_nonpositive(x):
    """``exp(x) - 1`` for ``x <= 0``, as ``2 tanh(x / 2) / (1 - tanh(x / 2))``.

    As accurate as `jax.numpy.expm1` near 0 (``tanh`` keeps its relative
    accuracy there), and about twice as fast on CPUs, where XLA's ``expm1``
    was a third of a LIF step. (For large positive ``x`` it overflows early.)
    """
    half = jnp.tanh(x / 2)
    return 2 * half / (1 - half)


def adaptive_lif(dt, J, state, p, noise=None):
    """Implements `nengo.AdaptiveLIF.step`: LIF of ``J - n``, then adapts ``n``."""
    n = state["adaptation"]
    output, state = lif(dt, J - n, state, p)
    return output, dict(state, adaptation=adapt(dt, output, n, p))


def integrate_and_fire(dt, rate, voltage, amplitude):
    """Implements ``v += dt * rate; out = amplitude / dt * floor(v); v -= floor(v)``."""
    voltage = voltage + dt * rate
    n_spikes = jnp.floor(voltage)
    return (amplitude / dt) * n_spikes, voltage - n_spikes


def spiking_rectified_linear(dt, J, state, p, noise=None):
    """Implements `nengo.SpikingRectifiedLinear.step`."""
    output, voltage = integrate_and_fire(
        dt, jnp.maximum(J, 0), state["voltage"], p["amplitude"]
    )
    return output, dict(state, voltage=voltage)


def spiking_leaky_relu(dt, J, state, p, noise=None):
    """Implements `nengo_jax.neurons.SpikingLeakyReLU.step`.

    Like `integrate_and_fire`, but the whole part of the voltage is rounded
    towards zero, so that negative input emits negative spikes.
    """
    voltage = state["voltage"] + dt * leaky_relu_output(J, p)
    n_spikes = jnp.trunc(voltage)
    output = (p["amplitude"] / dt) * n_spikes
    return output.astype(J.dtype), dict(
        state, voltage=(voltage - n_spikes).astype(J.dtype)
    )


def regular_spiking(dt, J, state, p, noise=None):
    """Implements `nengo.RegularSpiking.step` (``J`` is the base type's rate)."""
    output, voltage = integrate_and_fire(dt, J, state["voltage"], p["amplitude"])
    return output, dict(state, voltage=voltage)


def izhikevich(dt, J, state, p, noise=None):
    """Implements `nengo.Izhikevich.step` (reset before the recovery update)."""
    voltage, recovery = state["voltage"], state["recovery"]
    J = jnp.maximum(-30.0, J)
    dV = (0.04 * voltage**2 + 5 * voltage + 140 - recovery + J) * 1000
    voltage = voltage + dV * dt
    spiked = voltage >= 30
    output = jnp.where(spiked, 1 / dt, 0).astype(J.dtype)
    voltage = jnp.where(spiked, p["reset_voltage"], voltage)
    dU = (p["tau_recovery"] * (p["coupling"] * voltage - recovery)) * 1000
    recovery = recovery + dU * dt
    recovery = jnp.where(spiked, recovery + p["reset_recovery"], recovery)
    return output, dict(
        state, voltage=voltage.astype(J.dtype), recovery=recovery.astype(J.dtype)
    )


def _signed(J, p):
    """``(|J|, sign(J))`` for types that may be negative, else ``(J, 1)``."""
    if p["negative"]:
        return jnp.abs(J), jnp.sign(J)
    return J, 1


def stochastic_spiking(dt, J, state, p, noise=None):
    """Implements `nengo.StochasticSpiking.step`; ``noise`` holds the uniforms.

    ``noise`` has the shape of ``J`` with values in ``[0, 1)`` (Nengo draws them
    with ``rng.random_sample``): the fractional spike rounds up where ``noise <
    frac``.
    """
    magnitude, sign = _signed(J, p)
    expected = dt * magnitude
    n_spikes = jnp.trunc(expected)  # np.modf's integer part
    n_spikes = n_spikes + (noise < expected - n_spikes)
    return ((p["amplitude"] / dt) * n_spikes * sign).astype(J.dtype), state


def poisson_spiking(dt, J, state, p, noise=None):
    """Implements `nengo.PoissonSpiking.step`; ``noise`` is a PRNG key.

    Nengo rejects negative rates for non-negative types; here they emit nothing.
    """
    magnitude, sign = _signed(J, p)
    lam = jnp.maximum(dt * magnitude, 0)
    n_spikes = jax.random.poisson(noise, lam, shape=J.shape, dtype=jnp.int32)
    return ((p["amplitude"] / dt) * n_spikes * sign).astype(J.dtype), state
