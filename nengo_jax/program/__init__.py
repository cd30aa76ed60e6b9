"""Stage 2: lay out a planned model's signals in base arrays and compile its
step program (`Layout`, `SignalEnv`, the operator builders' registry, host
streams and callbacks, `Program`)."""
