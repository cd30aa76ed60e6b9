"""Neuron types beyond Nengo's own: a smoothed LIF rate and leaky rectifiers.

These are ordinary `nengo.neurons.NeuronType` subclasses with NumPy ``step``
methods, so they run on any Nengo simulator; `nengo_jax.Simulator` runs them
natively with the maths in `nengo_jax.maths.rate` and
`nengo_jax.maths.spiking`.
"""

from __future__ import annotations

import nengo
import numpy as np
from nengo.dists import Uniform
from nengo.params import NumberParam

from nengo_jax.maths.rate import LOG_SOFTPLUS_LINEAR


class SoftLIFRate(nengo.LIFRate):
    """LIF rate neuron whose firing threshold is smoothed by a softplus.

    The rate of `nengo.LIFRate` has an infinite slope where it starts to fire,
    at ``J = 1``. Here the excess current ``j = J - 1`` first goes through a
    softplus of width ``sigma``::

        p = sigma * log(1 + exp(j / sigma))
        rate = amplitude / (tau_ref + tau_rc * log(1 + 1 / p))

    so the rate curve has a continuous derivative everywhere (it is positive,
    though small, below threshold). As ``sigma`` goes to 0 it becomes the
    `nengo.LIFRate` curve; this makes it useful for training LIF networks with
    gradient descent.

    Parameters
    ----------
    sigma : float
        Width of the smoothing around the threshold, in units of the input
        current. Must be positive (i.e. ``sigma > 0``).
    tau_rc : float
        Membrane time constant of the underlying LIF neuron, in seconds. Must be
        positive.
    tau_ref : float
        Refractory period of the underlying LIF neuron, in seconds; the rate
        never exceeds ``amplitude / tau_ref``. Must be non-negative.
    amplitude : float
        Scaling factor on the neuron output. Must be positive.
    initial_state : {str: Distribution or array_like}
        Mapping from state variables names to their desired initial value.
        These values will override the defaults set in the class's state attribute.

    Notes
    -----
    ``gain`` and ``bias`` are those that `nengo.LIFRate` computes from
    ``max_rates`` and ``intercepts``. Since smoothing raises the rate near the
    threshold, the realised curve is an approximation: neurons fire slightly at
    their intercepts and slightly above their maximum rates (by less for
    smaller ``sigma``).

    The rate is computed in log space below ``p = 1``
    (``log(1 + 1/p) = log(1 + p) - log(p)``, with ``log(p)`` taken from
    ``j / sigma`` where the softplus would underflow), so it stays finite and
    positive however negative the input is.
    """

    sigma = NumberParam("sigma", low=0, low_open=True)

    def __init__(
        self, sigma=1.0, tau_rc=0.02, tau_ref=0.002, amplitude=1, initial_state=None
    ):
        super().__init__(
            tau_rc=tau_rc,
            tau_ref=tau_ref,
            amplitude=amplitude,
            initial_state=initial_state,
        )
        self.sigma = sigma

    def rates(self, x, gain, bias):
        """Compute rates with the smoothed curve (not `nengo.LIFRate`'s)."""
        J = self.current(x, gain, bias)
        out = np.zeros_like(J)
        SoftLIFRate.step(self, dt=1.0, J=J, output=out)
        return out

    def step(self, dt, J, output):
        """Implement the smoothed LIF rate nonlinearity."""
        x = (J - 1) / self.sigma
        p = self.sigma * np.logaddexp(0, x)
        above = p >= 1
        linear = x < LOG_SOFTPLUS_LINEAR
        log_softplus = np.where(
            linear, x, np.log(np.logaddexp(0, np.where(linear, 0, x)))
        )
        log_p = np.log(self.sigma) + log_softplus
        overshoot = np.where(
            above, np.log1p(1 / np.where(above, p, 1)), np.log1p(p) - log_p
        )
        output[...] = self.amplitude / (self.tau_ref + self.tau_rc * overshoot)


class LeakyReLU(nengo.RectifiedLinear):
    """Rectified linear neuron with a slope for negative inputs.

    The output is ``amplitude * J`` for ``J > 0`` and
    ``amplitude * negative_slope * J`` otherwise.

    Parameters
    ----------
    negative_slope : float
        Slope of the response to negative inputs (0 gives
        `nengo.RectifiedLinear`). The default, 0.3, is NengoDL's (and that of
        ``keras.layers.LeakyReLU``).
    amplitude : float
        Scaling factor on the neuron output. Corresponds to the relative
        amplitude of the output of the neuron. Must be positive.
    initial_state : {str: Distribution or array_like}
        Mapping from state variables names to their desired initial value.
        These values will override the defaults set in the class's state attribute.

    Notes
    -----
    ``gain`` and ``bias`` are those of `nengo.RectifiedLinear`: they place the
    kink at the intercept and the rate ``max_rates`` at ``x = 1``.
    """

    negative = True

    negative_slope = NumberParam("negative_slope")

    def __init__(self, negative_slope=0.3, amplitude=1, initial_state=None):
        super().__init__(amplitude=amplitude, initial_state=initial_state)
        self.negative_slope = negative_slope

    def step(self, dt, J, output):
        """Implement the leaky rectification nonlinearity."""
        output[...] = self.amplitude * np.where(J > 0, J, self.negative_slope * J)


class SpikingLeakyReLU(LeakyReLU):
    """Integrate-and-fire neuron whose rate is `LeakyReLU`'s, with signed spikes.

    Each step the ``voltage`` integrates ``dt * rate``, where ``rate`` is ``J``
    for ``J > 0`` and ``negative_slope * J`` otherwise. The whole part of the
    voltage, rounded towards zero, is emitted as that many spikes of
    ``amplitude / dt`` (negative spikes where it is negative) and subtracted.
    The voltage thus stays within ``(-1, 1)``, and the spikes emitted over any
    period add up to the integral of ``amplitude * rate`` over it to within
    two spikes, for either sign of input. Rounding towards zero leaves a dead
    band: an input that changes sign before the voltage reaches -1 or 1 emits
    nothing, rather than alternating positive and negative spikes.

    With ``negative_slope=0`` this is `nengo.SpikingRectifiedLinear`.

    Parameters
    ----------
    negative_slope : float
        Slope of the response to negative inputs (0.3 by default, as in
        NengoDL).
    amplitude : float
        Scaling factor on the neuron output. Corresponds to the relative
        amplitude of the output spikes of the neuron. Must be positive.
    initial_state : {str: Distribution or array_like}
        Mapping from state variables names to their desired initial value.
        These values will override the defaults set in the class's state attribute.
    """

    state = {"voltage": Uniform(low=0, high=1)}
    spiking = True

    def rates(self, x, gain, bias):
        """Use `LeakyReLU` to determine rates."""
        J = self.current(x, gain, bias)
        out = np.zeros_like(J)
        LeakyReLU.step(self, dt=1.0, J=J, output=out)
        return out

    def step(self, dt, J, output, voltage):
        """Implement the signed integrate-and-fire nonlinearity."""
        voltage += np.where(J > 0, J, self.negative_slope * J) * dt
        n_spikes = np.trunc(voltage)
        output[...] = (self.amplitude / dt) * n_spikes
        voltage -= n_spikes
