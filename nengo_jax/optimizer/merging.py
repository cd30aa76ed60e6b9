"""Merging: each planned group becomes as few operators as its signals allow.

The planner decides which operators may run together; this stage makes them
one operator where the mergers of `nengo_jax.optimizer.mergers` (Nengo's own,
and nengo_jax's for synapses) can: the signals of the merged operators are
concatenated into new base signals (or, for views of one base, joined into
one view), as `nengo.Simulator`'s optimizer does, so every builder gets one
operator with contiguous signals. Those mergers need the views of
consecutive operators to follow each other in memory; the signal sorter orders
each group's operators, just before it is merged, so that they do. What they
leave merges by gathering where it can. The operators and signals merged are
replaced in the model, and Nengo's `OpMergePass` keeps the other operators'
signals up to date.
"""

from __future__ import annotations

from collections import defaultdict

from nengo.builder.optimizer import OpMergePass, OpsToMerge
from nengo.utils.graphs import BidirectionalDAG

import nengo_jax.optimizer.mergers as mergers


class _SignalIndex(OpMergePass):
    """The bookkeeping half of Nengo's `OpMergePass`: which operators use each
    signal and which views each base has, kept up to date by its
    ``resolve_views_on_replaced_signals``, ``replace_op_signals`` and
    ``update_signal_indexing`` as operators merge.

    Unlike `OpMergePass`, it holds its operators and signals in plain sets
    (Nengo's weak-keyed ones cost a third of a second on ``basal_ganglia``)
    and sets up no merging pass of Nengo's.
    """

    def __init__(self, dg):  # (OpMergePass.__init__ is not called)
        self.dg = BidirectionalDAG(dg)
        self.sig_replacements = {}
        self.sig2ops = defaultdict(set)
        self.base2views = defaultdict(set)
        for op in dg:
            for sig in op.all_signals:
                self.sig2ops[sig].add(op)
                self.base2views[sig.base].add(sig)


class _Independent(dict):
    """``dependents`` for Nengo's `OpsToMerge`: a planned group's operators are
    mutually independent, so none depends on another."""

    def __missing__(self, op):
        return frozenset()


def merge_plan(model, dg: dict, plan, sorter) -> list:
    """Merge the groups of ``plan``; return the operators in step order.

    Parameters
    ----------
    model : nengo.builder.Model
        Its operators and its objects' signals are replaced by the merged
        ones, as Nengo's optimizer does.
    dg : dict
        The operators' dependency graph (``{a: {b, c}}``: b and c depend on
        a); updated in place to the merged operators.
    plan : list of tuple of Operator
        Groups of mutually independent operators, in dependency order.
    sorter : callable
        ``sorter(plan) -> (signals, plan)``, applied to each group before it
        is merged.

    Returns
    -------
    list of Operator
        The merged and unmerged operators, one per merged run, in plan order.
    """
    merge_pass = _SignalIndex(dg)
    # (its graph's forward edges are ``dg`` itself; we merge vertices our way)
    graph = (dg, merge_pass.dg.backward)
    independent = _Independent()
    groups = _apart_by_state(plan, dg)
    # As Nengo's optimizer does: merge operators with views first (their memory
    # order is fixed), again and again while that merges anything, then those
    # of one group without views (whose concatenation fixes an order), then
    # views again...
    # When that merges nothing more, what is left merges by gathering, which
    # may let more merge by concatenation (e.g. synapses after their inputs).
    merges = 0  # merges so far: a group that merged nothing is tried again
    tried = {}  # (group index, views) -> ``merges`` when it merged nothing
    while True:
        views = True
        while True:
            merged_any = False
            for i, group in enumerate(groups):
                if len(group) > 1 and tried.get((i, views)) != merges:
                    groups[i], merged = _merge_group(
                        group, views, sorter, merge_pass, graph, independent
                    )
                    merged_any |= merged
                    if merged:
                        merges += 1
                    else:
                        tried[i, views] = merges
                    if merged and not views:
                        # one group's concatenation at a time: the next
                        # groups then see views, and follow its order
                        break
            if not (merged_any or views):
                break
            views = merged_any or not views
        gathered = False
        for i, group in enumerate(groups):
            runs = mergers.gather_merges(group) if len(group) > 1 else []
            if runs:
                groups[i] = _apply(
                    group,
                    runs,
                    mergers.gather_merge,
                    merge_pass,
                    graph,
                    lambda run: mergers.gather_merges(run) == [run],
                )
                gathered = True
                merges += 1
        if not gathered:
            break

    # the objects' signals, as in nengo.builder.optimizer.optimize
    for signals in model.sig.values():
        for name in signals:
            while signals[name] in merge_pass.sig_replacements:
                signals[name] = merge_pass.sig_replacements[signals[name]]
    ordered = [op for group in groups for op in group]
    model.operators[:] = ordered
    return ordered


