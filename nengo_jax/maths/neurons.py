"""Pure `jax.numpy` maths for Nengo's neuron types.

`MATHS` maps each Nengo neuron type to a `NeuronMaths`: the names of its state
and parameters, its ``step`` (exactly Nengo's update equations), and ``rate``,
a drop-in replacement step with the same state that outputs the type's
non-spiking approximation. Training swaps ``step`` for ``rate`` where the
spiking maths have no useful gradient.

A step function has the signature
``step(dt, J, state, p, noise=None) -> (output, state)``:

- ``J``: input (current, or rate for rates-to-spikes types), any shape.
- ``state``: dict of state name -> array shaped like ``J`` (Nengo's names).
- ``p``: dict of parameter name -> float, bool or array broadcasting to ``J``.
- ``noise``: per-step randomness: uniforms shaped like ``J`` (``"uniform"``), a
  PRNG key (``"key"``), or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nengo

from nengo_jax.maths import rate, spiking
from nengo_jax.neurons import LeakyReLU, SoftLIFRate, SpikingLeakyReLU

StepFn = Callable  # (dt, J, state, p, noise=None) -> (output, state)


@dataclass(frozen=True)
class NeuronMaths:
    """How to simulate one neuron type in JAX.

    Parameters
    ----------
    step : StepFn
        Nengo's ``step`` of the type.
    rate : StepFn or None
        The non-spiking approximation with the same state (``step`` itself for
        rate types); None where there is no closed form (Izhikevich).
    state : tuple of str
        Names of the state variables ``step`` reads and returns.
    params : tuple of str
        Numeric attributes of the neuron type that ``step`` reads from ``p``.
    static : tuple of str
        Non-numeric attributes (e.g. ``negative``) that ``step`` branches on in
        Python; groups of neurons computed together must agree on them.
    noise : str or None
        The randomness ``step`` needs: ``"uniform"``, ``"key"`` or None.
    recompute : bool
        Whether training recomputes ``rate``'s intermediate values in the
        backward pass (`jax.checkpoint`) instead of storing them for every
        step: for LIF's rate, which would store three arrays and a mask per
        neuron and step where its input alone suffices.
    """

    step: StepFn
    rate: StepFn | None
    state: tuple = ()
    params: tuple = ()
    static: tuple = ()
    noise: str | None = None
    recompute: bool = False

    @property
    def spiking(self) -> bool:
        """Whether ``step`` differs from its rate approximation."""
        return self.step is not self.rate


_LIF = ("tau_rc", "tau_ref", "amplitude")
_ADAPT = ("tau_n", "inc_n")
_LEAKY = ("negative_slope", "amplitude")
_R2S = {"params": ("amplitude",), "static": ("negative",)}

#: The maths of each neuron type (Nengo's and `nengo_jax.neurons`), by exact
#: type: `maths_for` looks a type up before its bases (SoftLIFRate before LIFRate).
MATHS = {
    nengo.LIFRate: NeuronMaths(
        rate.lif_rate, rate.lif_rate, params=_LIF, recompute=True
    ),
    nengo.LIF: NeuronMaths(
        spiking.lif,
        rate.lif_rate,
        state=("voltage", "refractory_time"),
        params=_LIF + ("min_voltage",),
        recompute=True,
    ),
    nengo.AdaptiveLIFRate: NeuronMaths(
        rate.adaptive_lif_rate,
        rate.adaptive_lif_rate,
        state=("adaptation",),
        params=_LIF + _ADAPT,
        recompute=True,
    ),
    nengo.AdaptiveLIF: NeuronMaths(
        spiking.adaptive_lif,
        rate.adaptive_lif_rate,
        state=("voltage", "refractory_time", "adaptation"),
        params=_LIF + _ADAPT + ("min_voltage",),
        recompute=True,
    ),
    nengo.RectifiedLinear: NeuronMaths(
        rate.rectified_linear, rate.rectified_linear, params=("amplitude",)
    ),
    nengo.SpikingRectifiedLinear: NeuronMaths(
        spiking.spiking_rectified_linear,
        rate.rectified_linear,
        state=("voltage",),
        params=("amplitude",),
    ),
    nengo.Sigmoid: NeuronMaths(rate.sigmoid, rate.sigmoid, params=("tau_ref",)),
    nengo.Tanh: NeuronMaths(rate.tanh, rate.tanh, params=("tau_ref",)),
    nengo.Izhikevich: NeuronMaths(
        spiking.izhikevich,
        None,
        state=("voltage", "recovery"),
        params=("tau_recovery", "coupling", "reset_voltage", "reset_recovery"),
    ),
    nengo.RegularSpiking: NeuronMaths(
        spiking.regular_spiking, rate.scaled_rate, state=("voltage",), **_R2S
    ),
    nengo.StochasticSpiking: NeuronMaths(
        spiking.stochastic_spiking, rate.scaled_rate, noise="uniform", **_R2S
    ),
    nengo.PoissonSpiking: NeuronMaths(
        spiking.poisson_spiking, rate.scaled_rate, noise="key", **_R2S
    ),
    SoftLIFRate: NeuronMaths(
        rate.soft_lif_rate,
        rate.soft_lif_rate,
        params=("sigma",) + _LIF,
        recompute=True,
    ),
    LeakyReLU: NeuronMaths(rate.leaky_relu, rate.leaky_relu, params=_LEAKY),
    SpikingLeakyReLU: NeuronMaths(
        spiking.spiking_leaky_relu, rate.leaky_relu, state=("voltage",), params=_LEAKY
    ),
}


def maths_for(neuron_type) -> NeuronMaths | None:
    """The `NeuronMaths` of ``neuron_type``, or None if it has no JAX version.

    A subclass of a known type uses that type's maths only if it keeps its
    ``step`` and its state variables: a subclass that changes either may compute
    something else, so it has no JAX version.
    """
    cls = type(neuron_type)
    for base in cls.__mro__:
        maths = MATHS.get(base)
        if maths is not None:
            same = cls.step is base.step and set(cls.state) == set(maths.state)
            return maths if same else None
    return None


def params_of(neuron_type, maths: NeuronMaths) -> dict:
    """The parameters ``p`` of ``neuron_type`` as Python floats and bools."""
    p = {name: float(getattr(neuron_type, name)) for name in maths.params}
    p.update((name, bool(getattr(neuron_type, name))) for name in maths.static)
    return p
