"""Keras losses for Nengo models (``loss(y_true, y_pred)``), in `jax.numpy`."""

from __future__ import annotations

import jax.numpy as jnp
import keras
from nengo.exceptions import ValidationError


def nan_mse(y_true, y_pred):
    """Mean squared error over the targets that are not NaN.

    NaN targets mark "no target here" (e.g. steps where the output does not
    matter); they add nothing to the loss or its gradient.
    """
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    valid = ~jnp.isnan(y_true)
    error = jnp.where(valid, y_pred - jnp.where(valid, y_true, 0), 0)
    return jnp.sum(error**2) / jnp.maximum(jnp.sum(valid), 1)


class Regularize(keras.losses.Loss):
    """A penalty on the size of an output, whatever its targets.

    Put it on a probe of weights or firing rates to keep them small (add the
    probe to ``compile``'s ``loss`` with a weight, and give any targets, e.g.
    zeros).

    Parameters
    ----------
    order : int or float or "fro"
        Order of the norm (``"fro"`` is 2 over the reduced axes).
    axis : int or None
        Axis of the norm; None takes it over everything but the batch axis.
    """

    def __init__(self, order=2, axis=None, name="regularize", **kwargs):
        super().__init__(name=name, **kwargs)
        if order != "fro" and (
            isinstance(order, bool) or not isinstance(order, int | float) or order <= 0
        ):
            raise ValidationError(
                f"Must be a positive number or 'fro'; got {order!r}",
                attr="order",
                obj=self,
            )
        self.order = 2 if order == "fro" else order
        self.axis = axis

    def call(self, y_true, y_pred):
        y_pred = jnp.asarray(y_pred)
        axis = tuple(range(1, y_pred.ndim)) if self.axis is None else self.axis
        if self.order == jnp.inf:
            return jnp.max(jnp.abs(y_pred), axis=axis)
        return jnp.sum(jnp.abs(y_pred) ** self.order, axis=axis) ** (1 / self.order)

    def get_config(self):
        return {**super().get_config(), "order": self.order, "axis": self.axis}
