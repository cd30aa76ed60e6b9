"""The one checker of what users pass in: step counts, times, ``data=``, ``x``, ``y``.

Every entry point (``run``, ``run_steps``, ``step``, ``fit``, ``evaluate``,
``predict``, ``train``...) checks its arguments here before anything runs, so a
bad argument raises a `ValidationError` that names it, says what was expected
and what was received, and changes nothing.
"""

from __future__ import annotations

import numbers
import operator
import re
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
from nengo import Node, Probe
from nengo.exceptions import ValidationError

#: Keras input that only carries the number of steps (when no Node gets data).
STEPS_INPUT = "n_steps"


def keras_names(nodes, probes) -> tuple[dict, dict]:
    """The names of input Nodes and Probes in the Keras model, as NengoDL names
    them: the label, with spaces and colons as ``_`` and characters other than
    letters, digits and ``_.-/`` left out, or ``node``/``probe`` for an
    unlabelled object; a name already taken (ignoring case, Nodes first, then
    Probes) gets ``_1``, ``_2``, ... These are the keys of ``predict``'s outputs
    and of the losses and metrics in ``fit``'s history (``probe_loss``).
    """
    taken = Counter({STEPS_INPUT: 1})  # (name in lower case -> next suffix)

    def name_of(obj, default):
        base = default if obj.label is None else _sanitized(obj.label)
        name = base
        while name.lower() in taken:
            suffix = taken[base.lower()]
            taken[base.lower()] += 1
            name = f"{base}_{suffix}"
        taken[name.lower()] += 1
        return name

    node_names = {node: name_of(node, "node") for node in nodes}
    taken.pop(STEPS_INPUT)  # (a Probe may be called n_steps, as in NengoDL)
    return node_names, {probe: name_of(probe, "probe") for probe in probes}


def _sanitized(label: str) -> str:
    label = label.replace(" ", "_").replace(":", "_")
    return re.sub(r"[^A-Za-z0-9_.\-/]", "", label)


def find_object(objects, key, cls, attr="data"):
    """Resolve ``key``, an object of type ``cls`` or its label, among ``objects``."""
    name = cls.__name__
    if isinstance(key, str):
        matches = [o for o in objects if isinstance(o, cls) and o.label == key]
        if len(matches) != 1:
            raise ValidationError(
                f"{attr} key {key!r} must name exactly one {name} of the network by "
                f"its label; found {len(matches)}",
                attr=attr,
            )
        return matches[0]
    if not isinstance(key, cls):
        raise ValidationError(
            f"{attr} keys must be {name}s or {name} labels; got {key!r} of type "
            f"{type(key).__name__}",
            attr=attr,
        )
    if key not in objects:
        raise ValidationError(
            f"{key} is not part of the network this Simulator was built from",
            attr=attr,
            obj=key,
        )
    return key


def check_steps(n_steps, attr="n_steps") -> int:
    """``n_steps`` as an int: a whole, non-negative number of steps (an int or a
    NumPy integer, as ``range`` takes; not a float, a bool or a string)."""
    try:
        if isinstance(n_steps, bool | np.bool_):
            raise TypeError
        steps = operator.index(n_steps)
    except TypeError:
        raise ValidationError(
            f"Must be a whole number of steps (an int); got {n_steps!r} of type "
            f"{type(n_steps).__name__}",
            attr=attr,
        ) from None
    if steps < 0:
        raise ValidationError(f"Must be non-negative; got {steps}", attr=attr)
    return steps


def check_seconds(time_in_seconds, attr="time_in_seconds") -> float:
    """``time_in_seconds`` as a float: a finite, non-negative real number."""
    value = (
        np.asarray(time_in_seconds) if not isinstance(time_in_seconds, str) else None
    )
    if value is None or value.ndim != 0 or value.dtype.kind not in "iuf":
        raise ValidationError(
            f"Must be a number of seconds; got {time_in_seconds!r} of type "
            f"{type(time_in_seconds).__name__}",
            attr=attr,
        )
    if not np.isfinite(value):
        raise ValidationError(
            f"Must be a finite number of seconds; got {time_in_seconds!r}", attr=attr
        )
    if value < 0:  # (Nengo's words)
        raise ValidationError(f"Must be positive (got {float(value):g})", attr=attr)
    return float(value)


