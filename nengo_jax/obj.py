"""Objectives for `Simulator.train` and `Simulator.loss`: ``f(outputs, targets)``."""

from __future__ import annotations

from nengo_jax.losses import nan_mse


def mse(outputs, targets):
    """Mean squared error between outputs and targets; NaN targets count as no error."""
    return nan_mse(targets, outputs)
