"""Operator builders; importing this package registers all of them."""

from nengo_jax.ops import (  # noqa: F401
    basic,
    conv,
    dot,
    learning_rules,
    neurons,
    processes,
    pyfunc,
    tensor_node,
)