def as_array(value, obj, attr) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as e:  # e.g. a ragged list
        raise ValidationError(
            f"Data for {obj} must be an array; got a {type(value).__name__} that "
            f"NumPy cannot read as one ({e})",
            attr=attr,
            obj=obj,
        ) from e


def check_array(value, obj, size, attr, dtype, allow_nan=False) -> np.ndarray:
    """``value`` as a ``(batch, n_steps, size)`` array of finite numbers.

    ``allow_nan`` lets NaN through (targets of an output whose loss is
    `nengo_jax.losses.nan_mse`: NaN marks "no target here", as in NengoDL);
    infinities are still refused.
    """
    array = as_array(value, obj, attr)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValidationError(
            f"Data for {obj} must be numeric; got dtype {array.dtype}",
            attr=attr,
            obj=obj,
        )
    # targets may have one element per step (e.g. the integer labels of a
    # sparse loss), which Keras broadcasts against the output, as in NengoDL
    sizes = (size, 1) if attr == "y" else (size,)
    if array.ndim != 3 or array.shape[2] not in sizes:
        hint = " Add the batch axis with x[None]." if array.ndim == 2 else ""
        shape = f"(batch, n_steps, {size})"
        if attr == "y" and size != 1:
            shape += " or (batch, n_steps, 1)"
        raise ValidationError(
            f"Data for {obj} must have shape {shape}; got {array.shape}.{hint}",
            attr=attr,
            obj=obj,
        )
    array = array.astype(dtype, copy=False)
    ok = np.isfinite(array)
    if allow_nan:
        ok |= np.isnan(array)
    if not ok.all():
        bad = np.argwhere(~ok)[0]
        if allow_nan:
            why = "targets may be NaN (no target) but not infinite"
        elif attr == "y":
            why = (
                "NaN marks 'no target' only for an output whose loss is "
                "nengo_jax.losses.nan_mse; other losses would make every trained "
                "parameter non-finite"
            )
        else:
            why = "a non-finite input makes the simulation state non-finite until reset"
        raise ValidationError(
            f"Data for {obj} must be finite; got {array[tuple(bad)]} at index "
            f"{tuple(int(i) for i in bad)} ({why})",
            attr=attr,
            obj=obj,
        )
    return array


def _by_node(x, nodes):
    """Keras inputs ``x`` as a dict, as NengoDL reads them: one array feeds the
    first input Node (the others run their own outputs), and a list of arrays
    feeds the input Nodes in order."""
    if x is None or isinstance(x, dict) or not nodes:
        return x
    if isinstance(x, list | tuple) and x and all(np.ndim(v) == 3 for v in x):
        if len(x) > len(nodes):
            raise ValidationError(
                f"x has {len(x)} arrays, for the network's {len(nodes)} input "
                f"Nodes ({', '.join(str(n) for n in nodes)})",
                attr="x",
            )
        return dict(zip(nodes, x, strict=False))
    return {nodes[0]: x}


def keyed(values, attr, resolve, single=None) -> dict:
    """``values`` as ``{object: value}``, its keys resolved by ``resolve``.

    ``values`` is a dict keyed by objects or labels, or (when ``single`` is the
    one object it can be for) a single array. The same object given twice (as
    itself and by its label) is refused.
    """
    if values is None:
        return {}
    if not isinstance(values, dict):
        if (
            single is None
            or isinstance(values, list | tuple)
            and not _is_nested(values)
        ):
            expected = "a dict of object (or label) -> array"
            if single is not None:
                expected += ", or one array"
            raise ValidationError(
                f"{attr} must be {expected}; got {type(values).__name__}",
                attr=attr,
            )
        values = {single: values}
    resolved = {}
    for key, value in values.items():
        obj = resolve(key)
        if obj in resolved:
            raise ValidationError(
                f"{obj} is given twice in {attr} (as itself and by its label); "
                "give it once",
                attr=attr,
                obj=obj,
            )
        resolved[obj] = value
    return resolved


def _is_nested(values) -> bool:
    """Whether a list looks like one array's data (lists or numbers), not a list
    of per-object arrays (which a dict should name)."""
    return all(isinstance(v, list | tuple | numbers.Number) for v in values)


def _steps_of(inputs, targets, n_steps):
    """The number of steps of a Keras call: its inputs', else ``n_steps``, else
    its targets' (a one-step target broadcasts over the others)."""
    for array in inputs:
        return array.shape[1]
    if n_steps is not None:
        return check_steps(n_steps)
    lengths = [array.shape[1] for array in targets]
    return max(lengths) if lengths else None


