"""The Simulator and what it returns."""

from nengo_jax.simulator.simulator import Simulator

__all__ = ["Simulator"]
