"""Turning a built Nengo model into a JAX program."""
