"""The optimizer stage: simplify, merge and order a built model's operators."""

from __future__ import annotations

import contextlib
import copy as pycopy
import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from nengo.builder import Model
from nengo.builder.signal import Signal
from nengo.exceptions import BuildError, ConfigError
from nengo.utils.graphs import toposort
from nengo.utils.simulator import operator_dependency_graph

from nengo_jax.optimizer.merging import merge_plan
from nengo_jax.optimizer.planners import is_noop, planner_function, run_planner
from nengo_jax.optimizer.simplify import simplify
from nengo_jax.optimizer.sorting import sorter_function


@dataclass(frozen=True)
class OptimizerReport:
    """What the optimizer did to a model's operators (``sim.optimizer_report``).

    Attributes
    ----------
    operators : int
        Operators as Nengo built them.
    simplified : int
        Operators after the simplifications.
    merged : int
        Operators after merging: the groups the program runs each step.
    simplifications : Mapping[str, int]
        Each simplification's name -> how many operators it took out (removed,
        or replaced by a rewritten operator).
    groups : Mapping[str, int]
        Builder class name -> how many groups (merged operators) it builds.
    merging : bool
        Whether operators were merged (False with ``optimize=False`` or the
        `.noop_planner`).
    simplify_s, merge_s : float
        Seconds spent simplifying and merging.
    """

    operators: int
    simplified: int
    merged: int
    simplifications: Mapping[str, int]
    groups: Mapping[str, int]
    merging: bool
    simplify_s: float
    merge_s: float

    def __str__(self):
        changes = ", ".join(f"{k} {v}" for k, v in self.simplifications.items())
        merged = (
            f"{self.merged} after merging ({self.merge_s:.2f} s)"
            if self.merging
            else f"{self.merged} (no merging)"
        )
        groups = ", ".join(f"{k} {v}" for k, v in self.groups.items())
        return (
            f"{self.operators} operators; {self.simplified} after simplification "
            f"({changes or 'none'}; {self.simplify_s:.2f} s); {merged}. "
            f"Groups per builder: {groups or 'none'}"
        )


@dataclass(frozen=True)
class OperatorPlan:
    """The operators to build, in step order, and what the optimizer did.

    Attributes
    ----------
    operators : list of Operator
        In the order they run each step.
    kept : tuple of Signal
        Base signals that no operator uses but that Nengo objects name or that
        only removed operators used: they hold their initial value at every
        step, and the layout keeps them so that ``sim.signals`` reads them.
    report : OptimizerReport
    seeding_order : list of Operator
        The operators in `nengo.Simulator`'s order (Nengo's own toposort), in
        which they draw their seeds from the simulator's generator: host
        processes must draw alike to get Nengo's noise.
    """

    operators: list
    kept: tuple
    report: OptimizerReport
    seeding_order: list


def resolve_simplifications(simplifications) -> list[Callable]:
    """The simplifications a ``configure_settings`` value names (None: none).

    None applies none for now: a simplified graph can order operators unlike
    `nengo.Simulator`, and then seeded processes draw other seeds than Nengo's
    (issue 3). ``simplifications=default_simplifications`` asks for them.
    """
    if simplifications is None:
        return []
    fns = None
    if not isinstance(simplifications, str | bytes) and hasattr(
        simplifications, "__iter__"
    ):
        fns = list(simplifications)
    if fns is None or not all(callable(fn) for fn in fns):
        raise ConfigError(
            "simplifications must be a list of functions (operators, model) -> "
            f"operators, e.g. [graph_optimizer.remove_zero_incs]; got "
            f"{simplifications!r}. Use [] for none, None for the defaults."
        )
    return fns


def own_copy(model: Model) -> Model:
    """A copy of a built ``model`` that `plan_operators` may change.

    Merging replaces operators, the signals of the other operators and the
    signals of Nengo objects; on this copy, the model a user built stays as it
    was (as NengoDL leaves it). The copy has its own operator list, operators
    (with their own signal lists) and signal tables; everything else (the
    signals themselves, parameters, probes, seeds) is shared.
    """
    copy = Model.__new__(Model)
    copy.__dict__.update(model.__dict__)
    copy.operators = []
    for op in model.operators:
        twin = pycopy.copy(op)
        twin.sets, twin.incs = list(op.sets), list(op.incs)
        twin.reads, twin.updates = list(op.reads), list(op.updates)
        copy.operators.append(twin)
    copy.sig = defaultdict(dict, {obj: dict(sigs) for obj, sigs in model.sig.items()})
    return copy


