"""Planners: which operators run together as one merged group, and in what order.

A planner takes the operators of a model and returns a *plan*: a list of
groups (tuples of operators) in an order that respects the operators'
dependencies. The operators of a group are independent of each other and of
one merge class (`nengo_jax.optimizer.mergers.merge_class`); the planner never
looks at operator types itself. After planning, `nengo_jax.optimizer.merging`
merges each group into as few operators as the signals allow.

All planners schedule groups of *ready* operators (those whose predecessors
are all scheduled), so every plan is a valid step order. They differ in which
ready group they take next:

- `greedy_planner`: the largest;
- `tree_planner` (the default): the one that schedules the most operators
  within the next ``max_depth`` groups (a bounded look-ahead search);
- `transitive_planner`: every ready group at once, round by round (each
  operator at its depth in the dependency graph);
- `noop_planner`: one operator per group, nothing merged.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Sequence

from nengo.builder.operator import Operator
from nengo.exceptions import BuildError, ConfigError
from nengo.utils.simulator import operator_dependency_graph

from nengo_jax.optimizer.mergers import merge_class

#: Ready groups a `tree_planner` tries at each level of its search, largest first.
TREE_WIDTH = 6


def noop_planner(operators: Sequence[Operator]) -> list[tuple[Operator, ...]]:
    """Merge nothing: every operator is a group of its own, in the given order.

    With ``configure_settings(planner=noop_planner)`` every Nengo operator
    becomes its own step in the program. Useful to debug a model, or as the
    reference the merged program is compared with; slower to compile and run.

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


def greedy_planner(
    operators: Sequence[Operator], dg: dict | None = None
) -> list[tuple[Operator, ...]]:
    """Take the largest group of ready, mergeable operators, until none are left.

    Fast (linear in the size of the dependency graph, times the number of
    ready groups), and usually close to the tree planner.

    Parameters
    ----------
    operators : list of Operator
        The operators of a model.
    dg : dict
        Their dependency graph, ``{a: {b, c}}`` where ``b`` and ``c`` depend on
        ``a``, if the caller has it (else it is computed).

    Returns
    -------
    list of tuple of Operator
        Groups of mutually independent, mergeable operators, in dependency
        order.
    """
    schedule = _Schedule(operators, dg)
    while schedule.ready:
        schedule.take(schedule.largest(1)[0])
    return schedule.result()


def tree_planner(
    op_list: Sequence[Operator], max_depth: int = 3, dg: dict | None = None
) -> list[tuple[Operator, ...]]:
    """Take the ready group that leads to the most operators in ``max_depth`` steps.

    At each step, the planner tries the largest ready groups (at most
    `TREE_WIDTH` of them) and, below each, the best sequences of ``max_depth -
    1`` more groups, and takes the first group of the sequence that schedules
    the most operators (ties go to the larger first group). ``max_depth=1`` is
    the `greedy_planner`. Deeper searches find plans with fewer groups for
    models where taking a smaller group first lets larger ones form, at a
    cost that grows as ``TREE_WIDTH ** max_depth``.

    ``functools.partial(tree_planner, max_depth=4)`` sets the depth in
    ``configure_settings(planner=...)``.

    Parameters
    ----------
    op_list : list of Operator
        The operators of a model.
    max_depth : int
        How many groups ahead to look.
    dg : dict
        The operators' dependency graph, if the caller has it (see
        `greedy_planner`).

    Returns
    -------
    list of tuple of Operator
        Groups of mutually independent, mergeable operators, in dependency
        order.
    """
    if max_depth < 1:
        raise ValueError(f"tree_planner: max_depth must be at least 1; got {max_depth}")
    schedule = _Schedule(op_list, dg)
    while schedule.ready:
        candidates = schedule.largest(TREE_WIDTH)
        if len(candidates) == 1 or max_depth == 1:
            best = candidates[0]
        else:
            best = max(
                candidates,
                key=lambda key: (
                    schedule.lookahead(key, max_depth),
                    len(schedule.ready[key]),
                ),
            )
        schedule.take(best)
    return schedule.result()


def transitive_planner(
    op_list: Sequence[Operator], dg: dict | None = None
) -> list[tuple[Operator, ...]]:
    """Take every ready group at once, round after round.

    Each round schedules all ready operators, one group per merge class, so an
    operator lands in the round of its depth in the dependency graph (the
    length of the longest chain of operators it depends on). The fastest
    planner, but mergeable operators at different depths stay apart, so plans
    have more groups than the greedy or tree planner's.

    Parameters
    ----------
    op_list : list of Operator
        The operators of a model.
    dg : dict
        Their dependency graph, if the caller has it (see `greedy_planner`).

    Returns
    -------
    list of tuple of Operator
        Groups of mutually independent, mergeable operators, in dependency
        order.
    """
    schedule = _Schedule(op_list, dg)
    while schedule.ready:
        for key in sorted(schedule.ready, key=schedule.first_position):
            schedule.take(key)
    return schedule.result()


