"""Graph optimisation settings for ``configure_settings``.

As in NengoDL::

    from nengo_jax import graph_optimizer

    with nengo.Network() as net:
        nengo_jax.configure_settings(
            planner=graph_optimizer.noop_planner,
            simplifications=[
                graph_optimizer.remove_identity_muls,
                graph_optimizer.remove_zero_incs,
            ],
        )

``planner``
    None (the default) merges operators with Nengo's optimizer, as
    `nengo.Simulator` does; `noop_planner` merges nothing. NengoDL's
    ``greedy_planner``, ``tree_planner`` and ``transitive_planner`` are not
    provided yet (issue 3); any other planner raises `~nengo.exceptions.ConfigError`
    when the Simulator is built.
``sorter``
    None (the default) keeps the signal layout of Nengo's optimizer;
    `noop_order_signals` does the same (there is no sorter yet). NengoDL's
    ``order_signals`` is not provided yet (issue 3).
``simplifications``
    A list of functions ``(operators, model) -> operators``, applied in order,
    repeatedly, before merging, until nothing changes. None (the default)
    applies none for now, because a simplified graph may order operators unlike
    `nengo.Simulator`, so seeded processes would draw other seeds than Nengo's
    (issue 3); ask for ``default_simplifications`` explicitly. See
    `nengo_jax.optimizer.simplify` for exactly what each one may change.

``sim.optimizer_report`` says what the optimizer did (operators before and
after, groups per builder), and the Simulator logs it at INFO level.
"""

from nengo_jax.optimizer.planners import noop_planner
from nengo_jax.optimizer.simplify import (
    default_simplifications,
    remove_constant_copies,
    remove_identity_muls,
    remove_reset_incs,
    remove_unmodified_resets,
    remove_zero_incs,
)
from nengo_jax.optimizer.sorting import noop_order_signals

__all__ = [
    "default_simplifications",
    "noop_order_signals",
    "noop_planner",
    "remove_constant_copies",
    "remove_identity_muls",
    "remove_reset_incs",
    "remove_unmodified_resets",
    "remove_zero_incs",
]