@dataclass(frozen=True)
class InputChecker:
    """Checks the data of one simulator's calls (see the module).

    Attributes
    ----------
    model : nengo.builder.Model
        The built model.
    minibatch_size : int
        The simulator's minibatch size.
    dtype : np.dtype
        The simulation dtype; data is converted to it.
    input_nodes : dict
        Node that can be given data (no input, an output) -> its Keras name.
    probe_names : dict
        Probe -> its Keras name.
    last_only : frozenset
        Probes that keep only their last step (``keep_history=False``).
    use_loop : bool
        ``configure_settings(use_loop=...)``.
    unroll : int
        The simulator's ``unroll_simulation``.
    """

    model: object
    minibatch_size: int
    dtype: np.dtype
    input_nodes: dict
    probe_names: dict
    last_only: frozenset
    use_loop: bool
    unroll: int

    def steps(self, n_steps, attr="n_steps") -> int:
        """`check_steps`, and without a loop, exactly ``unroll_simulation``."""
        n_steps = check_steps(n_steps, attr)
        if not self.use_loop and n_steps not in (0, self.unroll):
            raise ValidationError(
                "This Simulator has no loop over time (configure_settings("
                "use_loop=False)): every call runs exactly unroll_simulation="
                f"{self.unroll} steps; got {n_steps}",
                attr=attr,
            )
        return n_steps

    def node(self, key, attr):
        """The Node ``key`` names, which must be one that can be given data."""
        node = find_object(self.model.sig, key, Node, attr=attr)
        if node not in self.input_nodes:
            raise ValidationError(
                f"{node} has inputs (size_in={node.size_in}) or no output, so it "
                "cannot be given data; give data to a Node with size_in=0",
                attr=attr,
                obj=node,
            )
        return node

    def probe(self, key, attr="y"):
        return find_object(self.model.probes, key, Probe, attr=attr)

    def run_data(self, data, n_steps) -> dict:
        """``data=`` of a run: Node -> ``(minibatch_size, n_steps, size_out)``."""
        checked = {}
        for node, value in keyed(
            data, "data", lambda key: self.node(key, "data")
        ).items():
            expected = (self.minibatch_size, n_steps, node.size_out)
            value = as_array(value, node, "data")
            shape = value.shape
            if shape != expected:
                hint = ""
                if shape == expected[1:]:
                    hint = " Add the batch axis with x[None]."
                elif len(shape) == 3 and shape[1] != n_steps:
                    hint = " The number of steps must match the run."
                raise ValidationError(
                    f"Input data for {node} must have shape (minibatch_size="
                    f"{self.minibatch_size}, n_steps={n_steps}, size_out="
                    f"{node.size_out}); got {shape}.{hint}",
                    attr="data",
                    obj=node,
                )
            checked[node] = check_array(value, node, node.size_out, "data", self.dtype)
        return checked

    def keras_data(
        self,
        x,
        y,
        n_steps,
        method,
        loss_outputs=None,
        nan_targets=frozenset(),
        one_batch=False,
        share=None,
    ):
        """Inputs and targets of a Keras call, named as the Keras model names them.

        ``loss_outputs`` (the probe names with a loss) makes targets required
        for exactly those probes (``fit``, ``evaluate``); the targets of
        ``nan_targets`` (probe names whose loss is `~.losses.nan_mse`) may be NaN.
        With ``one_batch``, the data must be one minibatch. With ``share`` (one
        of several processes), the data are this process's share of every
        minibatch, ``share`` items of each: whole shares, nothing cut off.
        """
        nodes, probes = list(self.input_nodes), self.model.probes
        x = _by_node(x, nodes)
        for value, attr, objects, what in (
            (x, "x", nodes, "Node"),
            (y, "y", probes, "Probe"),
        ):
            if value is not None and not isinstance(value, dict) and len(objects) != 1:
                raise ValidationError(
                    f"{attr} must be a dict of {what} -> array when the network has "
                    f"{len(objects)} {what}s to give it to; got {type(value).__name__}",
                    attr=attr,
                )
        xs = keyed(
            x, "x", lambda key: self.node(key, "x"), single=nodes[0] if nodes else None
        )
        ys = keyed(y, "y", self.probe, single=probes[0] if probes else None)

        arrays = []  # (description, array, whether it has only the last step)
        xk, yk, last_names = {}, {}, set()
        for node, value in xs.items():
            array = check_array(value, node, node.size_out, "x", self.dtype)
            arrays.append((f"Input data for {node}", array, False))
            xk[self.input_nodes[node]] = array
        for probe, value in ys.items():
            size = int(np.prod(self.model.sig[probe]["in"].shape))
            name = self.probe_names[probe]
            array = check_array(
                value, probe, size, "y", self.dtype, allow_nan=name in nan_targets
            )
            last = probe in self.last_only
            if last:
                last_names.add(name)
            arrays.append((f"Targets for {probe}", array, last))
            yk[self.probe_names[probe]] = array

        batch = arrays[0][1].shape[0] if arrays else (share or self.minibatch_size)
        steps = _steps_of(xk.values(), yk.values(), n_steps)
        if steps is None:
            raise ValidationError(
                f"{method} needs n_steps when no input data is given", attr="n_steps"
            )
        for what, array, last in arrays:
            # a target of one step is compared with every step (as NengoDL,
            # through Keras's broadcasting)
            target = what.startswith("Targets")
            allowed = (1,) if last else ((steps, 1) if target else (steps,))
            if array.shape[0] != batch or array.shape[1] not in allowed:
                kept = " (keep_history=False keeps only the last step)" if last else ""
                also = " (or 1)" if target and not last and steps != 1 else ""
                raise ValidationError(
                    f"{what} has {array.shape[0]} items of {array.shape[1]} steps; "
                    f"expected {batch} items of {allowed[0]} steps{also}{kept}",
                    attr="x",
                )
        for name, array in yk.items():
            if array.shape[1] == 1 and steps != 1 and name not in last_names:
                yk[name] = np.broadcast_to(array, (batch, steps) + array.shape[2:])
        if n_steps is not None and check_steps(n_steps) != steps:
            raise ValidationError(
                f"n_steps={n_steps} does not match the data, which has {steps} steps",
                attr="n_steps",
            )
        self.steps(steps)
        if share is not None and (batch == 0 or batch % share != 0):
            raise ValidationError(
                f"{method} across processes takes in each process its share of "
                f"every minibatch, {share} of its minibatch_size="
                f"{self.minibatch_size} items: the number of items must be a "
                f"positive multiple of {share}; got {batch}. See "
                "nengo_jax.process_share.",
                attr="x",
            )
        if one_batch and batch != self.minibatch_size:
            raise ValidationError(
                f"Each minibatch of a {method} stream must have minibatch_size="
                f"{self.minibatch_size} items; got {batch}",
                attr="x",
            )
        if share is None and batch % self.minibatch_size != 0:
            kept = batch - batch % self.minibatch_size
            if kept == 0:
                raise ValidationError(
                    f"The number of items ({batch}) must be at least the "
                    f"Simulator's minibatch_size ({self.minibatch_size})",
                    attr="x",
                )
            warnings.warn(
                f"{method}: the number of items ({batch}) is not a multiple of the "
                f"Simulator's minibatch_size ({self.minibatch_size}); only the "
                f"first {kept} are used (as NengoDL)",
                UserWarning,
                stacklevel=4,
            )
            xk = {name: array[:kept] for name, array in xk.items()}
            yk = {name: array[:kept] for name, array in yk.items()}
            batch = kept
        if not xk:
            xk[STEPS_INPUT] = np.zeros((batch, steps), self.dtype)
        if loss_outputs is not None:
            if y is None:
                raise ValidationError(
                    f"{method} needs targets y for the probes with a loss "
                    f"({sorted(loss_outputs)}, set in compile); got y=None",
                    attr="y",
                )
            missing = [name for name in sorted(loss_outputs) if name not in yk]
            if missing:
                raise ValidationError(
                    f"Probes {missing} have a loss (set in compile) but no targets "
                    "in y; give y[probe] of shape (batch, n_steps, size) for each",
                    attr="y",
                )
            extra = [name for name in yk if name not in loss_outputs]
            if extra:
                raise ValidationError(
                    f"y has targets for probes {extra}, which have no loss; give "
                    "them a loss in compile or leave them out of y",
                    attr="y",
                )
        return xk, (yk if y is not None else None)
