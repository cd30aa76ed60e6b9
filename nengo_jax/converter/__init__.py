"""Keras 3 models as Nengo networks: `Converter` and `LayerConverter`.

See `nengo_jax.converter.layers` and `nengo_jax.converter.spatial` for which
Keras layers convert to what.
"""

# (importing `layers` and `spatial` registers the built-in converters)
from nengo_jax.converter import layers, spatial  # noqa: F401
from nengo_jax.converter.base import LayerConverter
from nengo_jax.converter.converter import Converter
from nengo_jax.converter.graph import KerasMap

__all__ = ["Converter", "KerasMap", "LayerConverter"]
