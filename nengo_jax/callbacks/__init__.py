"""Keras callbacks for nengo_jax models: NengoDL's, without TensorFlow.

`TensorBoard` writes training logs, histograms and profiles; `NengoSummaries`
writes histograms of Nengo objects' parameters; `IsolateState` keeps a
Simulator's state from changing in a Keras call.
"""

from nengo_jax.callbacks.isolate import IsolateState
from nengo_jax.callbacks.summaries import NengoSummaries
from nengo_jax.callbacks.tensorboard import TensorBoard

__all__ = ["IsolateState", "NengoSummaries", "TensorBoard"]
