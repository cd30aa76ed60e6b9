"""One builder class per operator family, found along the operator's class hierarchy."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from nengo.exceptions import BuildError

from nengo_jax.program.host import HostErrors

_BUILDERS: dict = {}


@dataclass
class BuildContext:
    """What a builder may know at build time (everything here is static)."""

    model: object  # nengo.builder.Model
    layout: object  # nengo_jax.program.layout.Layout
    dt: float
    minibatch_size: int
    dtype: np.dtype
    #: Matrix-product precision ("highest" keeps float32 exact on GPUs, no TF32).
    precision: str = "highest"
    #: Train LIF neurons through SoftLIFRate with this ``sigma`` (None: LIFRate).
    lif_smoothing: float | None = None
    #: Keep spikes on the forward pass in training (rate gradients backward).
    surrogate_gradients: bool = False
    #: ``configure_settings(learning_phase=...)``: None, or the training flag
    #: of every call.
    learning_phase: bool | None = None
    #: A Node function of its input runs in the loop: Node functions of time
    #: run there too, in step order (they may share Python state with it).
    python_in_loop: bool = False
    #: The Node of each Node signal, by id (to name a Node in messages).
    node_of_signal: dict = field(default_factory=dict)
    #: Where host callbacks record what they raise (see `host_call`).
    host_errors: HostErrors = field(default_factory=HostErrors)
    warned: set = field(default_factory=set)

    def warn_once(self, key, message, category=UserWarning):
        """Warn about ``key`` (e.g. a neuron type) once per build."""
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, category, stacklevel=3)


class OpBuilder:
    """Builds one operator into a traced step.

    The operator may be a merged one standing for many (see
    `nengo_jax.optimizer`); a builder computes exactly the operator it is given.

    ``__init__`` is the *prepare* phase: it runs once, in NumPy, and computes
    everything static (indices, constants). ``step`` runs inside ``jit`` and
    reads and writes signals through a `.SignalEnv`.

    Parameters
    ----------
    op : Operator
        The operator this builder computes.
    ctx : BuildContext
        Static facts about the build.
    """

    #: Host streams this builder reads each step (see `nengo_jax.program.host`).
    host_streams: tuple = ()

    def __init__(self, op, ctx: BuildContext):
        self.op = op
        self.ctx = ctx

    def step(self, env) -> None:
        """Compute one timestep of ``self.op`` (traced)."""
        raise NotImplementedError

    def reset_host(self, rng: np.random.RandomState, minibatch_size: int) -> None:
        """Reset host-side state; ``rng`` is the simulator's seeded generator.

        Builders must draw from ``rng`` exactly as Nengo's operators draw in their
        ``make_step``, so that seeded processes match ``nengo.Simulator``.
        """

    def fed_output(self):
        """The signal this builder produces if it can be replaced by ``data=``."""
        return None

    @classmethod
    def fresh_writes(cls, op) -> tuple:
        """What ``op`` sets afresh every step, never reading its old value.

        ``(signal, index)`` pairs: ``index`` selects elements along the
        signal's first axis (None: all of it), as `Layout.indexed_view`'s.
        Nengo runs every reader of a set signal after its setter, so a base
        whose written elements are all set afresh needs no value from the step
        before: the layout keeps it within a step only (`Layout.transient_keys`),
        and no step writes it to the state carried between steps. The default
        claims nothing; a builder whose operator reads what it sets (a neuron
        type's state, ``step += 1``) must claim nothing for those signals.
        """
        return ()


def register(op_type):
    """Register the decorated `.OpBuilder` for ``op_type`` (and subclasses)."""

    def decorator(builder):
        _BUILDERS[op_type] = builder
        return builder

    return decorator


def builder_for(op) -> type:
    """The builder class registered for ``op``'s type or its nearest base."""
    for cls in type(op).__mro__:
        if cls in _BUILDERS:
            return _BUILDERS[cls]
    raise BuildError(
        f"nengo_jax has no builder for operator {op} of type {type(op).__name__}; "
        "register one with nengo_jax.program.registry.register"
    )
