"""Signal sorters: the order of each group's operators, and so of their signals.

When a planned group is merged (`nengo_jax.optimizer.merging`), its
operators' signals are concatenated in the group's order into new base
signals, or, where they already are views of one base, joined into one view,
which needs them in memory order. The sorter orders each group just before it
is merged, so its choice decides both how far groups merge and how later
groups find the signals laid out: a merged operator reads and writes
contiguous slices, where unmerged operators of the same group each read their
own.

A sorter has NengoDL's signature, ``sorter(plan, **kwargs) -> (signals,
plan)``; nengo_jax calls it with one group at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from nengo.exceptions import ConfigError


def noop_order_signals(plan: Sequence[Sequence], **kwargs) -> tuple[list, list]:
    """Sort nothing: each group keeps the planner's order.

    Views that do not follow each other in that order are not joined, so
    groups merge less than with `order_signals`.

    Parameters
    ----------
    plan : list of list of Operator
        Groups of operators (as a planner returns them).
    **kwargs
        Accepted, and ignored, for the interface of other sorters.

    Returns
    -------
    signals : list of Signal
        The base signals of the plan's operators, each once, in first-use order.
    plan : list of list of Operator
        ``plan``, unchanged.
    """
    return _bases(plan), list(plan)


def order_signals(plan: Sequence[Sequence], **kwargs) -> tuple[list, list]:
    """Order each group's operators so that their views follow each other.

    For each group, the sorter tries the planner's order and, for each of the
    operators' signals (first, second...), the order of that signal's views in
    memory (by base, then offset), and keeps the order in which the most
    neighbouring operators have all their views back to back: those can be
    joined into one contiguous view when the group is merged.

    Parameters
    ----------
    plan : list of list of Operator
        Groups of operators (as a planner returns them).
    **kwargs
        Accepted, and ignored (NengoDL's ``n_passes``).

    Returns
    -------
    signals : list of Signal
        The base signals of the sorted plan's operators, in first-use order.
    plan : list of tuple of Operator
        The groups with their operators in the best order found.
    """
    sorted_plan = []
    for group in plan:
        group = tuple(group)
        best, best_score = group, _adjacent(group)
        n_signals = min((len(op.all_signals) for op in group), default=0)
        for k in range(n_signals):
            if not any(op.all_signals[k].is_view for op in group):
                continue
            order = tuple(sorted(group, key=_memory_order(group, k)))
            score = _adjacent(order)
            if score > best_score:
                best, best_score = order, score
        sorted_plan.append(best)
    return _bases(sorted_plan), sorted_plan


def _memory_order(group, k):
    """Sort key: where the ``k``-th signal of an operator lies in memory."""
    bases = {}
    for op in group:
        bases.setdefault(op.all_signals[k].base, len(bases))

    def key(op):
        sig = op.all_signals[k]
        return (bases[sig.base], sig.offset if sig.is_view else 0)

    return key


def _adjacent(ops) -> int:
    """How many neighbours in ``ops`` have all their views back to back."""
    return sum(
        all(
            not (s1.is_view or s2.is_view)
            or (
                s1.is_view
                and s2.is_view
                and s1.base is s2.base
                and s2.offset == s1.offset + s1.nbytes
            )
            for s1, s2 in zip(a.all_signals, b.all_signals, strict=False)
        )
        for a, b in zip(ops, ops[1:], strict=False)
    )


def _bases(plan) -> list:
    seen = {}
    for group in plan:
        for op in group:
            for sig in op.all_signals:
                seen.setdefault(sig.base, None)
    return list(seen)


def sorter_function(sorter):
    """The sorter a ``configure_settings`` value names (None: `order_signals`).

    Raises
    ------
    ConfigError
        If ``sorter`` is not callable.
    """
    if sorter is None:
        return order_signals
    if not callable(sorter):
        raise ConfigError(
            "sorter must be a function (plan) -> (signals, plan), such as "
            f"nengo_jax.graph_optimizer.order_signals; got {sorter!r}"
        )
    return sorter
