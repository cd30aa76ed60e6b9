"""Keras losses for Nengo models (``loss(y_true, y_pred)``), in `jax.numpy`."""

from __future__ import annotations

import jax.numpy as jnp
import keras
from nengo.exceptions import ValidationError


def nan_mse(y_true, y_pred):
    """Mean squared error, where NaN targets count as no error.

    NaN targets mark "no target here" (e.g. steps where the output does not
    matter): those elements add zero error, and nothing to the gradient, but
    still count in the mean, which is over all the elements (as in NengoDL).
    """
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    valid = ~jnp.isnan(y_true)
    # The inner where keeps NaN out of the gradient of the outer one.
    error = jnp.where(valid, y_pred - jnp.where(valid, y_true, 0), 0)
    return jnp.mean(error**2)


class Regularize(keras.losses.Loss):
    """A penalty on the size of an output, whatever its targets.

    Put it on a probe of weights or firing rates to keep them small (add the
    probe to ``compile``'s ``loss`` with a weight; the targets are ignored, so
    ``y_true`` may be None or, e.g., zeros).

    The output ``y_pred`` is ``(batch, time, ...)``: the loss is the norm of
    each batch item at each time step, over its other axes flattened (or over
    one axis, see ``axis``), averaged over all of them by the Keras reduction.
    This is NengoDL's ``Regularize``.

    Parameters
    ----------
    order : int or float or "euclidean" or "fro"
        Order of the norm: a positive number (``numpy.inf`` for the largest
        magnitude); ``"euclidean"`` and ``"fro"`` are 2.
    axis : int or None
        Axis of the norm among those after the batch and time axes, i.e. the
        norm is over axis ``axis + 2`` of ``y_pred`` (so, as in NengoDL,
        ``axis=-1`` is the time axis, not the last one); the mean is then over
        all the other axes. None takes the norm over all the axes after time.
    """

    def __init__(self, order=2, axis=None, name="regularize", **kwargs):
        super().__init__(name=name, **kwargs)
        if order not in ("euclidean", "fro") and (
            isinstance(order, bool) or not isinstance(order, int | float) or order <= 0
        ):
            raise ValidationError(
                f"Must be a positive number, 'euclidean' or 'fro'; got {order!r}",
                attr="order",
                obj=self,
            )
        self.order = 2 if order in ("euclidean", "fro") else order
        self.axis = axis

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The targets are unused: None stands for "no targets" (Keras would
        # convert it to an array); a scalar zero takes its place.
        y_true = 0.0 if y_true is None else y_true
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = jnp.asarray(y_pred)
        if y_pred.ndim < 3:
            raise ValueError(
                f"Regularize needs outputs shaped (batch, time, ...); got shape "
                f"{y_pred.shape}"
            )
        if self.axis is None:
            y_pred = jnp.reshape(y_pred, y_pred.shape[:2] + (-1,))
            axis = 2
        else:
            axis = self.axis + 2
        # abs' gradient at zero is 0 (not JAX's 1), as in NengoDL.
        magnitude = jnp.where(y_pred != 0, jnp.abs(y_pred), 0)
        if self.order == jnp.inf:
            return jnp.max(magnitude, axis=axis)
        if self.order == 1:
            return jnp.sum(magnitude, axis=axis)
        # Zero magnitudes and zero sums are kept away from the powers, so that
        # the gradient is zero there rather than NaN (NengoDL's 2-norm of an
        # all-zero item has a NaN gradient).
        nonzero = magnitude > 0
        powers = jnp.where(nonzero, jnp.where(nonzero, magnitude, 1) ** self.order, 0)
        total = jnp.sum(powers, axis=axis)
        positive = total > 0
        return jnp.where(positive, jnp.where(positive, total, 1) ** (1 / self.order), 0)

    def get_config(self):
        return {**super().get_config(), "order": self.order, "axis": self.axis}
