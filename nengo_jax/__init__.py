"""nengo-jax: a Nengo simulator on JAX, with batching and deep-learning training."""

import os

# Keras runs our training on its JAX backend; respect a user's explicit choice
# (the Simulator then explains the conflict when Keras is used).
os.environ.setdefault("KERAS_BACKEND", "jax")

from nengo_jax import callbacks, dists, losses, obj  # noqa: E402
from nengo_jax.config import configure_settings  # noqa: E402
from nengo_jax.converter import Converter  # noqa: E402
from nengo_jax.layer import Layer  # noqa: E402
from nengo_jax.neurons import (  # noqa: E402
    LeakyReLU,
    SoftLIFRate,
    SpikingLeakyReLU,
)
from nengo_jax.simulator import Simulator  # noqa: E402
from nengo_jax.tensor_node import TensorNode  # noqa: E402
from nengo_jax.version import __version__  # noqa: E402

__all__ = [
    "Converter",
    "Layer",
    "LeakyReLU",
    "Simulator",
    "SoftLIFRate",
    "SpikingLeakyReLU",
    "TensorNode",
    "callbacks",
    "configure_settings",
    "dists",
    "losses",
    "obj",
    "__version__",
]
