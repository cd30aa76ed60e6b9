"""nengo-jax: a Nengo simulator on JAX, with batching and deep-learning training."""

# Keras runs our training on its JAX backend: chosen here, before our modules
# import Keras, unless the user chose one (then one message explains the conflict)
from nengo_jax.keras_backend import select_keras_backend

select_keras_backend()

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
from nengo_jax.simulator.distribution import process_share  # noqa: E402
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
    "process_share",
    "__version__",
]