class _Schedule:
    """Ready operators bucketed by merge class, and the groups taken so far.

    Operators of the same merge class (`merge_class`) share a bucket. Operators
    without one run alone whatever the plan, so they are scheduled as soon as
    they are ready: that never costs a group, and makes their successors ready
    sooner.
    """

    def __init__(self, operators, dg=None):
        self.operators = list(operators)
        self.position = {op: i for i, op in enumerate(self.operators)}
        self.dg = operator_dependency_graph(self.operators) if dg is None else dg
        self.waiting = dict.fromkeys(self.operators, 0)
        for after in self.dg.values():
            for op in after:
                self.waiting[op] += 1
        # merge classes as small integers (None: alone); merge keys (e.g.
        # neuron types) can be slow to hash
        classes = {}
        self.keys = {}
        for op in self.operators:
            key = merge_class(op)
            self.keys[op] = (
                None if key is None else classes.setdefault(key, len(classes))
            )
        #: merge class -> ready operators, in the order they became ready
        self.ready: dict = {}
        self.plan: list[tuple] = []
        self._release([op for op in self.operators if self.waiting[op] == 0])

    def first_position(self, key) -> int:
        return self.position[self.ready[key][0]]

    def largest(self, n: int) -> list:
        """The ``n`` ready buckets with the most operators (ties: earliest first)."""
        return heapq.nsmallest(
            n, self.ready, key=lambda k: (-len(self.ready[k]), self.first_position(k))
        )

    def take(self, key) -> None:
        """Schedule bucket ``key`` as the next group."""
        group = self.ready.pop(key)
        group.sort(key=self.position.__getitem__)
        self.plan.append(tuple(group))
        self._release(self._successors(group))

    def result(self) -> list[tuple]:
        """The plan, once every operator is scheduled."""
        if len(self.position) != sum(map(len, self.plan)):
            raise BuildError(
                "Input graph has cycles. This usually occurs because too many "
                "connections have no synapses. Try setting more synapses to '0' "
                "instead of 'None'."
            )
        return self.plan

    def _successors(self, group) -> list:
        """Operators that ``group`` (just scheduled) makes ready."""
        ready = []
        for op in group:
            for nxt in self.dg[op]:
                self.waiting[nxt] -= 1
                if self.waiting[nxt] == 0:
                    ready.append(nxt)
        return ready

    def _release(self, ops) -> None:
        """Make ``ops`` ready; schedule those that run alone at once."""
        stack = sorted(ops, key=self.position.__getitem__, reverse=True)
        while stack:
            op = stack.pop()
            if self.keys[op] is None:
                self.plan.append((op,))
                stack.extend(
                    sorted(
                        self._successors([op]),
                        key=self.position.__getitem__,
                        reverse=True,
                    )
                )
            else:
                self.ready.setdefault(self.keys[op], []).append(op)

    def lookahead(self, key, depth: int) -> int:
        """Most operators scheduled by taking ``key``, then ``depth - 1`` groups."""
        buckets = {k: list(ops) for k, ops in self.ready.items()}
        return self._search(key, depth, buckets, {})

    def _search(self, key, depth, buckets, waiting) -> int:
        """`lookahead` on ``buckets`` and ``waiting`` (changed, then restored).

        Counts the operators of the groups taken; operators that run alone are
        taken as soon as they are ready, and not counted.
        """
        group = buckets.pop(key)
        appended, touched = [], []
        stack = list(group)
        while stack:
            for nxt in self.dg[stack.pop()]:
                n = waiting.get(nxt, self.waiting[nxt]) - 1
                waiting[nxt] = n
                touched.append(nxt)
                if n == 0:
                    k = self.keys[nxt]
                    if k is None:
                        stack.append(nxt)
                    else:
                        buckets.setdefault(k, []).append(nxt)
                        appended.append(k)
        best = 0
        if depth > 1 and buckets:
            for nxt_key in heapq.nlargest(
                TREE_WIDTH, buckets, key=lambda k: len(buckets[k])
            ):
                best = max(best, self._search(nxt_key, depth - 1, buckets, waiting))
        for k in reversed(appended):
            buckets[k].pop()
            if not buckets[k]:
                del buckets[k]
        for nxt in touched:
            waiting[nxt] += 1
        buckets[key] = group
        return len(group) + best


def planner_function(planner):
    """The planner a ``configure_settings`` value names (None: `tree_planner`).

    Raises
    ------
    ConfigError
        If ``planner`` is not callable.
    """
    if planner is None:
        return tree_planner
    if not callable(planner):
        raise ConfigError(
            "planner must be a function (operators) -> list of groups of operators, "
            "such as nengo_jax.graph_optimizer.tree_planner; got "
            f"{planner!r}"
        )
    return planner


def _unwrapped(planner):
    while isinstance(planner, functools.partial):
        planner = planner.func
    return planner


def is_noop(planner) -> bool:
    """Whether ``planner`` is the `noop_planner` (possibly in a partial)."""
    return _unwrapped(planner) is noop_planner


def run_planner(planner, operators, dg) -> list:
    """``planner(operators)``, given the dependency graph ``dg`` if it takes one."""
    if _unwrapped(planner) in (greedy_planner, tree_planner, transitive_planner):
        return planner(operators, dg=dg)
    return planner(operators)