def _apart_by_state(plan, dg) -> list:
    """The groups of ``plan``, each split where its operators read state (a
    signal some operator writes: activities, a learning rule's weights) in
    one place and parameters (biases, fixed weights, constants) in another.

    Merged, their reads would share one base, part state and part parameter,
    which every step has to join (a copy of all of it, per batch item) before
    the merged operator can read it. The operators of a group are
    independent, so its parts may run in any order.
    """
    written = {sig.base for op in dg for sig in op.sets + op.incs + op.updates}
    groups = []
    for group in plan:
        parts = {}
        for op in group:
            key = tuple(sig.base in written for sig in op.reads)
            parts.setdefault(key, []).append(op)
        groups.extend(parts.values())
    return groups


def _merge_group(group, views, sorter, merge_pass, graph, independent):
    """Merge the operators of ``group`` with (or without) ``views`` that can be.

    Returns the group's operators after merging, and whether any merged.
    """
    candidates = [
        op
        for op in group
        if mergers.is_type_mergeable(op)
        and any(s.is_view for s in op.all_signals) == views
    ]
    if len(candidates) < 2:
        return group, False
    _, (candidates,) = sorter([candidates])
    runs = [run.ops for run in _runs(candidates, independent) if len(run.ops) > 1]
    if not runs:
        return group, False

    def still_mergeable(run):
        return [r.ops for r in _runs(run, independent)] == [run]

    return _apply(group, runs, mergers.merge, merge_pass, graph, still_mergeable), True


def _apply(group, runs, merge, merge_pass, graph, still_mergeable) -> list:
    """Merge each run of ``group`` with ``merge``; return the new group.

    A merge replaces signals that later runs may use: a run using them is
    merged only if ``still_mergeable(run)`` after the merges before it (else a
    later pass tries again).
    """
    replaced_ops = {}
    touched = set()  # bases of the signals replaced so far, old and new
    for run in runs:
        if _touches(run, touched) and not still_mergeable(run):
            continue
        merged_op, replaced = merge(run)
        for old, new in replaced.items():
            touched.update((old.base, new.base))
        _merge_vertices(graph, run, merged_op)
        merge_pass.resolve_views_on_replaced_signals(replaced)
        merge_pass.sig_replacements.update(replaced)
        merge_pass.replace_op_signals(replaced)
        merge_pass.update_signal_indexing(merged_op, replaced)
        for op in run:
            replaced_ops[op] = merged_op
    # each merged operator takes the place of the first operator it replaces
    new_group, placed = [], set()
    for op in group:
        op = replaced_ops.get(op, op)
        if op not in placed:
            placed.add(op)
            new_group.append(op)
    return new_group


def _touches(run, bases) -> bool:
    """Whether an operator of ``run`` has a signal in one of ``bases``."""
    return bool(bases) and any(
        sig.base in bases for op in run for sig in op.all_signals
    )


def _merge_vertices(graph, ops, merged_op) -> None:
    """Replace ``ops`` by ``merged_op`` in the graph ``(forward, backward)``.

    Like `nengo.utils.graphs.BidirectionalDAG.merge`, in time proportional to
    the edges of ``ops``.
    """
    forward, backward = graph
    after, before = set(), set()
    for op in ops:  # (the operators of a group never depend on each other)
        for nxt in forward.pop(op):
            backward[nxt].discard(op)
            after.add(nxt)
        for prev in backward.pop(op):
            forward[prev].discard(op)
            before.add(prev)
    for nxt in after:
        backward[nxt].add(merged_op)
    for prev in before:
        forward[prev].add(merged_op)
    forward[merged_op], backward[merged_op] = after, before


def _runs(group, independent) -> list:
    """``group`` cut into runs of consecutive operators Nengo can merge."""
    runs = []
    for op in group:
        if runs and mergers.is_mergeable(op, runs[-1]):
            runs[-1].add(op)
        else:
            runs.append(OpsToMerge(op, set(), set(), independent))
    return runs