def plan_operators(
    model: Model, settings, merge: bool = True, progress=None
) -> OperatorPlan:
    """Simplify, plan, merge and order ``model``'s operators.

    Parameters
    ----------
    model : nengo.builder.Model
        The built model. Merging replaces its operators and updates its
        signals, as `nengo.Simulator` does; without merging it is unchanged.
    settings : nengo_jax.config.Settings
        Its ``simplifications``, ``planner`` and ``sorter`` are used.
    merge : bool
        Whether to merge at all (the Simulator's ``optimize``).
    progress : nengo.utils.progress.ProgressTracker
        Merging runs as its "Optimization" stage, as in `nengo.Simulator`.
    """
    simplifications = resolve_simplifications(settings.simplifications)
    planner = planner_function(settings.planner)
    sorter = sorter_function(settings.sorter)
    merging = merge and not is_noop(planner)

    built = list(model.operators)
    start = time.perf_counter()
    ops, changed = simplify(built, model, simplifications)
    simplify_s = time.perf_counter() - start
    # (before merging, which changes the signals of the operators it merges)
    left = _bases(ops)
    vanished = [b for b in _ordered_bases(built) if b not in left]

    dg = operator_dependency_graph(ops)
    start = time.perf_counter()
    ordered = [op for op in stable_toposort(dg) if hasattr(op, "make_step")]
    if merging:
        stage = (
            progress.next_stage("Building (running optimizer)", "Optimization")
            if progress is not None
            else contextlib.nullcontext()
        )
        with stage:
            plan = run_planner(planner, ordered, dg)
            check_plan(plan, ordered, dg, planner)
            ordered = merge_plan(model, dg, plan, sorter)
    merge_s = time.perf_counter() - start
    # named signals first, then the others, in a fixed order (array keys of
    # unnamed signals follow their order, and must be the same when rebuilt)
    used = _bases(ordered)
    kept = [b for b in named_bases(model) if b not in used]
    kept += [b for b in vanished if b not in kept]

    report = OptimizerReport(
        operators=len(built),
        simplified=len(ops),
        merged=len(ordered),
        simplifications=MappingProxyType(changed),
        groups=MappingProxyType(dict(sorted(_groups(ordered).items()))),
        merging=merging,
        simplify_s=simplify_s,
        merge_s=merge_s,
    )
    seeding = [op for op in toposort(dg) if hasattr(op, "make_step")]
    return OperatorPlan(ordered, tuple(kept), report, seeding)


def check_plan(plan, operators, dg, planner) -> None:
    """Raise `BuildError` unless ``plan`` runs each operator once, after its inputs."""
    where = {}
    for i, group in enumerate(plan):
        for op in group:
            if op in where:
                raise BuildError(f"planner {planner!r} put {op} in two groups")
            where[op] = i
    missing = [op for op in operators if op not in where]
    if missing or len(where) != len(operators):
        raise BuildError(
            f"planner {planner!r} returned a plan of {len(where)} operators for "
            f"{len(operators)} (first missing: {missing[:1]})"
        )
    for op, after in dg.items():
        for nxt in after:
            if where[nxt] <= where[op]:
                raise BuildError(
                    f"planner {planner!r} scheduled {nxt} in group {where[nxt]}, "
                    f"not after {op} (group {where[op]}), which it depends on"
                )


def _bases(operators) -> set:
    return {sig.base for op in operators for sig in op.all_signals}


def _ordered_bases(operators) -> list:
    bases = {}
    for op in operators:
        for sig in op.all_signals:
            bases.setdefault(sig.base, None)
    return list(bases)


def named_bases(model: Model) -> list:
    """Bases of the signals of Nengo objects, in ``model.sig`` order.

    Leaves out the builder's shared constants (``model.sig["common"]``).
    """
    bases = {}
    for obj, sigs in model.sig.items():
        if obj == "common":
            continue
        for sig in sigs.values():
            if isinstance(sig, Signal):
                bases.setdefault(sig.base, None)
    return list(bases)


def stable_toposort(dg: dict) -> list:
    """The operators of ``dg`` in dependency order, ties broken by ``dg``'s order.

    Unlike `nengo.utils.graphs.toposort` (whose order depends on object ids),
    the same graph always gives the same order, so that a rebuilt (e.g.
    unpickled) model lays its signals out as the original did.

    Parameters
    ----------
    dg : dict
        ``{a: {b, c}}`` where ``b`` and ``c`` depend on ``a``; every operator is
        a key.
    """
    ops = list(dg)
    position = {op: i for i, op in enumerate(ops)}
    waiting = dict.fromkeys(ops, 0)
    for after in dg.values():
        for op in after:
            waiting[op] += 1
    ready = [position[op] for op, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        op = ops[heapq.heappop(ready)]
        ordered.append(op)
        for nxt in dg[op]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, position[nxt])
    if len(ordered) != len(ops):
        raise BuildError(
            "Input graph has cycles. This usually occurs because too many "
            "connections have no synapses. Try setting more synapses to '0' "
            "instead of 'None'."
        )
    return ordered


def _groups(operators) -> Counter:
    return Counter(type(op).__name__ for op in operators)
