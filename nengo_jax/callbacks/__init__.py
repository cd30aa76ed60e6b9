"""Keras callbacks for nengo_jax models: NengoDL's, without TensorFlow.

`TensorBoard` writes training logs, histograms and profiles.
"""

from nengo_jax.callbacks.tensorboard import TensorBoard

__all__ = ["TensorBoard"]
