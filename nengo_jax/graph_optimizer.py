"""Graph optimisation settings for ``configure_settings``.

As in NengoDL:

>>> from nengo_jax import graph_optimizer
>>> with nengo.Network() as net:
...     nengo_jax.configure_settings(
...         planner=graph_optimizer.noop_planner,
...         simplifications=[
...             graph_optimizer.remove_identity_muls,
...             graph_optimizer.remove_zero_incs,
...         ],
...     )

``planner``
    A function ``(operators) -> list of groups``: which operators run together
    as one merged operator, and in what order. `tree_planner` (the default,
    ``planner=None``), `greedy_planner`, `transitive_planner` and
    `noop_planner` (merge nothing); ``functools.partial(tree_planner,
    max_depth=4)`` searches deeper. See `nengo_jax.optimizer.planners`.
``sorter``
    A function ``(plan) -> (signals, plan)`` that orders each group's
    operators before it is merged, and so lays out its signals:
    `order_signals` (the default, ``sorter=None``: in memory order, so views
    join into contiguous slices) or `noop_order_signals` (the planner's
    order). See `nengo_jax.optimizer.sorting`.
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

from nengo_jax.optimizer.planners import (
    greedy_planner,
    noop_planner,
    transitive_planner,
    tree_planner,
)
from nengo_jax.optimizer.simplify import (
    default_simplifications,
    remove_constant_copies,
    remove_identity_muls,
    remove_reset_incs,
    remove_unmodified_resets,
    remove_zero_incs,
)
from nengo_jax.optimizer.sorting import noop_order_signals, order_signals

__all__ = [
    "default_simplifications",
    "greedy_planner",
    "noop_order_signals",
    "noop_planner",
    "order_signals",
    "remove_constant_copies",
    "remove_identity_muls",
    "remove_reset_incs",
    "remove_unmodified_resets",
    "remove_zero_incs",
    "transitive_planner",
    "tree_planner",
]
