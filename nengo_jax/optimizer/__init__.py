"""Graph optimisation: simplify, plan (merge) and order operators.

Users reach these through `nengo_jax.graph_optimizer` and
``configure_settings(planner=..., sorter=..., simplifications=...)``; the
Simulator runs them through `plan_operators`.
"""

from nengo_jax.optimizer.pipeline import (
    OperatorPlan,
    OptimizerReport,
    own_copy,
    plan_operators,
)

__all__ = ["OperatorPlan", "OptimizerReport", "own_copy", "plan_operators"]
