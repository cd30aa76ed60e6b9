"""Weight-initialisation distributions, as Nengo distributions.

`VarianceScaling` (with its special cases `Glorot` and `He`) and
`TruncatedNormal` can be used wherever Nengo takes a `nengo.dists.Distribution`:
connection transforms (``nengo.Connection(a, b, transform=Glorot())`` or
``nengo.Dense(shape, init=He())``), ensemble encoders, and so on.

Each behaves as NengoDL 3.6's distribution of the same name (measured on it):
``sample(n, d)`` returns an ``(n, d)`` array (``(n,)`` when ``d`` is None),
treating ``d`` as the fan-in and ``n`` as the fan-out, which is the
``(size_out, size_in)`` shape of a Nengo transform; ``d=None`` counts as a
fan-in of 1. Samples are drawn from the given ``rng`` in the same order as
NengoDL draws them, so a seeded network starts from the same weights.
"""

from __future__ import annotations

import numpy as np
from nengo.dists import Distribution
from nengo.params import EnumParam, NumberParam
from nengo.utils.numpy import is_number

__all__ = ["Glorot", "He", "TruncatedNormal", "VarianceScaling"]


class TruncatedNormal(Distribution):
    """A normal distribution whose samples lie within ``limit`` of the mean.

    Samples further than ``limit`` from ``mean`` are drawn again (until none
    are), so the result follows the normal distribution restricted to
    ``[mean - limit, mean + limit]``; its standard deviation is therefore less
    than ``stddev`` (about 0.88 times it with the default limit).

    Parameters
    ----------
    mean : float
        Mean of the normal distribution.
    stddev : float
        Standard deviation of the (untruncated) normal distribution.
    limit : float or None
        Largest distance of a sample from ``mean``; None means
        ``2 * stddev``. Must be positive.
    """

    mean = NumberParam("mean", readonly=True)
    stddev = NumberParam("stddev", low=0, readonly=True)
    limit = NumberParam("limit", low=0, low_open=True, readonly=True)

    def __init__(self, mean=0, stddev=1, limit=None):
        super().__init__()
        self.mean = mean
        self.stddev = stddev
        self.limit = 2 * stddev if limit is None else limit

    def sample(self, n, d=None, rng=np.random):
        """Draws ``n`` samples (of ``d`` dimensions, if given) from ``rng``."""
        shape = self._sample_shape(n, d)
        samples = rng.normal(loc=self.mean, scale=self.stddev, size=shape)
        outside = np.abs(samples - self.mean) > self.limit
        while np.any(outside):
            samples[outside] = rng.normal(
                loc=self.mean, scale=self.stddev, size=np.count_nonzero(outside)
            )
            outside = np.abs(samples - self.mean) > self.limit
        return samples


class VarianceScaling(Distribution):
    """Weights whose variance is ``scale`` divided by the layer's fan.

    The analogue of Keras's ``VarianceScaling`` initializer for Nengo.
    ``sample(n, d)`` treats ``d`` as the number of inputs (fan-in) and ``n`` as
    the number of outputs (fan-out), as in a Nengo transform of shape
    ``(size_out, size_in)``; ``d=None`` is a fan-in of 1.

    Parameters
    ----------
    scale : float
        Multiplier on the variance (non-negative).
    mode : "fan_in" or "fan_out" or "fan_avg"
        Which fan divides ``scale``: the inputs, the outputs, or their mean.
    distribution : "uniform" or "normal"
        ``"uniform"`` samples uniformly from ``[-limit, limit)`` with
        ``limit = sqrt(3 * scale / fan)``, so their variance is
        ``scale / fan``. ``"normal"`` samples from a `TruncatedNormal` with
        mean 0 and ``stddev = sqrt(scale / fan)``, cut at two standard
        deviations; as in NengoDL (and unlike Keras 3) the standard deviation
        is not corrected for the truncation, so the variance of the samples
        is about ``0.774 * scale / fan``.
    """

    scale = NumberParam("scale", low=0, readonly=True)
    mode = EnumParam("mode", values=("fan_in", "fan_out", "fan_avg"), readonly=True)
    distribution = EnumParam(
        "distribution", values=("uniform", "normal"), readonly=True
    )

    def __init__(self, scale=1, mode="fan_avg", distribution="uniform"):
        super().__init__()
        self.scale = scale
        self.mode = mode
        self.distribution = distribution

    def _fan(self, n, d):
        """The fan that divides ``scale`` for a sample of shape ``(n, d)``."""
        fan_in = 1 if d is None else d
        if self.mode == "fan_in":
            return fan_in
        if self.mode == "fan_out":
            return n
        return (fan_in + n) / 2

    def sample(self, n, d=None, rng=np.random):
        """Draws ``n`` samples (of ``d`` dimensions, if given) from ``rng``."""
        shape = self._sample_shape(n, d)
        fan = self._fan(n, d)
        if fan <= 0:
            # An empty sample (where NengoDL divides by zero).
            return np.zeros(shape)
        variance = self.scale / fan
        if self.distribution == "uniform":
            limit = np.sqrt(3 * variance)
            return rng.uniform(low=-limit, high=limit, size=shape)
        if variance == 0:
            # NengoDL rejects the zero limit of a zero standard deviation here.
            return np.zeros(shape)
        stddev = np.sqrt(variance)
        return TruncatedNormal(mean=0, stddev=stddev).sample(n, d, rng=rng)


class Glorot(VarianceScaling):
    """Glorot (or Xavier) initialisation: ``scale / fan_avg`` variance.

    ``VarianceScaling(scale, mode="fan_avg", distribution=distribution)``; see
    Glorot and Bengio (2010), "Understanding the difficulty of training deep
    feedforward neural networks", AISTATS.

    Parameters
    ----------
    scale : float
        Multiplier on the variance (non-negative).
    distribution : "uniform" or "normal"
        Uniform or truncated normal samples, as in `VarianceScaling`.
    """

    def __init__(self, scale=1, distribution="uniform"):
        super().__init__(scale=scale, mode="fan_avg", distribution=distribution)


class He(VarianceScaling):
    """He initialisation: ``scale**2 / fan_in`` variance.

    ``VarianceScaling(scale**2, mode="fan_in", distribution=distribution)``,
    so ``scale`` is a gain on the standard deviation: ``sqrt(2)`` gives the
    variance ``2 / fan_in`` suited to rectified linear units. As in NengoDL the
    default is ``scale=1``, and the ``scale`` attribute holds the variance
    multiplier ``scale**2`` (the ``repr`` shows the ``scale`` given). See He et
    al. (2015), "Delving deep into rectifiers: Surpassing human-level
    performance on ImageNet classification", arXiv:1502.01852.

    Parameters
    ----------
    scale : float
        Gain on the standard deviation.
    distribution : "uniform" or "normal"
        Uniform or truncated normal samples, as in `VarianceScaling`.
    """

    def __init__(self, scale=1, distribution="normal"):
        # A non-number reaches the ``scale`` parameter, which rejects it.
        variance = scale**2 if is_number(scale) else scale
        super().__init__(scale=variance, mode="fan_in", distribution=distribution)
        self._gain = scale

    def __repr__(self):
        args = [] if self._gain == 1 else [f"scale={self._gain!r}"]
        if self.distribution != "normal":
            args.append(f"distribution={self.distribution!r}")
        return f"{type(self).__name__}({', '.join(args)})"
