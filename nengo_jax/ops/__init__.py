"""Operator builders; importing this package registers all of them."""

from nengo_jax.ops import basic, dot, pyfunc  # noqa: F401
