"""Planners: which operators run together as one merged group.

nengo_jax merges operators with Nengo's own optimizer
(`nengo.builder.optimizer.optimize`, as `nengo.Simulator` does), which is the
default (``planner=None``). `noop_planner` turns merging off. NengoDL's
``greedy_planner``, ``tree_planner`` and ``transitive_planner`` are not
provided yet (issue 3).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from nengo.builder.operator import Operator
from nengo.exceptions import ConfigError


def noop_planner(operators: Sequence[Operator]) -> list[tuple[Operator, ...]]:
    """Merge nothing: every operator is a group of its own, in the given order.

    With ``configure_settings(planner=noop_planner)`` the Simulator skips
    Nengo's operator merging, so every Nengo operator becomes its own step in
    the program. Useful to debug a model, or as the reference the merged
    program is compared with; slower to compile and to run.

    Parameters
    ----------
    operators : list of Operator
        The operators, in an order that respects their dependencies.

    Returns
    -------
    list of tuple of Operator
        One single-operator group per operator.
    """
    return [(op,) for op in operators]


def merges(planner) -> bool:
    """Whether ``planner`` (a ``configure_settings`` value) merges operators.

    Raises
    ------
    ConfigError
        If ``planner`` is one nengo_jax cannot run.
    """
    func = planner
    while isinstance(func, functools.partial):
        func = func.func
    if planner is None:
        return True
    if func is noop_planner:
        return False
    raise ConfigError(
        f"planner={planner!r} is not supported. nengo_jax merges operators with "
        "Nengo's optimizer (planner=None, the default) or not at all "
        "(planner=nengo_jax.graph_optimizer.noop_planner); the greedy, tree and "
        "transitive planners are not implemented yet (issue 3)."
    )
