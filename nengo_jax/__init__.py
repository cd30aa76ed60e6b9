"""nengo-jax: a Nengo simulator on JAX, with batching and deep-learning training."""

from nengo_jax.config import configure_settings
from nengo_jax.simulator import Simulator
from nengo_jax.version import __version__

__all__ = ["Simulator", "configure_settings", "__version__"]
